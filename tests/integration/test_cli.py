"""The `sbx` command line against the real engine."""

from __future__ import annotations

import json
import subprocess
import sys

import docker

from orchestrator.config import load_config, sandbox_memory_limit

from .conftest import IMAGE

SBX = [sys.executable, "-m", "orchestrator.cli"]


def sbx(
    *args: str, stdin: bytes | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*SBX, *args], input=stdin, capture_output=True, timeout=timeout, check=False
    )


def test_run_passes_output_through_and_exits_with_the_commands_code() -> None:
    r = sbx("run", "--image", IMAGE, "--", "sh", "-c", "printf 'out\\377'; printf err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == b"out\xff"
    assert r.stderr.endswith(b"err")


def test_run_exits_124_on_timeout() -> None:
    r = sbx("run", "--image", IMAGE, "--timeout", "1", "--", "sleep", "30")
    assert r.returncode == 124


def test_run_passes_env_workdir_stdin_and_limits() -> None:
    r = sbx(
        "run",
        "--image",
        IMAGE,
        "-e",
        "GREETING=hej",
        "-w",
        "/tmp",
        "--memory",
        "256m",
        "--cpus",
        "0.5",
        "-i",
        "--",
        "sh",
        "-c",
        "cat; pwd; echo $GREETING; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
        "2>/dev/null || cat /sys/fs/cgroup/memory.max",
        stdin=b"piped\n",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(b"\n")[:3] == [b"piped", b"/tmp", b"hej"]
    # The cgroup holds the processes' 256 MiB and the mounts (tmpfs pages are memory).
    sandbox = load_config().sandbox
    limit = sandbox_memory_limit(256 << 20, sandbox.tmpfs_for(256 << 20), sandbox.shm_size)
    assert r.stdout.split(b"\n")[3] == str(limit).encode()


def test_run_with_an_unknown_image_exits_125_and_says_how_to_build_it() -> None:
    r = sbx("run", "--image", "sbx-nonexistent", "--", "true")
    assert r.returncode == 125  # sbx failed, not the command: as `docker run`
    assert b"image sbx-nonexistent not found" in r.stderr
    assert b"sbx images build" in r.stderr
    assert b"sbx images ls" in r.stderr
    assert b"Traceback" not in r.stderr


def test_a_misspelt_image_suggests_the_closest_known_name() -> None:
    r = sbx("run", "--image", "code-runer", "--", "true")
    assert r.returncode == 125
    assert b"did you mean code-runner?" in r.stderr
    assert b"sbx images ls" in r.stderr


def test_run_refuses_a_command_missing_in_the_sandbox_with_127() -> None:
    r = sbx("run", "--image", IMAGE, "--", "no-such-tool", "--flag")
    assert r.returncode == 127
    assert b"no-such-tool" in r.stderr


def test_gc_removes_orphans(docker_client: docker.DockerClient) -> None:
    image = IMAGE if ":" in IMAGE or IMAGE.startswith("sbx") else f"sbx-{IMAGE}"
    cid = docker_client.api.create_container(
        image,
        labels={
            "io.sbx.managed": "true",
            "io.sbx.owner": "local",
            "io.sbx.supervisor": "nohost-xyz:1:1",
            "io.sbx.expires": "1",
        },
    )["Id"]
    try:
        r = sbx("gc", "--json")
        assert r.returncode == 0, r.stderr
        assert cid in json.loads(r.stdout)["removed"]
    finally:
        try:
            docker_client.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass


def test_bench_reports_the_documented_keys() -> None:
    r = sbx("bench", "--json", "-n", "20", "--no-cli", "--image", IMAGE)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    for key in ("channel_exec_p50_ms", "docker_exec_p50_ms", "ping_p50_ms", "ratio"):
        assert report[key] > 0
    assert report["ratio"] == round(report["docker_exec_p50_ms"] / report["channel_exec_p50_ms"], 1)


def test_the_demo_runs_every_job_and_leaves_nothing() -> None:
    r = sbx("demo", "--image", IMAGE, timeout=600)
    assert r.returncode == 0, r.stdout.decode()[-2000:]
    out = " ".join(r.stdout.decode().split())  # rich wraps lines to the terminal's width
    assert "8/8 jobs ok" in out
    assert "no sandbox left behind" in out
