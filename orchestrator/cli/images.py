"""``sbx images build|ls|rm``: the sandbox images, built without a registry."""

from __future__ import annotations

import argparse

import trio

from orchestrator.cli.image_catalog import list_all_images, register_rm
from orchestrator.config import Config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    images = sub.add_parser("images", help="build and list sandbox images")
    images.set_defaults(group_parser=images)
    actions = images.add_subparsers(dest="images_command", metavar="ACTION")
    build = actions.add_parser("build", help="build images (missing or stale ones only)")
    build.add_argument("names", nargs="*", help="images to build (default: all)")
    build.add_argument("--base", help="start sbx-base from this Debian-like image")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument("--file", "-f", help="build a user image from this Dockerfile (with --tag)")
    build.add_argument("--tag", "-t", help="the user image's name; the positional is its CONTEXT")
    build.set_defaults(handler=_build)
    ls = actions.add_parser("ls", help="list the images sessions can run: sbx's, snapshots, yours")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=lambda args, config: trio.run(list_all_images, config, args.json))
    register_rm(actions)


def _build(args: argparse.Namespace, config: Config) -> int:
    if args.tag is None and args.file is None:
        return trio.run(build_images, config, args.names, args.base, args.force)
    from orchestrator.cli.user_image import build_user_image

    return build_user_image(args, config)


async def build_images(config: Config, names: list[str], base: str | None, force: bool) -> int:
    from orchestrator.backends.registry import make_image_builder
    from orchestrator.images.progress import RichBuildProgress

    builder = make_image_builder(config)
    try:
        with RichBuildProgress() as progress:
            outcomes = await builder.build(
                names or None,
                base_image=base or config.images.base_image,
                force=force,
                progress=progress,
            )
    finally:
        await builder.aclose()
    for outcome in outcomes:
        what = "built" if outcome.built else "up to date"
        print(
            f"{outcome.image:<28} {what:<10} {outcome.seconds:6.1f} s  "
            f"recipe {outcome.recipe_hash[:12]}"
        )
    return 0
