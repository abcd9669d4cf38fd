"""Live reload: what may change while serving, checked whole, applied at once, under load."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from pydantic import ValidationError

from orchestrator import Config, FakeBackend
from orchestrator.api.auth import hash_token
from orchestrator.api.config_reload import ConfigReloader
from orchestrator.api.server import serve_api
from orchestrator.config import explain_config
from orchestrator.config.reload import apply, is_live, plan_reload
from tests.api_harness import ADMIN, ALICE, BOB, new_session


def _file(max_sessions_per_owner: int, *, max_memory: str = "16g", level: str = "info") -> str:
    tokens = ",\n  ".join(
        f'{{ owner = "{owner}", sha256 = "{hash_token(token)}"{admin} }}'
        for owner, token, admin in (
            ("alice", ALICE, ""),
            ("bob", BOB, ""),
            ("ops", ADMIN, ", admin = true"),
        )
    )
    return (
        f"[limits]\nmax_sessions_per_owner = {max_sessions_per_owner}\n"
        f'max_memory = "{max_memory}"\n'
        f'[logging]\nlevel = "{level}"\n'
        f"[api]\ntokens = [\n  {tokens},\n]\n"
    )


def test_live_changes_are_planned_and_restart_keys_are_kept_as_running() -> None:
    running = Config()
    new = Config()
    new.limits.max_pids = 1000
    new.pool.size = 2
    new.sandbox.cpus = 0.5  # needs a restart
    plan = plan_reload(running, new)
    assert set(plan.live) == {"limits.max_pids", "pool.size"}
    assert plan.restart == ("sandbox.cpus",)
    assert plan.candidate.sandbox.cpus == 1.0
    limits_before = running.limits
    apply(running, plan)
    assert running.limits.max_pids == 1000 and running.pool.size == 2
    assert running.sandbox.cpus == 1.0
    assert limits_before.max_pids == 4096  # swapped whole, not edited in place
    assert is_live("limits.max_memory") and not is_live("sandbox.memory")


def test_a_ceiling_below_a_running_default_is_rejected_whole() -> None:
    running = Config()
    new = Config.model_construct(**{name: getattr(running, name) for name in Config.model_fields})
    new.__dict__["limits"] = running.limits.model_copy(update={"max_memory": 1 << 20})
    with pytest.raises(ValidationError, match=r"over limits\.max_memory"):
        plan_reload(running, new)


async def _serve_with_reload(
    config: Config,
    backend: FakeBackend,
    path: Path,
    nursery: trio.Nursery,
    shutdown: trio.Event,
) -> tuple[str, ConfigReloader]:
    found: list[ConfigReloader] = []
    url = await nursery.start(
        partial(
            serve_api,
            config,
            bind="127.0.0.1:0",
            backend=backend,
            shutdown=shutdown,
            handle_signals=True,
            reload_from=explain_config(path),
            reloader_ready=found.append,
        )
    )
    return url, found[0]


async def _sighup(reloader: ConfigReloader) -> None:
    done = reloader.reloaded
    os.kill(os.getpid(), signal.SIGHUP)
    with trio.fail_after(10):
        await done.wait()


async def test_sighup_reloads_a_limit_under_load_and_no_call_fails(
    api_config: Config, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    path = tmp_path / "sbx.toml"
    path.write_text(_file(3))
    api_config.limits.max_sessions_per_owner = 3
    api_config.api.config_watch_interval = 0  # SIGHUP alone, for this test
    shutdown = trio.Event()
    statuses: list[int] = []
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        url, reloader = await _serve_with_reload(api_config, fake_backend, path, nursery, shutdown)
        headers = {"Authorization": f"Bearer {ALICE}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as alice:
            sessions = [await new_session(alice) for _ in range(3)]
            refused = await alice.post("/v1/sessions", json={})
            assert refused.status_code == 429, refused.text

            async def keep_calling(session: str) -> None:
                while not stop.is_set():
                    response = await alice.post(
                        f"/v1/sessions/{session}/exec", json={"command": "echo hi"}
                    )
                    statuses.append(response.status_code)

            async with trio.open_nursery() as load:
                for session in sessions:
                    for _ in range(3):
                        load.start_soon(keep_calling, session)
                while len(statuses) < 30:
                    await trio.sleep(0.01)

                path.write_text(_file(4, level="debug"))
                before = len(statuses)
                await _sighup(reloader)
                applied = reloader.outcomes[-1]
                assert applied.status == "applied", applied
                assert set(applied.applied) >= {"limits.max_sessions_per_owner", "logging.level"}
                assert api_config.limits.max_sessions_per_owner == 4
                fourth = await alice.post("/v1/sessions", json={})
                assert fourth.status_code == 201, fourth.text  # the new ceiling is in force

                # A bad change: a ceiling under the running default memory, and a limit that
                # would be fine alone. Neither is applied.
                path.write_text(_file(1, max_memory="32m"))
                await _sighup(reloader)
                rejected = reloader.outcomes[-1]
                assert rejected.status == "rejected"
                assert "limits.max_memory" in rejected.reason
                assert api_config.limits.max_sessions_per_owner == 4
                assert api_config.limits.max_memory == 16 << 30
                assert api_config.logging.level == "debug"

                # Tokens change live too: bob's token removed, refused at once.
                path.write_text(_file(4, level="info").replace(hash_token(BOB), "0" * 64))
                await _sighup(reloader)
                assert reloader.outcomes[-1].status == "applied"
                async with httpx.AsyncClient(
                    base_url=url, headers={"Authorization": f"Bearer {BOB}"}
                ) as bob:
                    assert (await bob.get("/v1/sessions")).status_code == 401

                while len(statuses) < before + 30:
                    await trio.sleep(0.01)
                stop.set()
        shutdown.set()
    assert len(statuses) > 60
    assert set(statuses) == {200}


async def test_a_changed_file_is_reloaded_without_a_signal(
    api_config: Config, fake_backend: FakeBackend, tmp_path: Path
) -> None:
    path = tmp_path / "sbx.toml"
    path.write_text(_file(3))
    api_config.api.config_watch_interval = 0.05
    api_config.pool.images = []
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        _, reloader = await _serve_with_reload(api_config, fake_backend, path, nursery, shutdown)
        done = reloader.reloaded
        path.write_text(_file(7) + "\n[session]\nmax_sessions = 9\n[sandbox]\ncpus = 0.5\n")
        with trio.fail_after(10):
            await done.wait()
        outcome = reloader.outcomes[-1]
        assert outcome.status == "applied"
        assert api_config.limits.max_sessions_per_owner == 7
        assert api_config.session.max_sessions == 9
        assert "sandbox.cpus" in outcome.needs_restart  # said so, and kept as it runs
        assert api_config.sandbox.cpus == 1.0

        done = reloader.reloaded
        path.write_text("[limits\n")  # broken mid-edit: rejected, nothing changes
        with trio.fail_after(10):
            await done.wait()
        assert reloader.outcomes[-1].status == "rejected"
        assert "not valid TOML" in reloader.outcomes[-1].reason
        assert api_config.limits.max_sessions_per_owner == 7
        shutdown.set()


async def test_a_pool_raised_from_zero_by_a_reload_starts_its_spares(
    fake_config: Config, fake_backend: FakeBackend
) -> None:
    from orchestrator import Orchestrator

    fake_config.pool.size = 0
    fake_config.pool.images = ["code-runner"]
    async with Orchestrator(fake_config, backend=fake_backend) as orch:
        pool = orch.supervisor.pool
        await trio.sleep(0.1)
        assert pool.spares() == []
        raised = fake_config.model_copy(deep=True)
        raised.pool.size = 2
        apply(fake_config, plan_reload(fake_config, raised))
        pool.reconfigured()
        with trio.fail_after(20):
            while len(pool.spares()) < 2:
                await trio.sleep(0.01)
        lowered = fake_config.model_copy(deep=True)
        lowered.pool.size = 1
        apply(fake_config, plan_reload(fake_config, lowered))
        pool.reconfigured()
        session = await orch.open_session("code-runner", memories=False)
        await session.close()
        await trio.sleep(0.2)
        assert len(pool.spares()) == 1  # the one taken is not replaced past the new size
