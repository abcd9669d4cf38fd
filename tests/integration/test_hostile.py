"""Hostile workloads in real sandboxes: each ends within a bound, reports the truth, leaves nothing.

The sandboxed code here does what an attacker or a runaway program would;
every test asserts the call ended in time with a true report, and that the
sandbox (or a fresh one) still serves the next call.
"""

from __future__ import annotations

import socket
import sys
import time

import pytest
import trio

from orchestrator import Orchestrator
from orchestrator.backends.docker.host_config import GVISOR_MEMORY_HEADROOM
from orchestrator.errors import OptionNotAllowed

from .conftest import GVISOR, IMAGE

_NO_NETWORK_UNDER_GVISOR = (
    "runsc is registered with --network=none on this engine (gVisor's own network stack "
    "cannot start in this engine's network namespace), so a networked session has no network"
)


async def test_filling_every_writable_mount_is_enospc_and_the_sandbox_keeps_serving(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memory="256m", memories=False) as s:
        for mount in ("/workspace", "/tmp", "/home/sandbox", "/dev/shm"):
            started = time.monotonic()
            r = await s.exec(
                f"head -c 2G /dev/zero > {mount}/fill; echo rc=$?", timeout=120, max_output=4096
            )
            assert time.monotonic() - started < 60, mount
            assert not r.oom_killed, f"filling {mount} must not kill anything: {r}"
            assert "No space left on device" in r.stderr_text, (mount, r)
            assert r.stdout_text.strip() == "rc=1", (mount, r)
        # Every mount is full at once, and the processes still have their memory.
        alive = await s.exec(["python3", "-c", "x = bytearray(128 << 20); print(len(x))"])
        assert alive.exit_code == 0 and alive.stdout == b"134217728\n", alive
        cleared = await s.exec("rm /workspace/fill /tmp/fill /home/sandbox/fill /dev/shm/fill")
        assert cleared.exit_code == 0, cleared
        after = await s.exec("df --output=used /workspace | tail -1")
        assert int(after.stdout) < 1024, after


async def test_a_session_of_the_default_shape_has_room_for_its_memory_and_its_mounts(
    orch: Orchestrator, docker_client
) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        assert s.sandbox_id is not None
        host = docker_client.api.inspect_container(s.sandbox_id)["HostConfig"]
        sandbox = orch.config.sandbox
        expected = sandbox.memory + sum(sandbox.tmpfs_for(sandbox.memory).values())
        expected += sandbox.shm_size
        if GVISOR:  # the guest holds the limit inside; the gVisor kernel gets room on top
            expected += GVISOR_MEMORY_HEADROOM + expected // 8
        assert host["Memory"] == expected
        assert host["ShmSize"] == sandbox.shm_size
        with trio.fail_after(30):
            df = await s.exec("df -B1 --output=size /workspace | tail -1")
        assert int(df.stdout) == sandbox.tmpfs_for(sandbox.memory)["/workspace"]


# -- the guest is out of reach -------------------------------------------------------------

_GUEST_PID = "$(cat /proc/$$/stat | cut -d' ' -f4)"

AS_USER_AND_ROOT = pytest.mark.parametrize("user", [None, "root"], ids=["as the user", "as root"])
"""The guest is out of reach of root's commands too: root holds no KILL, SETUID or
SYS_PTRACE, and the guest runs under a uid of its own.  Under gVisor root is refused
outright (its /proc lets root reopen the guest's channel: README, "Under gVisor")."""


async def _root_refused_under_gvisor(orch: Orchestrator, user: str | None) -> bool:
    """Under gVisor, that a root session and a root command are refused, typed and named;
    ``True`` when the test ends there."""
    if user != "root" or not GVISOR:
        return False
    with pytest.raises(OptionNotAllowed, match="cannot run as root"):
        async with orch.session(image=IMAGE, memories=False, user="root"):
            pass
    async with orch.session(image=IMAGE, memories=False) as s:
        with pytest.raises(OptionNotAllowed, match="under gVisor"):
            await s.exec("id -u", user="root")
        with pytest.raises(OptionNotAllowed, match="under gVisor"):
            await s.shell("id -u", user="0:0")
        assert (await s.exec("id -u")).stdout != b"0\n"
    return True


"""The guest is every command's parent (commands run in sessions of their own)."""


@AS_USER_AND_ROOT
async def test_no_command_can_signal_stop_or_kill_the_guest(
    orch: Orchestrator, user: str | None
) -> None:
    if await _root_refused_under_gvisor(orch, user):
        return
    async with orch.session(image=IMAGE, memories=False, user=user) as s:
        guest = int((await s.exec(f"echo {_GUEST_PID}")).stdout)
        assert guest > 1
        for sig in ("STOP", "KILL", "TERM", "INT"):
            r = await s.exec(f"kill -{sig} {guest}; echo rc=$?")
            assert "Operation not permitted" in r.stderr_text, (sig, r)
            assert r.stdout_text.strip() == "rc=1", (sig, r)
        init = await s.exec("kill -STOP 1; echo rc=$?; grep ^State: /proc/1/status")
        if user == "root":
            # Root shares init's uid, so kill() says yes -- but the kernel drops signals
            # sent to a namespace's init from inside it that init does not handle.
            assert "T (stopped)" not in init.stdout_text, init
        else:
            assert "Operation not permitted" in init.stderr_text and "rc=1" in init.stdout_text
        # Everything the user may signal, at once: the guest (and the call) survive.
        everything = await s.exec("kill -9 -1; echo survived", timeout=10)
        assert everything.exit_code in (0, -9, 137), everything
        assert (await s.exec("echo still here")).stdout == b"still here\n"
        assert (await s.info())["pid"] == guest


async def test_a_stopped_shell_cannot_freeze_the_guest_with_the_next_long_command(
    orch: Orchestrator,
) -> None:
    # The shell's own child stops the shell once its command has finished; the next
    # command is longer than a pipe holds.  Written blocking, it froze the whole guest
    # (heartbeat included) and the session was lost; now only that command times out.
    async with orch.session(image=IMAGE, memories=False) as s:
        armed = await s.shell("(sleep 0.5; kill -STOP $$) >/dev/null 2>&1 & echo armed")
        assert armed.stdout == b"armed\n", armed
        await trio.sleep(1.5)
        started = time.monotonic()
        r = await s.shell("true " + "#" * 200_000, timeout=2)
        assert time.monotonic() - started < 2 + orch.config.session.kill_grace + 2
        assert r.timed_out and r.shell_exited, r
        assert s.state == "ready"
        again = await s.shell("echo fresh")
        assert again.stdout == b"fresh\n" and again.shell_restarted, again
        assert (await s.exec(["echo", "ok"])).stdout == b"ok\n"


async def test_a_stopped_interpreter_cannot_freeze_the_guest_with_the_next_long_cell(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        armed = await s.run_code(
            "import os, signal, threading, time\n"
            "threading.Thread(target=lambda: (time.sleep(0.5), "
            "os.kill(os.getpid(), signal.SIGSTOP)), daemon=True).start()\n"
            "print('armed')"
        )
        assert armed.stdout == b"armed\n", armed
        await trio.sleep(1.5)
        started = time.monotonic()
        r = await s.run_code("x = 1\n" + "#" * 200_000, timeout=2)
        assert time.monotonic() - started < 2 + orch.config.session.kill_grace + 2
        assert r.timed_out and r.restarted, r
        assert s.state == "ready"
        again = await s.run_code("print(6 * 7)")
        assert again.stdout == b"42\n", again


async def test_a_folder_of_empty_directories_cannot_stall_the_guests_calls(
    orch: Orchestrator,
) -> None:
    # Code execution scans its outputs folder before and after every cell, in the
    # guest's loop; 150,000 empty directories there made each cell take ~13 s and
    # held every other call of the session.  The scans now stop after a bounded
    # number of entries.
    async with orch.session(image=IMAGE, memories=False) as s:
        made = await s.exec(
            "mkdir -p /workspace/outputs && cd /workspace/outputs && "
            "python3 -c 'import os\nfor i in range(150000): os.mkdir(\"d%d\" % i)'",
            timeout=300,
        )
        assert made.exit_code == 0, made
        started = time.monotonic()
        cell = await s.run_code("print(6 * 7)", timeout=8)
        assert cell.status == "ok" and cell.stdout == b"42\n", cell
        assert time.monotonic() - started < 8
        # A listing of it fits one answer (10,000 entries of it did not: a 1.4 MB header).
        listed = await s.list_files("/workspace/outputs")
        assert 1000 < len(listed) <= 10000
        assert (await s.exec(["echo", "ok"])).stdout == b"ok\n"


_GVISOR_REACHES_CALL_PIPES = (
    "gVisor (this 2022 runsc) checks file modes, not ptrace access, when a command reopens "
    "/proc/PID/fd of the guest, and the guest's effective uid is the user's there (no "
    "setfsuid), so the pipes of the session's own calls and its /dev/null open; the "
    "channel's descriptors stay refused, see "
    "test_reopening_every_descriptor_of_the_guest_neither_steals_nor_injects_frames"
)


@pytest.mark.parametrize(
    "user",
    [
        pytest.param(
            None, id="as the user", marks=pytest.mark.gvisor_differs(_GVISOR_REACHES_CALL_PIPES)
        ),
        pytest.param("root", id="as root"),
    ],
)
async def test_no_command_can_read_or_write_the_guests_descriptors(
    orch: Orchestrator, user: str | None
) -> None:
    if await _root_refused_under_gvisor(orch, user):
        return
    async with orch.session(image=IMAGE, memories=False, user=user) as s:
        guest = int((await s.exec(f"echo {_GUEST_PID}")).stdout)
        for fd in (0, 1, 2):
            read = await s.exec(f"timeout 2 cat /proc/{guest}/fd/{fd}; echo rc=$?", timeout=10)
            assert "Permission denied" in read.stderr_text, (fd, read)
            write = await s.exec(f"echo x > /proc/{guest}/fd/{fd}; echo rc=$?")
            assert "Permission denied" in write.stderr_text, (fd, write)
        listing = await s.exec(f"ls /proc/{guest}/fd; echo rc=$?")
        if user != "root":  # root's DAC_OVERRIDE lists the numbers; none of them opens
            assert "Permission denied" in listing.stderr_text, listing
        memory = await s.exec(f"head -c 1 /proc/{guest}/mem; echo rc=$?")
        assert "Permission denied" in memory.stderr_text, memory
        # And the channel still carries whole frames afterwards.
        assert (await s.exec("echo intact")).stdout == b"intact\n"


_REOPEN_EVERY_FD = """
import os, stat, sys
guest = sys.argv[1]
try:
    fds = sorted(os.listdir('/proc/%s/fd' % guest), key=int)
except PermissionError:  # runc: the listing is refused too; try the likely numbers
    fds = [str(n) for n in range(64)]
for fd in fds:
    path = '/proc/%s/fd/%s' % (guest, fd)
    try:
        target = os.readlink(path)
    except OSError:
        target = '?'
    for mode in (os.O_WRONLY, os.O_RDONLY):
        try:
            f = os.open(path, mode | os.O_NONBLOCK)
        except OSError:
            continue
        kind = 'directory' if stat.S_ISDIR(os.fstat(f).st_mode) else target.split(':')[0]
        print('opened', fd, kind, 'w' if mode == os.O_WRONLY else 'r', file=sys.stderr)
        try:
            if mode == os.O_WRONLY:
                os.write(f, b'\\x00\\x00\\x00\\x10not a frame' * 64)
            else:
                os.read(f, 1 << 16)
        except OSError:
            pass
        os.close(f)
print('done')
"""


@AS_USER_AND_ROOT
async def test_reopening_every_descriptor_of_the_guest_neither_steals_nor_injects_frames(
    orch: Orchestrator, user: str | None
) -> None:
    """Under runc nothing of the guest's opens.  Under gVisor the pipes of the session's
    own calls do (README, "Under gVisor"), so their outputs may gain or lose bytes there
    and a call whose exec report is written to fails to start (exit 126);
    what must hold on both is the channel: no frame stolen or injected, every call
    answered, the session still serving."""
    if await _root_refused_under_gvisor(orch, user):
        return
    async with orch.session(image=IMAGE, memories=False, user=user) as s:
        guest = (await s.exec(f"echo {_GUEST_PID}")).stdout_text.strip()
        async with trio.open_nursery() as nursery:
            # Calls in flight meanwhile: a stolen or injected frame would break one.
            async def calls() -> None:
                for i in range(50):
                    # Under gVisor a call may fail to start or lose output (its pipes
                    # are reachable); it still gets its answer, over an intact channel.
                    r = await s.exec(f"echo call-{i}")
                    if not GVISOR:
                        assert r.exit_code == 0 and r.stdout == f"call-{i}\n".encode(), r

            nursery.start_soon(calls)
            r = await s.exec(["python3", "-c", _REOPEN_EVERY_FD, guest], timeout=30)
            assert r.exit_code == 0, r
            # Under gVisor the payload may land in this call's own stderr pipe: the report
            # is the lines the script wrote.
            opened = [
                line.split() for line in r.stderr_text.splitlines() if line.startswith("opened ")
            ]
            if GVISOR:
                # Only pipes of calls, /dev/null, directories and /proc files the user may
                # read anyway (the guest's memory watcher keeps /proc/meminfo open): never
                # the channel (the engine's attach stream, "host:[N]") or a socket.
                reached = {line[2] for line in opened if not line[2].startswith("/proc/")}
                assert reached <= {"pipe", "/dev/null", "directory"}, r.stderr_text
                assert all(line[3] == "r" for line in opened if line[2].startswith("/proc/"))
                assert r.stdout.endswith(b"done\n"), r
            else:
                assert opened == [] and r.stdout == b"done\n", r
        assert (await s.exec("echo intact")).stdout == b"intact\n"
        assert s.state == "ready"


async def test_no_command_can_trace_the_guest_and_none_holds_a_capability(
    orch: Orchestrator,
) -> None:
    attach = (
        "import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
        "r = libc.ptrace(16, int(sys.argv[1]), 0, 0); "  # PTRACE_ATTACH
        "print(r, ctypes.get_errno())"
    )
    async with orch.session(image=IMAGE, memories=False) as s:
        guest = (await s.exec(f"echo {_GUEST_PID}")).stdout.decode().strip()
        traced = await s.exec(["python3", "-c", attach, guest])
        assert traced.stdout.split() == [b"-1", b"1"], traced  # EPERM
        status = await s.exec(f"grep -E '^(Uid|Cap(Eff|Prm|Inh|Bnd|Amb))' /proc/{guest}/status")
        fields = {line.split(":")[0]: line.split()[1:] for line in status.stdout_text.splitlines()}
        assert fields["Uid"][0] not in ("0", "1000"), fields  # a uid of its own
        mine = await s.exec("grep -E '^Cap(Eff|Prm|Inh|Bnd|Amb)' /proc/self/status")
        sets = [line.split()[1] for line in mine.stdout_text.splitlines()]
        # gVisor's /proc shows no CapAmb line (an ambient set it does not keep).
        assert sets == ["0" * 16] * (4 if GVISOR else 5), sets
        code = await s.run_code(
            "import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGSTOP)\n"
            "except PermissionError as e:\n    print('refused', e.errno)"
        )
        assert code.stdout_text.strip() == "refused 1", code


async def test_a_hostile_command_through_sbx_run_ends_on_time_with_a_true_report() -> None:
    started = time.monotonic()
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            "--image",
            IMAGE,
            "--timeout",
            "5",
            "--",
            "sh",
            "-c",
            f"kill -STOP {_GUEST_PID}; cat /proc/{_GUEST_PID}/fd/0; sleep 60",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 124, result.stderr  # timed out, as timeout(1) reports it
    assert elapsed < 5 + 2 + 2 + 10, elapsed  # timeout + grace + 2 s, plus start-up
    assert b"Traceback" not in result.stderr
    assert b"Operation not permitted" in result.stderr
    assert b"Permission denied" in result.stderr


# -- every out-of-memory kill is reported ----------------------------------------------------

_GRANDCHILD_BOMB = "python3 -c \"x = [b'a' * (64 << 20) for _ in range(40)]\"; echo rc=$?"
"""A grandchild of the call runs out of memory; the call's own process survives."""


async def test_an_oom_kill_in_a_grandchild_is_reported_by_exec_shell_and_tools(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memory="256m", memories=False) as s:
        r = await s.exec(["bash", "-c", _GRANDCHILD_BOMB], timeout=60)
        assert r.stdout_text.strip() == "rc=137", r
        assert r.oom_killed, r
        assert not (await s.exec("true")).oom_killed  # a later call starts afresh
        shell = await s.shell(_GRANDCHILD_BOMB, timeout=60)
        assert shell.stdout_text.strip() == "rc=137" and shell.oom_killed, shell
        [bash] = await s.run_tools(
            [
                {
                    "type": "tool_use",
                    "id": "b1",
                    "name": "bash",
                    "input": {"command": _GRANDCHILD_BOMB},
                }
            ]
        )
        assert "[out of memory" in str(bash["content"]), bash
        code = await s.run_code(
            f"import subprocess\nsubprocess.run(['bash', '-c', {_GRANDCHILD_BOMB!r}])\nkept = 1"
        )
        assert code.oom_killed and not code.restarted, code
        assert (await s.run_code("kept")).result == "1"


async def test_an_oom_kill_in_a_grandchild_is_reported_by_sbx_run() -> None:
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            "--image",
            IMAGE,
            "--memory",
            "256m",
            "--",
            "bash",
            "-c",
            _GRANDCHILD_BOMB,
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.stdout.strip() == b"rc=137"
    assert b"ran out of memory" in result.stderr, result.stderr


# -- input of any size ---------------------------------------------------------------------


async def test_a_hundred_megabytes_of_stdin_and_a_large_environment_arrive_whole(
    orch: Orchestrator,
) -> None:
    import hashlib

    data = bytes(range(251)) * ((100 << 20) // 251)
    env = {f"BIG{i}": "e" * (100 << 10) for i in range(12)}  # 1.2 MiB in all
    async with orch.session(image=IMAGE, memories=False) as s:
        r = await s.exec("sha256sum | cut -c1-64", stdin=data, timeout=120)
        e = await s.exec('echo "${#BIG0} ${#BIG11}"', env=env)
    assert r.stdout.decode().strip() == hashlib.sha256(data).hexdigest(), r
    assert e.stdout == b"102400 102400\n", e


# -- a networked sandbox reaches the world, not the host or its neighbours ----------------------

_CONNECT = (
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.settimeout(3)\n"
    "try:\n"
    "    s.connect((sys.argv[1], int(sys.argv[2])))\n"
    "    print('connected')\n"
    "except OSError as e:\n"
    "    print('refused', e.errno)\n"
)


async def _connect(s: object, host: str, port: int) -> str:
    r = await s.exec(["python3", "-c", _CONNECT, host, str(port)], timeout=20)  # type: ignore[attr-defined]
    return r.stdout_text.strip()


@pytest.mark.gvisor_differs(_NO_NETWORK_UNDER_GVISOR)
async def test_a_networked_sandbox_cannot_reach_the_host_or_link_local_addresses(
    orch: Orchestrator,
) -> None:
    from orchestrator.host_network import local_ipv4_addresses

    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        async with orch.session(image=IMAGE, network=True, memories=False) as s:
            egress = (await s.info())["egress"]
            assert egress["restricted"] is True, egress
            targets = [egress["gateway"], *local_ipv4_addresses()]
            for address in targets:
                assert await _connect(s, address, port) == "refused 13", address  # EACCES
            assert await _connect(s, "169.254.169.254", 80) == "refused 13"
            caps = await s.exec("grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status")
            assert [line.split()[1] for line in caps.stdout_text.splitlines()] == ["0" * 16] * 3
            routes = await s.exec("cat /proc/net/route > /dev/null; echo ok")
            assert routes.stdout == b"ok\n"
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever arrived
    finally:
        listener.close()


@pytest.mark.gvisor_differs(_NO_NETWORK_UNDER_GVISOR)
async def test_networked_sandboxes_cannot_reach_each_other_but_do_reach_the_world(
    orch: Orchestrator,
) -> None:
    async with (
        orch.session(image=IMAGE, network=True, memories=False) as server,
        orch.session(image=IMAGE, network=True, memories=False) as client,
    ):
        await server.exec("nohup python3 -m http.server 8000 >/dev/null 2>&1 &")
        address = (await server.exec("hostname -i")).stdout_text.split()[0]
        with trio.fail_after(20):
            while await _connect(server, "127.0.0.1", 8000) != "connected":
                await trio.sleep(0.2)
        assert await _connect(client, address, 8000) == "refused 13"
        # The world, by name, stays reachable (the name servers are allowed).
        world = await client.exec(
            'python3 -c "import urllib.request as u; '
            "print(u.urlopen('http://deb.debian.org/debian/', timeout=20).status)\"",
            timeout=60,
        )
        assert world.stdout == b"200\n", world


async def test_without_network_nothing_is_reachable_by_address_or_by_name(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        by_address = await _connect(s, "203.0.113.80", 80)
        by_name = await s.exec("getent hosts deb.debian.org; echo rc=$?")
    assert by_address.startswith("refused"), by_address
    assert by_name.stdout_text.strip().endswith("rc=2"), by_name
