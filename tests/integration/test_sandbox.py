"""Sessions on real sandboxes: lifecycle, hardening, exec, shells, files."""

from __future__ import annotations

import os

import docker
import pytest
import trio

from orchestrator import Config, Orchestrator, PathNotAllowed
from orchestrator.errors import FileTooLarge

from .conftest import IMAGE, containers_of_session


async def _wait_gone(client: docker.DockerClient, session_id: str, seconds: float = 10) -> None:
    with trio.fail_after(seconds):
        while containers_of_session(client, session_id):
            await trio.sleep(0.1)


async def test_closing_a_session_removes_its_container(orch: Orchestrator, docker_client) -> None:
    async with orch.session(image=IMAGE) as s:
        assert containers_of_session(docker_client, s.id) == [s.sandbox_id]
        assert (await s.exec("echo hi")).stdout == b"hi\n"
    await _wait_gone(docker_client, s.id)


async def test_hardening_as_the_engine_reports_it(orch: Orchestrator, docker_client) -> None:
    async with orch.session(image=IMAGE) as s:
        attrs = docker_client.api.inspect_container(s.sandbox_id)
    host, cfg = attrs["HostConfig"], attrs["Config"]
    # The guest starts as root with four capabilities of its own and root's set for root's
    # commands, and drops to a uid of its own; what it runs runs as the sandbox user with
    # none (test_hardening_as_seen_from_inside), root with root's (test_users.py).
    assert cfg["User"] == "0:0"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    guest = ["KILL", "SETGID", "SETPCAP", "SETUID"]
    root = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "NET_BIND_SERVICE", "SETFCAP"]
    assert sorted(host["CapAdd"]) == sorted([*guest, *root])
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False
    assert host["NetworkMode"] == "none"
    assert host["PidsLimit"] == orch.config.sandbox.pids_limit
    # tmpfs pages are memory: the limit is the processes' memory plus every mount and /dev/shm.
    assert host["Memory"] == host["MemorySwap"] == orch.config.sandbox.memory_limit
    assert host["NanoCpus"] == int(orch.config.sandbox.cpus * 1e9)
    assert host["AutoRemove"] is True
    assert host["Init"] is True
    assert not host["Binds"]
    assert set(host["Tmpfs"]) == set(orch.config.sandbox.tmpfs)
    # The attached stdout is the channel: nothing of it lands in an engine log by default.
    assert host["LogConfig"]["Type"] == "none"
    assert cfg["StdinOnce"] is True
    assert "docker.sock" not in str(attrs.get("Mounts"))


async def test_an_engine_log_when_configured_is_capped(config: Config, docker_client) -> None:
    config.sandbox.log_driver = "json-file"
    config.sandbox.log_max_size = 256 << 10
    async with Orchestrator(config) as orch, orch.session(image=IMAGE, memories=False) as s:
        host = docker_client.api.inspect_container(s.sandbox_id)["HostConfig"]
        assert (await s.exec("echo logged")).stdout == b"logged\n"
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": str(256 << 10), "max-file": "1"},
    }


async def test_hardening_as_seen_from_inside(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, pids_limit=64) as s:
        uid = await s.exec(["id", "-u"])
        caps = await s.exec("grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status")
        nets = await s.exec("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '")
        root = await s.exec("touch /usr/bin/evil")
        nnp = await s.exec("grep NoNewPrivs /proc/self/status")
        fork = await s.exec("for i in $(seq 100); do sleep 5 & done 2>&1; wait", timeout=30)
    assert uid.stdout.strip() != b"0"
    assert [line.split()[1] for line in caps.stdout.decode().splitlines()] == ["0" * 16] * 3
    assert nets.stdout.split() == [b"lo"]
    assert root.exit_code != 0
    assert b"Read-only file system" in root.stderr
    assert nnp.stdout.split()[-1] == b"1"
    assert b"Resource temporarily unavailable" in fork.stdout + fork.stderr


async def test_network_when_asked_for(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, network=True) as s:
        nets = await s.exec("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '")
    assert b"eth0" in nets.stdout.split()


async def test_exit_codes_streams_and_missing_commands(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE) as s:
        r = await s.exec("echo out; echo err >&2; exit 42")
        missing = await s.exec("definitely-not-a-command")
        binary = await s.exec(["printf", "\\200\\377"])
    assert (r.exit_code, r.stdout, r.stderr) == (42, b"out\n", b"err\n")
    assert missing.exit_code == 127
    assert b"command not found" in missing.stderr
    assert binary.stdout == b"\x80\xff"


async def test_timeouts_kill_children_and_ignored_term(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE) as s:
        r = await s.exec(
            "trap '' TERM; sleep 1000 & setsid sleep 1001 & while true; do sleep 0.2; done",
            timeout=1,
        )
        left = await s.exec("ps -eo args= | grep -E 'sleep 100[01]' | grep -v grep || true")
    assert r.timed_out
    assert r.signal == 9
    assert left.stdout == b""


async def test_output_streams_in_order(orch: Orchestrator) -> None:
    got: list[tuple[str, bytes]] = []
    async with orch.session(image=IMAGE) as s:
        async with s.exec_stream(
            "for i in 1 2 3; do echo $i; sleep 0.2; echo e$i >&2; done"
        ) as run:
            async for chunk in run:
                got.append((chunk.stream, chunk.data))
            result = await run.result()
    assert got == [
        ("stdout", b"1\n"),
        ("stderr", b"e1\n"),
        ("stdout", b"2\n"),
        ("stderr", b"e2\n"),
        ("stdout", b"3\n"),
        ("stderr", b"e3\n"),
    ]
    assert result.exit_code == 0


async def test_twenty_sessions_in_parallel(orch: Orchestrator, docker_client) -> None:
    outputs: dict[int, bytes] = {}
    ids: list[str] = []

    async def job(i: int) -> None:
        async with orch.session(image=IMAGE) as s:
            ids.append(s.id)
            outputs[i] = (await s.exec(f"echo {i} $(hostname)")).stdout

    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(job, i)
    assert sorted(outputs) == list(range(20))
    assert len({out.split()[1] for out in outputs.values()}) == 20  # 20 different sandboxes
    for session_id in ids:
        await _wait_gone(docker_client, session_id)


async def test_persistent_shell(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE) as s:
        await s.shell("cd /tmp && export A=1 && f() { echo f$1; }")
        r = await s.shell("pwd; echo $A; f 2")
    assert r.stdout == b"/tmp\n1\nf2\n"


async def test_binary_file_round_trip(orch: Orchestrator) -> None:
    data = os.urandom(2_000_000)
    async with orch.session(image=IMAGE) as s:
        await s.write_file("/workspace/blob.bin", data)
        back = await s.read_file("/workspace/blob.bin")
        digest = await s.exec("sha256sum /workspace/blob.bin | cut -d' ' -f1")
    assert back == data
    import hashlib

    assert digest.stdout.strip().decode() == hashlib.sha256(data).hexdigest()


async def test_escapes_are_refused(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE) as s:
        await s.exec(
            "ln -s /etc /workspace/etc && ln -s /etc/passwd /workspace/pw"
            " && ln -s /proc/1/root /workspace/root"
        )
        for path in (
            "/workspace/root/etc/hostname",  # a link the sandbox user may not even read
            "/proc/1/root/etc/hostname",
            "/workspace/../etc/passwd",
            "/workspace/etc/passwd",
            "/workspace/pw",
            "/etc/passwd",
            "/proc/self/environ",
        ):
            with pytest.raises(PathNotAllowed):
                await s.read_file(path)
        with pytest.raises(PathNotAllowed):
            await s.write_file("/workspace/etc/evil", b"x")


async def test_files_over_the_cap(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE) as s:
        await s.exec("head -c 40000000 /dev/zero > /tmp/big")
        with pytest.raises(FileTooLarge, match="read it in parts"):
            await s.read_file("/tmp/big")
        assert len(await s.read_file("/tmp/big", offset=39_999_990)) == 10


async def test_out_of_memory_is_reported_and_the_session_goes_on(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memory="96m") as s:
        r = await s.exec(["python3", "-c", "x = bytearray(400 << 20); print(len(x))"], timeout=60)
        after = await s.exec("echo alive")
    assert r.oom_killed
    assert r.signal == 9
    assert after.stdout == b"alive\n"


async def test_dead_mans_switch_removes_the_container_when_the_stream_closes(
    orch: Orchestrator, docker_client
) -> None:
    s = await orch.open_session(image=IMAGE)
    await s.client.channel.aclose()  # the stream only: no remove call
    await _wait_gone(docker_client, s.id)
    await s.close()


async def test_programs_written_in_the_sandbox_can_run(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE) as s:
        for place in ("/workspace", "/tmp", "/var/tmp", "/home/sandbox"):
            await s.write_file(f"{place}/hello.sh", "#!/bin/sh\necho ran from $0\n", mode=0o755)
            r = await s.exec([f"{place}/hello.sh"])
            assert r.stdout == f"ran from {place}/hello.sh\n".encode(), (place, r.stderr)
        mounts = await s.exec("grep ' /run ' /proc/mounts")
    assert b"noexec" in mounts.stdout
