"""An engine restarted under open sessions, on a dockerd of the test's own (its own network
namespace, data and exec roots): never the host's engine.

Stopping the engine stops every sandbox: the sessions turn ``crashed`` with the cause, their
calls in flight fail typed within a bound, and once the engine is back the same orchestrator
starts sessions again and hears the engine's events again (its event stream reconnected);
nothing is left in the engine afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
import trio

from orchestrator import Config, Orchestrator
from orchestrator.errors import ProtocolError, SandboxGone
from orchestrator.testing.private_engine import PrivateEngine


@pytest.fixture(scope="module")
def engine() -> Iterator[PrivateEngine]:
    with PrivateEngine() as private:
        private.start()
        private.load_image("sbx-base:latest")
        yield private


async def test_an_engine_restarted_under_open_sessions_crashes_them_and_serves_again(
    config: Config, engine: PrivateEngine
) -> None:
    config.engine.docker_host = engine.url
    config.session.heartbeat_interval = 0.5
    config.session.heartbeat_timeout = 3.0
    client = docker.DockerClient(base_url=engine.url, timeout=30)
    try:
        async with Orchestrator(config) as orch:
            busy = await orch.open_session(image="base", memories=False)
            idle = await orch.open_session(image="base", memories=False)
            failures: list[Exception] = []

            async def call() -> None:
                with pytest.raises((SandboxGone, ProtocolError)) as info:
                    await busy.exec("sleep 120", timeout=120)
                failures.append(info.value)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                await trio.sleep(0.5)
                stopped = trio.current_time()
                await trio.to_thread.run_sync(engine.stop)
            assert trio.current_time() - stopped < 30, "the call outlived the engine's stop"
            with trio.fail_after(10):
                while {busy.state, idle.state} != {"crashed"}:
                    await trio.sleep(0.1)
            assert "open a new session" in str(failures[0])
            assert "stopped" in (busy.failure or ""), busy.failure
            with pytest.raises(SandboxGone):
                await idle.exec("echo late")

            await trio.to_thread.run_sync(engine.start)
            with trio.fail_after(60):
                while True:  # the engine breaker may still be open for a moment
                    try:
                        fresh = await orch.open_session(image="base", memories=False)
                        break
                    except Exception:
                        await trio.sleep(0.5)
            assert (await fresh.exec("echo back")).stdout == b"back\n"

            # The event stream reconnected: a kill from outside is noticed within a second.
            await trio.sleep(1.5)
            assert fresh.sandbox_id is not None
            container = client.containers.get(fresh.sandbox_id)
            await trio.to_thread.run_sync(container.kill)
            killed = trio.current_time()
            with trio.fail_after(1.5):
                while fresh.state != "crashed":
                    await trio.sleep(0.05)
            assert "exit code 137" in (fresh.failure or ""), fresh.failure
            assert trio.current_time() - killed < 1.5
            for session in (busy, idle, fresh):
                await session.close()
        # Nothing of ours is left in the engine (the stopped sandboxes were removed too).
        with trio.fail_after(30):
            while client.containers.list(all=True, filters={"label": "io.sbx.managed"}):
                await trio.sleep(0.5)
    finally:
        client.close()
