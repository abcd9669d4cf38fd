"""The density table: every figure with its floor, and where latency doubles."""

from __future__ import annotations

from orchestrator.bench.density import format_density


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
