"""Operating commands: ``sbx doctor``, ``gc``, ``bench``, ``demo``, ``version``."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial

import trio

from orchestrator.config import Config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = sub.add_parser("doctor", help="check the engine, the images and a sandbox start")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.add_argument("--quick", action="store_true", help="skip starting a sandbox")
    doctor.set_defaults(handler=_doctor)

    gc = sub.add_parser(
        "gc",
        help="remove sandboxes left behind by dead supervisors",
        description="Remove sandboxes left behind by dead supervisors, and the guest "
        "bundles (volumes sbx-guest-*) of older guest versions that no sandbox uses.",
    )
    gc.add_argument("--json", action="store_true", help="print JSON")
    gc.add_argument(
        "--snapshots",
        metavar="OLDER_THAN",
        help="also remove snapshots taken longer ago than this (45s, 30m, 12h, 7d; 0s: all)",
    )
    gc.set_defaults(
        handler=lambda args, config: trio.run(collect_garbage, config, args.json, args.snapshots)
    )

    bench = sub.add_parser("bench", help="measure call latency against docker exec")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--iterations", "-n", type=int, default=200, help="calls per measurement")
    bench.add_argument("--image", help="image to measure in (default: code-runner)")
    bench.add_argument(
        "--no-cli", action="store_true", help="skip `sbx run` vs `docker run` (slower part)"
    )
    bench.add_argument(
        "--http",
        action="store_true",
        help="benchmark the HTTP API instead (a server process, exec latency, 100 streams)",
    )
    bench.add_argument(
        "--tools",
        action="store_true",
        help="benchmark the editor and code execution tools instead (1 MB str_replace, 1+1)",
    )
    bench.add_argument(
        "--desktop",
        action="store_true",
        help="benchmark the desktop instead (screenshots, actions, cold start) against "
        "scrot + ImageMagick and docker run",
    )
    bench.add_argument(
        "--evals",
        action="store_true",
        help="benchmark an evaluation run instead: --tasks scripted tasks at --concurrency, "
        "against the same tasks as `docker run --rm` scripts",
    )
    bench.add_argument("--tasks", type=int, default=100, help="tasks for --evals (default 100)")
    bench.add_argument("--concurrency", type=int, default=8, help="for --evals (default 8)")
    bench.add_argument("--rounds", type=int, default=1, help="for --evals: alternate this often")
    bench.add_argument(
        "--agent",
        action="store_true",
        help="benchmark the agent's context management instead: a scripted run with a "
        "screenshot every turn, managed and with trimming, caching and compaction off",
    )
    bench.add_argument(
        "--files",
        action="store_true",
        help="benchmark a 100 MiB file into and out of a sandbox instead, against docker cp",
    )
    bench.add_argument(
        "--snapshots",
        action="store_true",
        help="benchmark snapshots instead: 100 MB of workspace kept, forks against cold starts",
    )
    bench.add_argument("--turns", type=int, default=200, help="turns of the --agent run")
    bench.add_argument(
        "--runtimes",
        help="compare exec under these OCI runtimes instead, the first the baseline "
        "(e.g. runc,runsc)",
    )
    bench.add_argument(
        "--budget",
        type=int,
        default=20_000,
        help="the --agent run's context budget, tokens (default 20000)",
    )
    bench.add_argument(
        "--fake-screens",
        action="store_true",
        help="--agent with synthetic screenshots in a code-runner sandbox (no desktop)",
    )
    bench.add_argument(
        "--density",
        action="store_true",
        help="benchmark density instead: N sessions at once, `exec true` in all of them, "
        "against `true` spawned directly in the same sandboxes",
    )
    bench.add_argument(
        "--sessions",
        default="50,100,200",
        help="for --density: the Ns, comma-separated (default 50,100,200)",
    )
    bench.add_argument("--calls", type=int, default=100, help="for --density: calls per session")
    bench.set_defaults(handler=_bench, quiet_logs=True)

    demo = sub.add_parser("demo", help="run several sandboxed jobs in parallel and show results")
    demo.add_argument("--image", help="image for the jobs (default: code-runner)")
    demo.set_defaults(handler=_demo, quiet_logs=True)

    version = sub.add_parser("version", help="print versions")
    version.set_defaults(handler=_version)


def _doctor(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.ops.doctor import run_doctor

    return trio.run(run_doctor, config, args.json, not args.quick)


def _bench(args: argparse.Namespace, config: Config) -> int:
    if args.snapshots:
        from orchestrator.bench.snapshots import collect_snapshot_bench, format_snapshot_bench

        found = trio.run(collect_snapshot_bench, config, args.image)
        print(json.dumps(found) if args.json else format_snapshot_bench(found))
        return 0
    if args.runtimes:
        from orchestrator.bench.runtimes import collect_runtimes, format_runtimes

        names = [name.strip() for name in args.runtimes.split(",") if name.strip()]
        report = trio.run(collect_runtimes, config, names, max(10, args.iterations), args.image)
        print(json.dumps(report) if args.json else format_runtimes(report))
        return 0
    if args.density:
        from orchestrator.bench.density import collect_density, format_density

        try:
            sizes = [int(n) for n in args.sessions.split(",") if n.strip()]
        except ValueError:
            print(f"--sessions {args.sessions!r}: give numbers like 50,100,200", file=sys.stderr)
            return 2
        found = trio.run(collect_density, config, sizes, max(1, args.calls), args.image)
        print(json.dumps(found) if args.json else format_density(found))
        return 0
    if args.evals:
        from orchestrator.bench.evals import collect_evals, format_evals

        found = trio.run(
            collect_evals, config, args.tasks, args.concurrency, args.image, args.rounds
        )
        print(json.dumps(found) if args.json else format_evals(found))
        return 0 if all(target["met"] for target in found["targets"].values()) else 1
    if args.agent:
        from orchestrator.bench.agent import collect_agent, format_agent

        report = trio.run(
            partial(
                collect_agent,
                config,
                args.turns,
                fake_screens=args.fake_screens,
                budget=args.budget,
                image=args.image,
            )
        )
        print(json.dumps(report) if args.json else format_agent(report))
        return 0
    if args.files:
        from orchestrator.bench.files import collect_files, format_files

        found = trio.run(collect_files, config, 3, args.image)
        print(json.dumps(found) if args.json else format_files(found))
        return 0
    if args.desktop:
        from orchestrator.bench.desktop import collect_desktop, format_desktop

        found = trio.run(collect_desktop, config, max(10, args.iterations))
        print(json.dumps(found) if args.json else format_desktop(found))
        return 0
    if args.tools:
        from orchestrator.bench.tools import collect_tools, format_tools

        tools = trio.run(collect_tools, config, max(10, args.iterations), args.image)
        print(json.dumps(tools) if args.json else format_tools(tools))
        return 0
    if args.http:
        from orchestrator.bench.http import collect_http, format_http

        report = trio.run(collect_http, config, max(10, args.iterations), args.image)
        print(json.dumps(report) if args.json else format_http(report))
        return 0
    from orchestrator.bench.channel import run_bench

    return trio.run(run_bench, config, args.iterations, args.image, args.json, not args.no_cli)


def _demo(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.ops.demo import run_demo

    return trio.run(run_demo, config, args.image)


def _version(args: argparse.Namespace, config: Config) -> int:
    from orchestrator.cli import version_text

    print(version_text())
    return 0


async def collect_garbage(config: Config, as_json: bool, snapshots: str | None = None) -> int:
    from orchestrator.backends.registry import make_backend
    from orchestrator.cli.image_catalog import collect_old_snapshots
    from orchestrator.images.catalog import parse_duration
    from orchestrator.supervisor import Supervisor

    older_than = parse_duration(snapshots) if snapshots is not None else None
    backend = make_backend(config)
    try:
        reaped = await Supervisor(config, backend).reap_orphans()
        bundles = await _collect_guest_bundles(backend)
    finally:
        await backend.aclose()
    images = await collect_old_snapshots(config, older_than) if older_than is not None else []
    if as_json:
        print(
            json.dumps(
                {
                    "removed": [info.id for info in reaped],
                    "snapshots": images,
                    "guest_bundles": bundles,
                }
            )
        )
    else:
        for image in images:
            print(f"removed snapshot {image}")
        if older_than is not None:
            print(f"{len(images)} snapshot(s) removed")
        for name in bundles:
            print(f"removed guest bundle {name} (an older guest's; no sandbox used it)")
        for info in reaped:
            session = info.labels.get("io.sbx.session", "?")
            print(f"removed {info.id[:12]}  session {session}  ({info.status})")
        print(f"{len(reaped)} orphaned sandbox(es) removed")
    return 0


async def _collect_guest_bundles(backend: object) -> list[str]:
    """The guest bundles of other guest versions that nothing uses (one engine's)."""
    from orchestrator.backends.docker.backend import DockerBackend
    from orchestrator.backends.docker.guest_volume import collect_stale

    if not isinstance(backend, DockerBackend):
        return []  # a swarm's bundles live on its nodes; each node's engine keeps its own
    current = await backend.guest_volumes.current()
    return await collect_stale(backend.engine, current)
