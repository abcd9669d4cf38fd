"""The density table: every figure with its floor, and where latency doubles."""

from __future__ import annotations

from orchestrator.bench.density import _one_size, format_density
from orchestrator.errors import SandboxStartError


def _row(sessions: int, p50: float, rate: float) -> dict[str, float]:
    return {
        "sessions": sessions,
        "calls": sessions * 100,
        "open_seconds": 1.0,
        "calls_per_s": rate,
        "p50_ms": p50,
        "p99_ms": p50 * 3,
        "orchestrator_cpu_ms_per_call": 0.5,
        "sandbox_cpu_ms_per_call": 2.0,
        "engine_cpu_ms_per_call": 1.0,
        "host_cpu_ms_per_call": 7.0,
        "idle_memory_mb_per_sandbox": 8.0,
        "floor_calls_per_s": 1000.0,
        "ratio_to_floor": rate / 1000,
    }


def test_the_table_names_the_floor_and_the_doubling_point() -> None:
    report = {
        "backend": "swarm",
        "image": "base",
        "alone": _row(1, 5.0, 100.0),
        "sizes": [_row(50, 40.0, 130.0)],
        "latency_doubles_at": 50,
    }
    text = format_density(report)
    lines = text.splitlines()
    assert "on swarm" in lines[0] and "floor" in lines[0]
    assert "floor calls/s" in lines[1] and "ratio" in lines[1]
    assert lines[3].split()[0] == "50" and "0.13" in lines[3]
    assert lines[-1].endswith("at N = 50")
    report["latency_doubles_at"] = None
    assert "did not double" in format_density(report)


class _Session:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class _EngineAtItsLimit:
    """Every third sandbox does not start in time."""

    def __init__(self) -> None:
        self.asked = 0
        self.opened: list[_Session] = []

    async def open_session(self, **options: object) -> _Session:
        self.asked += 1
        if self.asked % 3 == 0:
            raise SandboxStartError("sandbox x was not ready within 60 s")
        session = _Session()
        self.opened.append(session)
        return session


async def test_sessions_that_do_not_open_make_a_row_that_says_so_and_close_the_rest() -> None:
    engine = _EngineAtItsLimit()
    row = await _one_size(engine, "base", 6, 10)
    assert row["sessions"] == 6
    assert row["error"].startswith("2 of 6 sessions did not open"), row
    assert "not ready within 60 s" in row["error"] and "--sessions" in row["error"]
    assert len(engine.opened) == 4 and all(s.closed for s in engine.opened)
    report = {
        "backend": "swarm",
        "image": "base",
        "alone": _row(1, 5.0, 100.0),
        "sizes": [_row(50, 40.0, 130.0), row],
        "latency_doubles_at": 50,
    }
    lines = format_density(report).splitlines()
    assert lines[4].split()[:3] == ["6", "not", "measured:"], lines
