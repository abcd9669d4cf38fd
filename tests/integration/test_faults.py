"""Faults injected from outside, on the real engine: each is noticed within a second, reported
with its cause to the calls in flight, and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Awaitable, Callable

import docker
import httpx
import pytest
import trio

from orchestrator import Config, Orchestrator, Session
from orchestrator.errors import ProtocolError, SandboxGone, SbxError
from orchestrator.testing.api_process import start_api_process
from orchestrator.testing.engine_proxy import EngineProxy

from .conftest import IMAGE

TOKEN = "faults-token"


@pytest.mark.parametrize(
    ("fault", "state", "cause"),
    [
        ("kill", "crashed", "its sandbox stopped (exit code 137)"),
        ("remove", "crashed", "its sandbox"),  # killed, then removed: whichever the engine says
        ("pause", "broken", "its sandbox was paused from outside"),
    ],
)
async def test_a_sandbox_killed_removed_or_paused_from_outside_is_noticed_within_a_second(
    orch: Orchestrator, docker_client: docker.DockerClient, fault: str, state: str, cause: str
) -> None:
    session = await orch.open_session(image=IMAGE, memories=False)
    assert session.sandbox_id is not None
    container = docker_client.containers.get(session.sandbox_id)
    await trio.sleep(0.5)  # the engine's event stream is up
    elapsed: list[float] = []

    async def call() -> None:
        started = trio.current_time()
        with pytest.raises(SandboxGone) as info:
            await session.exec("sleep 60", timeout=60)
        elapsed.append(trio.current_time() - started)
        assert session.state in ("broken", "crashed")
        assert "open a new session" in str(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await trio.sleep(0.5)
        injected = trio.current_time()
        action = {
            "kill": container.kill,
            "remove": lambda: container.remove(force=True),
            "pause": container.pause,
        }[fault]
        await trio.to_thread.run_sync(action)
    assert trio.current_time() - injected < 1.5, "not noticed within a second"
    assert session.state == state, session.failure
    assert cause in (session.failure or ""), session.failure
    await session.close()
    with trio.fail_after(20):
        while docker_client.api.containers(all=True, filters={"id": session.sandbox_id}):
            await trio.sleep(0.2)
    async with orch.session(image=IMAGE, memories=False) as fresh:
        assert (await fresh.exec("echo next")).stdout == b"next\n"


def _guest_pid(docker_client: docker.DockerClient, sandbox_id: str) -> int:
    """The host pid of the guest: the only child of the sandbox's init."""
    init = docker_client.api.inspect_container(sandbox_id)["State"]["Pid"]
    with open(f"/proc/{init}/task/{init}/children") as f:
        children = [int(pid) for pid in f.read().split()]
    assert len(children) == 1, children
    return children[0]


def _protocol_fd(pid: int) -> int:
    """The guest's descriptor for the stream the host reads frames from: its first
    write-only pipe that is not its stderr (it moved its stdout there at start)."""
    stderr = os.readlink(f"/proc/{pid}/fd/2")
    for fd in sorted(int(name) for name in os.listdir(f"/proc/{pid}/fd")):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        with open(f"/proc/{pid}/fdinfo/{fd}") as info:
            flags = int(info.read().split("flags:")[1].split()[0], 8)
        if fd > 2 and target.startswith("pipe:") and target != stderr and flags & 3 == 1:
            return fd
    raise AssertionError(f"no protocol pipe among the guest's descriptors ({pid})")


async def _noticed_within_a_second(session: Session) -> None:
    """The call in flight failed at once; the session's state follows within a second (it
    gives the engine half a second to say why the stream ended)."""
    with trio.fail_after(1.0):
        while session.state not in ("broken", "crashed"):
            await trio.sleep(0.05)


def _gone(docker_client: docker.DockerClient, sandbox_id: str) -> bool:
    return not docker_client.api.containers(all=True, filters={"id": sandbox_id})


async def _wait_gone(docker_client: docker.DockerClient, sandbox_id: str, within: float) -> None:
    with trio.fail_after(within):
        while not _gone(docker_client, sandbox_id):
            await trio.sleep(0.2)


async def _call_fails_in_flight(session: Session, within: float) -> SbxError:
    """Start a long call; return the typed error it ends with, within ``within`` seconds: the
    sandbox is gone, or what it sent cannot be read."""
    with trio.fail_after(within):
        with pytest.raises((SandboxGone, ProtocolError)) as info:
            await session.exec("sleep 60", timeout=60)
    return info.value


async def _fault_under_a_call(
    session: Session, inject: Callable[[], Awaitable[object]]
) -> SbxError:
    """Start a long call, ``inject`` the fault while it runs; the typed error it ends with."""
    errors: list[SbxError] = []

    async def call() -> None:
        errors.append(await _call_fails_in_flight(session, within=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await trio.sleep(0.5)
        await inject()
    return errors[0]


async def _nothing_left_and_the_next_session_works(
    orch: Orchestrator, docker_client: docker.DockerClient, session: Session
) -> None:
    sandbox_id = session.sandbox_id
    assert sandbox_id is not None
    with trio.fail_after(30):
        await session.close()
    await _wait_gone(docker_client, sandbox_id, within=20)
    async with orch.session(image=IMAGE, memories=False) as fresh:
        assert (await fresh.exec("echo next")).stdout == b"next\n"


async def test_a_guest_that_stops_answering_turns_the_session_broken_within_its_heartbeat(
    config: Config, docker_client: docker.DockerClient
) -> None:
    config.session.heartbeat_interval = 0.5
    config.session.heartbeat_timeout = 2.0
    async with Orchestrator(config) as orch:
        session = await orch.open_session(image=IMAGE, memories=False)
        assert session.sandbox_id is not None
        guest = _guest_pid(docker_client, session.sandbox_id)
        stopped = 0.0

        async def stop_the_guest() -> None:
            nonlocal stopped
            stopped = trio.current_time()
            os.kill(guest, signal.SIGSTOP)  # the host may; nothing in the sandbox can

        error = await _fault_under_a_call(session, stop_the_guest)
        noticed = trio.current_time() - stopped
        assert noticed < 2.0 + 0.5 + 2.0, noticed  # timeout + interval + slack
        assert session.state == "broken", session.failure
        assert "has not answered for 2 s" in (session.failure or "")
        assert "has not answered" in str(error)
        with pytest.raises(SandboxGone, match="has not answered"):
            await session.exec("echo again")
        await _nothing_left_and_the_next_session_works(orch, docker_client, session)


@pytest.mark.parametrize(
    ("garbage", "cause"),
    [
        (b"\x00\x00\x00\x05\x00\x00\x00\x00hello", "frame header is not JSON"),
        (b"\xff" * 64, "over the limits"),
    ],
    ids=["bad-header", "huge-length"],
)
async def test_a_guest_stream_carrying_garbage_fails_the_session_with_the_cause_not_a_hang(
    orch: Orchestrator, docker_client: docker.DockerClient, garbage: bytes, cause: str
) -> None:
    session = await orch.open_session(image=IMAGE, memories=False)
    assert session.sandbox_id is not None
    guest = _guest_pid(docker_client, session.sandbox_id)

    def write_into_the_guests_stream() -> None:
        with open(f"/proc/{guest}/fd/{_protocol_fd(guest)}", "wb", buffering=0) as stream:
            stream.write(garbage)

    error = await _fault_under_a_call(
        session, lambda: trio.to_thread.run_sync(write_into_the_guests_stream)
    )
    await _noticed_within_a_second(session)
    assert cause in str(error), error
    assert cause in (session.failure or ""), session.failure
    await _nothing_left_and_the_next_session_works(orch, docker_client, session)


async def test_an_attach_stream_cut_mid_call_ends_the_call_typed_and_the_sandbox_is_removed(
    config: Config, docker_client: docker.DockerClient
) -> None:
    proxy = EngineProxy()
    async with trio.open_nursery() as outer:
        config.engine.docker_host = await outer.start(proxy.run)
        async with Orchestrator(config) as orch:
            session = await orch.open_session(image=IMAGE, memories=False)
            assert session.sandbox_id is not None

            async def cut() -> None:
                assert proxy.cut() >= 1  # the attach stream (and the event stream)

            error = await _fault_under_a_call(session, cut)
            await _noticed_within_a_second(session)
            assert "open a new session" in str(error)
            # The proxy still forwards new connections: the platform goes on.
            await _nothing_left_and_the_next_session_works(orch, docker_client, session)
        outer.cancel_scope.cancel()


async def test_an_engine_refusing_connections_opens_the_breaker_which_closes_once_it_is_back(
    docker_client: docker.DockerClient,
) -> None:
    proxy = EngineProxy()
    async with trio.open_nursery() as outer:
        url = await outer.start(proxy.run)
        server = await trio.to_thread.run_sync(
            lambda: start_api_process(
                {
                    "SBX_TOKEN": TOKEN,
                    "SBX_ENGINE__DOCKER_HOST": url,
                    "SBX_RESILIENCE__ATTEMPTS": "2",
                    "SBX_RESILIENCE__FIRST_WAIT": "0.1",
                    "SBX_RESILIENCE__BREAKER_FAILURES": "3",
                    "SBX_RESILIENCE__BREAKER_RESET": "2",
                }
            )
        )
        try:
            async with httpx.AsyncClient(
                base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ) as http:

                async def open_session() -> httpx.Response:
                    return await http.post("/v1/sessions", json={"image": IMAGE})

                outer.start_soon(proxy.refuse_for, 10.0)
                await trio.sleep(0.2)
                refused_at = trio.current_time()
                answers: list[httpx.Response] = []
                with trio.fail_after(60):
                    while True:
                        answer = await open_session()
                        assert answer.status_code in (502, 503), answer.text  # typed, never 500
                        answers.append(answer)
                        if answer.json()["error"]["type"] == "dependency_down":
                            break
                open_answer = answers[-1]
                body = open_answer.json()["error"]
                assert "the 'engine' circuit breaker is open" in body["message"], body
                assert body["retryable"] is True and body["retry_after"] > 0, body
                assert int(open_answer.headers["retry-after"]) >= 1
                with trio.fail_after(30):
                    while True:
                        ready = await http.get("/readyz")
                        if ready.json()["breakers"]["engine"]["state"] == "open":
                            break
                        await trio.sleep(0.5)
                assert ready.status_code == 503

                # Once the engine is back, the breaker's probe closes it and sessions start.
                with trio.fail_after(60):
                    while True:
                        answer = await open_session()
                        if answer.status_code == 201:
                            break
                        assert answer.status_code in (502, 503), answer.text
                        await trio.sleep(0.5)
                assert trio.current_time() - refused_at >= 9.5
                created = answer.json()
                with trio.fail_after(30):
                    while True:
                        ready = await http.get("/readyz")
                        if ready.json()["breakers"]["engine"]["state"] == "closed":
                            break
                        await trio.sleep(1)
                assert ready.status_code == 200, ready.text
                ran = await http.post(
                    f"/v1/sessions/{created['id']}/exec", json={"command": "echo back"}
                )
                assert ran.json()["stdout"] == "back\n", ran.text
                await http.delete(f"/v1/sessions/{created['id']}")
                metrics = (await http.get("/metrics")).text
                assert 'sbx_breaker_opened_total{breaker="engine"}' in metrics
                assert 'sbx_retries_total{operation="' in metrics  # the refused tries, counted
            log = server.log()
        finally:
            await trio.to_thread.run_sync(server.stop)
            outer.cancel_scope.cancel()
    # Nothing the server made outlives it: neither the session nor a refused try.
    supervisor = f"{socket.gethostname()}:{server.pid}:"
    left = [
        c["Id"]
        for c in docker_client.api.containers(all=True, filters={"label": "io.sbx.managed"})
        if c["Labels"].get("io.sbx.supervisor", "").startswith(supervisor)
    ]
    assert left == []
    assert "Traceback" not in log
    assert '"circuit breaker opened: failing fast"' in log
    assert '"circuit breaker closed"' in log
