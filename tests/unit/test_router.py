"""The tool router: ordering, parallelism, isolation, cancellation, no deadlock."""

from __future__ import annotations

import random
import secrets
import subprocess
from typing import Any, ClassVar

import pytest
import trio
from anthropic.types.beta import BetaToolUseBlock
from pydantic import BaseModel

from orchestrator.router import ToolBatchError, ToolRouter
from orchestrator.tools import Resource, Tool, ToolContext, ToolError, ToolOutput, ToolRegistry
from orchestrator.tools.bash import BashTool


def use(name: str, tool_input: Any, tool_use_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": tool_use_id or f"toolu_{secrets.token_hex(6)}",
        "name": name,
        "input": tool_input,
    }


class TraceInput(BaseModel):
    key: str
    shared: bool = False
    seconds: float = 0.0
    fail: bool = False
    tag: str = ""


class TraceTool(Tool):
    """Records who holds which resource when, to check the router's promises."""

    name: ClassVar[str] = "trace"
    family: ClassVar[str] = "trace"
    types: ClassVar[tuple[str, ...]] = ("trace_1",)
    input_model: ClassVar[type[BaseModel]] = TraceInput
    default_timeout: ClassVar[float] = 30.0

    def __init__(self) -> None:
        self.holders: dict[tuple[str, str], list[bool]] = {}
        self.log: list[tuple[str, str, str]] = []
        self.running = 0
        self.peak = 0
        self.running_by_session: dict[str, int] = {}
        self.peak_by_session: dict[str, int] = {}
        self.violations: list[str] = []

    def resource(self, params: BaseModel) -> Resource:
        assert isinstance(params, TraceInput)
        return Resource(params.key, shared=params.shared)

    async def run(self, ctx: ToolContext, params: BaseModel) -> ToolOutput:
        assert isinstance(params, TraceInput)
        sid = ctx.session.id
        slot = (sid, params.key)
        holders = self.holders.setdefault(slot, [])
        if holders and not (params.shared and all(holders)):
            self.violations.append(f"{slot}: {params.tag} entered while held by {holders}")
        holders.append(params.shared)
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.running_by_session[sid] = self.running_by_session.get(sid, 0) + 1
        self.peak_by_session[sid] = max(
            self.peak_by_session.get(sid, 0), self.running_by_session[sid]
        )
        self.log.append(("start", sid, params.tag))
        try:
            await trio.sleep(params.seconds)
            if params.fail:
                raise ToolError(f"{params.tag} failed on purpose")
            return ToolOutput.text(params.tag)
        finally:
            holders.remove(params.shared)
            self.running -= 1
            self.running_by_session[sid] -= 1
            self.log.append(("end", sid, params.tag))


@pytest.fixture
def trace() -> TraceTool:
    return TraceTool()


@pytest.fixture
def router(trace: TraceTool, fake_config) -> ToolRouter:
    return ToolRouter(ToolRegistry([trace, BashTool(timeout=5.0)]), fake_config.tools)


async def test_results_come_back_in_block_order_with_matching_ids(orch, router) -> None:
    blocks = [
        use("trace", {"key": k, "seconds": s, "tag": k})
        for k, s in [("a", 0.3), ("b", 0.0), ("c", 0.1)]
    ]
    async with orch.session() as s:
        results = await router.run(s, blocks)
    assert [r["tool_use_id"] for r in results] == [b["id"] for b in blocks]
    assert [r["content"][0]["text"] for r in results] == ["a", "b", "c"]
    assert all(r["type"] == "tool_result" and "is_error" not in r for r in results)


async def test_different_resources_overlap(orch, router) -> None:
    async with orch.session() as s:
        start = trio.current_time()
        await router.run(
            s, [use("trace", {"key": "x", "seconds": 1}), use("trace", {"key": "y", "seconds": 1})]
        )
        assert trio.current_time() - start < 1.6


async def test_same_resource_runs_in_batch_order(orch, router, trace) -> None:
    async with orch.session() as s:
        start = trio.current_time()
        await router.run(
            s,
            [
                use("trace", {"key": "x", "seconds": 0.5, "tag": "first"}),
                use("trace", {"key": "x", "seconds": 0.0, "tag": "second"}),
                use("trace", {"key": "x", "seconds": 0.2, "tag": "third"}),
            ],
        )
        assert trio.current_time() - start >= 0.7
    assert [tag for kind, _, tag in trace.log if kind == "start"] == ["first", "second", "third"]
    assert trace.violations == []


async def test_read_only_calls_share_but_a_writer_waits_its_turn(orch, router, trace) -> None:
    async with orch.session() as s:
        start = trio.current_time()
        await router.run(
            s,
            [
                use("trace", {"key": "f", "shared": True, "seconds": 0.5, "tag": "r1"}),
                use("trace", {"key": "f", "shared": True, "seconds": 0.5, "tag": "r2"}),
                use("trace", {"key": "f", "seconds": 0.3, "tag": "w"}),
                use("trace", {"key": "f", "shared": True, "seconds": 0.0, "tag": "r3"}),
            ],
        )
        elapsed = trio.current_time() - start
    assert 0.8 <= elapsed < 1.3  # r1 and r2 together, then w, then r3
    order = [tag for kind, _, tag in trace.log if kind == "start"]
    assert set(order[:2]) == {"r1", "r2"}
    assert order[2:] == ["w", "r3"]
    assert trace.violations == []


async def test_one_failure_does_not_stop_the_others(orch, router) -> None:
    async with orch.session() as s:
        results = await router.run(
            s,
            [
                use("trace", {"key": "a", "fail": True, "tag": "bad"}),
                use("trace", {"key": "a", "seconds": 0.1, "tag": "after-bad"}),
                use("nope", {}),
                use("trace", {"key": 5}),
                use("trace", "not an object"),
                use("trace", {"key": "b", "tag": "fine"}),
            ],
        )
    assert results[0] == {
        "type": "tool_result",
        "tool_use_id": results[0]["tool_use_id"],
        "content": "bad failed on purpose",
        "is_error": True,
    }
    assert results[1]["content"][0]["text"] == "after-bad"
    assert results[2]["is_error"]
    assert "unknown tool 'nope'" in results[2]["content"]
    assert "bash, trace" in results[2]["content"]
    assert results[3]["is_error"]
    assert "key: Input should be a valid string (got 5)" in results[3]["content"]
    assert "JSON object" in results[4]["content"]
    assert results[5]["content"][0]["text"] == "fine"


async def test_missing_required_field_names_it(orch, router) -> None:
    async with orch.session() as s:
        [result] = await router.run(s, [use("trace", {"seconds": 1})])
    assert result["is_error"]
    assert "key: Field required" in result["content"]


async def test_duplicate_ids_reject_the_whole_batch(orch, router, trace) -> None:
    async with orch.session() as s:
        with pytest.raises(ToolBatchError, match="duplicate tool_use_id 'toolu_1'"):
            await router.run(
                s, [use("trace", {"key": "a"}, "toolu_1"), use("trace", {"key": "b"}, "toolu_1")]
            )
    assert trace.log == []


async def test_a_block_without_an_id_rejects_the_batch(orch, router) -> None:
    async with orch.session() as s:
        with pytest.raises(ToolBatchError, match="no 'id'"):
            await router.run(s, [{"type": "tool_use", "name": "trace", "input": {}}])


async def test_sdk_objects_and_non_tool_blocks_are_accepted(orch, router) -> None:
    block = BetaToolUseBlock(
        id="toolu_sdk", name="trace", input={"key": "k", "tag": "sdk"}, type="tool_use"
    )
    async with orch.session() as s:
        results = await router.run(s, [{"type": "text", "text": "thinking..."}, block])
    assert results == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_sdk",
            "content": [{"type": "text", "text": "sdk"}],
        }
    ]


async def test_a_call_past_its_deadline_is_an_error_and_the_rest_complete(
    orch, trace, fake_config
) -> None:
    fake_config.tools.call_timeout = 0.3
    router = ToolRouter(ToolRegistry([trace]), fake_config.tools)
    async with orch.session() as s:
        slow, quick = await router.run(
            s,
            [use("trace", {"key": "a", "seconds": 5}), use("trace", {"key": "b", "tag": "quick"})],
        )
    assert slow["is_error"]
    assert "did not finish within 0.3 s" in slow["content"]
    assert quick["content"][0]["text"] == "quick"


async def test_concurrency_limits_hold(orch, trace, fake_config) -> None:
    fake_config.tools.max_concurrent_calls = 3
    fake_config.tools.max_concurrent_calls_per_session = 2
    router = ToolRouter(ToolRegistry([trace]), fake_config.tools)
    sessions = [await orch.open_session() for _ in range(2)]
    batches = {
        s: [use("trace", {"key": f"k{i}", "seconds": 0.1}) for i in range(6)] for s in sessions
    }
    await router.run_many(batches)
    assert trace.peak == 3
    assert max(trace.peak_by_session.values()) == 2


async def test_bash_calls_in_one_session_keep_order_and_take_their_sum(orch, router) -> None:
    async with orch.session() as s:
        start = trio.current_time()
        results = await router.run(
            s,
            [
                use("bash", {"command": "sleep 0.6; echo one >> log; cat log"}),
                use("bash", {"command": "sleep 0.6; echo two >> log; cat log"}),
            ],
        )
        elapsed = trio.current_time() - start
    assert elapsed >= 1.2
    assert results[0]["content"][0]["text"] == "one"
    assert results[1]["content"][0]["text"] == "one\ntwo"


async def test_bash_calls_in_two_sessions_overlap(orch, router) -> None:
    a = await orch.open_session()
    b = await orch.open_session()
    start = trio.current_time()
    results = await router.run_many(
        {
            a: [use("bash", {"command": "sleep 1; echo a"})],
            b: [use("bash", {"command": "sleep 1; echo b"})],
        }
    )
    assert trio.current_time() - start < 1.7
    assert results[a.id][0]["content"][0]["text"] == "a"
    assert results[b.id][0]["content"][0]["text"] == "b"


async def test_bash_timeout_says_restart_and_restart_really_restarts(orch, fake_config) -> None:
    router = ToolRouter(ToolRegistry([BashTool(timeout=0.5)]), fake_config.tools)
    async with orch.session() as s:
        await router.run(s, [use("bash", {"command": "export KEEP=1"})])
        [timed_out] = await router.run(s, [use("bash", {"command": "sleep 30"})])
        [restarted] = await router.run(s, [use("bash", {"restart": True})])
        [after] = await router.run(s, [use("bash", {"command": "echo ${KEEP:-fresh}"})])
    assert timed_out["is_error"]
    assert "restart" in timed_out["content"]
    assert restarted["content"][0]["text"] == "tool has been restarted."
    assert after["content"][0]["text"] == "fresh"


async def test_bash_input_needs_command_or_restart(orch, router) -> None:
    async with orch.session() as s:
        [result] = await router.run(s, [use("bash", {})])
    assert result["is_error"]
    assert "give 'command'" in result["content"]


async def test_bash_reports_exit_code_and_stderr(orch, router) -> None:
    async with orch.session() as s:
        [result] = await router.run(
            s, [use("bash", {"command": "echo out; echo err >&2; (exit 3)"})]
        )
    assert "is_error" not in result
    assert result["content"][0]["text"] == "out\nstderr:\nerr\n[exit code 3]"


async def test_cancelling_a_batch_leaves_no_process(orch, router) -> None:
    marker = f"sbxrouter-{secrets.token_hex(4)}"
    async with orch.session() as s:
        with trio.move_on_after(0.5):
            await s.run_tools(
                [
                    use("bash", {"command": f"bash -c 'exec -a {marker} sleep 300'"}),
                ]
            )
        await trio.sleep(0.1)
        found = subprocess.run(["pgrep", "-f", marker], capture_output=True, check=False)
        assert found.stdout == b""
        [after] = await router.run(s, [use("bash", {"command": "echo usable"})])
    assert after["content"][0]["text"] == "usable"


ROUTER_SEEDS_CHECK = 20
"""Seeds of the randomized router test that every ``make check`` runs."""
ROUTER_SEEDS_SOAK = 200
"""Seeds the soak test runs in one orchestrator (``make test``)."""


async def _random_batches(sessions: list[Any], fake_config, seed: int) -> None:
    """Forty random batches over three resources in ``sessions``, some cancelled
    mid-flight; asserts no deadlock, no two holders of one resource, and batch order."""
    rng = random.Random(seed)
    trace = TraceTool()
    fake_config.tools.max_concurrent_calls = rng.choice([2, 4, 16])
    fake_config.tools.max_concurrent_calls_per_session = rng.choice([1, 2, 8])
    router = ToolRouter(ToolRegistry([trace]), fake_config.tools)
    batches_done = 0
    expected_orders: list[list[str]] = []

    async def batch(session, n: int) -> None:
        nonlocal batches_done
        blocks = []
        for i in range(n):
            key = rng.choice("abc")
            blocks.append(
                use(
                    "trace",
                    {
                        "key": key,
                        "shared": rng.random() < 0.4,
                        "seconds": rng.choice([0, 0, 0.001, 0.005]),
                        "fail": rng.random() < 0.1,
                        "tag": f"{session.id}/{id(blocks)}/{i}/{key}",
                    },
                )
            )
        with trio.CancelScope() as scope:
            if rng.random() < 0.15:
                scope.deadline = trio.current_time() + 0.002
            results = await router.run(session, blocks)
            assert [r["tool_use_id"] for r in results] == [b["id"] for b in blocks]
        if not scope.cancelled_caught:
            expected_orders.append([b["input"]["tag"] for b in blocks if not b["input"]["shared"]])
        batches_done += 1

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(batch, rng.choice(sessions), rng.randint(1, 8))
    assert batches_done == 40
    assert trace.violations == []
    started = [tag for kind, _, tag in trace.log if kind == "start"]
    for order in expected_orders:
        # Exclusive calls of one batch on one resource start in batch order.
        for key in "abc":
            mine = [tag for tag in order if tag.endswith("/" + key)]
            assert [tag for tag in started if tag in mine] == mine
    for session in sessions:
        assert len(session.locks) == 0, f"seed {seed}: a lock outlived its batch"


@pytest.mark.parametrize("seed", range(ROUTER_SEEDS_CHECK))
async def test_randomized_batches_never_deadlock_or_break_ordering(
    orch, fake_config, busy_cpu, seed: int
) -> None:
    sessions = [await orch.open_session() for _ in range(3)]
    with trio.fail_after(60):
        await _random_batches(sessions, fake_config, seed)


@pytest.mark.soak
async def test_two_hundred_seeds_in_one_orchestrator_never_deadlock(
    orch, fake_config, busy_cpu
) -> None:
    sessions = [await orch.open_session() for _ in range(3)]
    with trio.fail_after(60):
        for seed in range(ROUTER_SEEDS_SOAK):
            await _random_batches(sessions, fake_config, 1000 + seed)
