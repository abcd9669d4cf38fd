"""The images layer: sandbox image recipes, building them without a registry, build progress.

Start at ``builder.ImageBuilder`` (made by ``runtime.make_image_builder``).
Everything here is engine-neutral: building reaches a container engine only
through ``engine.ImageEngine``, which a backend implements (Docker's is
``orchestrator.backends.docker.image_engine``).  Nothing in this package
imports docker-py or ``orchestrator.backends``, and nothing needs a registry.
"""
