"""The evaluation benchmark's run: 100 scripted tasks at concurrency 8, nothing left behind.

Speed is the benchmark's business (``sbx bench --evals`` prints the ratio to
``docker run --rm`` scripts measured in the same run); this test keeps the
run correct and prints the figures it measured.
"""

from __future__ import annotations

from orchestrator import Config
from orchestrator.bench.evals import collect_evals, format_evals
from tests.integration.conftest import IMAGE


async def test_a_hundred_tasks_at_concurrency_eight_leave_nothing_behind(config: Config) -> None:
    report = await collect_evals(config, tasks=100, concurrency=8, image=IMAGE)
    print("\n" + format_evals(report))
    assert report["sbx_passed"] == 100
    assert report["docker_passed"] == 100
    assert report["leaks"] == 0
    assert report["ratio"] > 0
