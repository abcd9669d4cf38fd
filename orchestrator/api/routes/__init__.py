"""The API's routes, one router per OpenAPI tag; ``orchestrator.api.app`` mounts them.

Routes translate HTTP into calls on ``Orchestrator`` and ``Session`` and
back; they never talk to the engine or the guest.  Every route under ``/v1``
needs a bearer token (``dependencies.Caller``) and acts only on its owner's
sessions and runs (``OwnedSession``, ``OwnedRun``): another owner's is a 404,
as a missing one is.  Nothing is defined here.
"""
