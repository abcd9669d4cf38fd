"""One attempt of one step: render its templates, run its action, collect its outputs.

``tool``, ``exec``, ``shell``, ``put`` and ``get`` become ``tool_use`` blocks
run by the router (``step_tools`` holds the workflow's own tools); ``agent``
runs the Claude loop in the step's session, whose tool calls go through the
router too.  Values substituted into shell strings are shell-quoted; an argv
list's items are not (nothing parses them).  The outcome carries the raw
outputs -- ``json`` computed when read -- for later steps; the runner masks
what it reports.

Must not: retry, wait for other steps, or decide what a failure means for the run.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from orchestrator.config import Config
from orchestrator.errors import SbxError
from orchestrator.results import ExecResult
from orchestrator.router import ToolRouter
from orchestrator.workflows.masking import Masker
from orchestrator.workflows.model import Step
from orchestrator.workflows.step_tools import EXEC_TOOL, GET_TOOL, PUT_TOOL, RESULT, SHELL_TOOL
from orchestrator.workflows.template import Lazy, Template, TemplateError, parse_expression
from orchestrator.workflows.template import evaluate as evaluate_expression
from orchestrator.workflows.template import parse_template as _parse_template

if TYPE_CHECKING:
    import anthropic

    from orchestrator.agent.loop import AgentHost
    from orchestrator.session import Session

__all__ = ["ActionEnv", "Outcome", "condition", "render", "run_action"]

ClientFactory = Callable[[str | None], "anthropic.AsyncAnthropic"]
"""Makes the Messages API client of an agent step, given the step's ``base_url``."""
_TAIL = 2000


@lru_cache(maxsize=4096)
def parse_template(text: str) -> Template:
    return _parse_template(text)


def render(
    value: Any, context: Mapping[str, Any], quote: Callable[[str], str] | None = None
) -> Any:
    """``value`` with every template in it evaluated (strings in lists and mappings too)."""
    if isinstance(value, str):
        if "${{" not in value:
            return value
        return parse_template(value).render(context, quote)
    if isinstance(value, list):
        return [render(item, context, quote) for item in value]
    if isinstance(value, dict):
        return {key: render(item, context, quote) for key, item in value.items()}
    return value


def text_of(value: Any, context: Mapping[str, Any]) -> str:
    rendered = render(value, context)
    from orchestrator.workflows.template import to_text

    return rendered if isinstance(rendered, str) else to_text(rendered)


def condition(value: str | bool, context: Mapping[str, Any]) -> bool:
    """An ``if:``: a template, or a bare expression."""
    if isinstance(value, bool):
        return value
    if "${{" in value:
        return bool(render(value, context))
    return bool(evaluate_expression(parse_expression(value), context))


def _json_of(text: str, what: str) -> Lazy:
    def parse() -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise TemplateError(f"{what} is not JSON ({exc}): {text[:80]!r}") from None

    return Lazy(parse)


@dataclass
class Outcome:
    ok: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    retryable: bool = True


@dataclass
class ActionEnv:
    """What a step's action may use: the router, the run's sessions, the agent host."""

    host: AgentHost
    router: ToolRouter
    sessions: Mapping[str, Session]
    config: Config
    run_root: Path
    base_dir: Path | None = None
    """Where ``put: {from: ...}`` paths are relative to (the workflow file's folder)."""
    allow_local_files: bool = True
    agent_client: ClientFactory | None = None
    masker: Masker = field(default_factory=Masker)
    """The run's secrets: agent transcripts are masked with it once a run ends."""
    _ids: int = 0

    def next_id(self, step_id: str) -> str:
        self._ids += 1
        return f"wf_{step_id}_{self._ids}"


def _tool_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if part.get("type") == "text")
    return ""


async def _call(
    env: ActionEnv, step: Step, session: Session, uses: list[tuple[str, dict[str, Any]]]
) -> tuple[list[dict[str, Any]], list[tuple[str, bytes]]]:
    assert step.id is not None
    blocks = [
        {"type": "tool_use", "id": env.next_id(step.id), "name": name, "input": tool_input}
        for name, tool_input in uses
    ]
    return await env.router.run_with_artifacts(session, blocks)


def _exec_outcome(results: list[dict[str, Any]], artifacts: list[tuple[str, bytes]]) -> Outcome:
    data = dict(artifacts).get(RESULT)
    if data is None:
        return Outcome(False, error=_tool_text(results[0]) or "the command did not run")
    result = ExecResult.model_validate_json(data)
    stdout = result.stdout_text.rstrip("\n")
    outputs = {
        "stdout": stdout,
        "stderr": result.stderr_text.rstrip("\n"),
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "json": _json_of(stdout, "stdout"),
    }
    if result.ok:
        return Outcome(True, outputs)
    if result.timed_out:
        error = f"timed out after {result.duration:.1f} s"
    elif result.oom_killed:
        error = f"out of memory (exit code {result.exit_code})"
    else:
        error = f"exit code {result.exit_code}"
    tail = result.stderr_text.strip()[-_TAIL:]
    return Outcome(False, outputs, error + (f": {tail}" if tail else ""))


async def _exec(env: ActionEnv, step: Step, session: Session, ctx: Mapping[str, Any]) -> Outcome:
    command: str | list[str]
    if isinstance(step.exec, list):
        argv = [text_of(part, ctx) for part in step.exec]
        command, shown = argv, shlex.join(argv)
    else:
        shown = render(step.exec, ctx, shlex.quote)
        command = shown
    tool_input: dict[str, Any] = {"command": command, "timeout": step.timeout}
    if step.env:
        tool_input["env"] = {key: text_of(value, ctx) for key, value in step.env.items()}
    if step.cwd is not None:
        tool_input["cwd"] = text_of(step.cwd, ctx)
    if step.stdin is not None:
        tool_input["stdin"] = text_of(step.stdin, ctx)
    results, artifacts = await _call(env, step, session, [(EXEC_TOOL, tool_input)])
    outcome = _exec_outcome(results, artifacts)
    outcome.details["command"] = shown
    return outcome


async def _shell(env: ActionEnv, step: Step, session: Session, ctx: Mapping[str, Any]) -> Outcome:
    command = render(step.shell, ctx, shlex.quote)
    tool_input = {"command": command, "name": step.shell_name, "timeout": step.timeout}
    results, artifacts = await _call(env, step, session, [(SHELL_TOOL, tool_input)])
    outcome = _exec_outcome(results, artifacts)
    outcome.details["command"] = command
    return outcome


async def _tool(env: ActionEnv, step: Step, session: Session, ctx: Mapping[str, Any]) -> Outcome:
    assert step.tool is not None
    name = text_of(step.tool.name, ctx)
    tool_input = render(step.tool.input, ctx)
    results, _ = await _call(env, step, session, [(name, tool_input)])
    block = results[0]
    text = _tool_text(block)
    is_error = bool(block.get("is_error"))
    outputs = {"text": text, "is_error": is_error, "json": _json_of(text, "the tool's text")}
    details = {"tool": name, "input": tool_input}
    return Outcome(not is_error, outputs, text[-_TAIL:] if is_error else None, details)


async def _put(env: ActionEnv, step: Step, session: Session, ctx: Mapping[str, Any]) -> Outcome:
    import base64

    assert step.put is not None
    path = text_of(step.put.path, ctx)
    if step.put.from_ is not None:
        if not env.allow_local_files:
            return Outcome(False, error="put: from: reads this machine's files; not allowed here")
        local = Path(text_of(step.put.from_, ctx))
        if not local.is_absolute() and env.base_dir is not None:
            local = env.base_dir / local
        try:
            data = await trio.Path(local).read_bytes()
        except OSError as exc:
            return Outcome(False, error=f"cannot read {local}: {exc}", retryable=False)
    else:
        data = text_of(step.put.content, ctx).encode("utf-8")
    tool_input = {"path": path, "data_b64": base64.b64encode(data).decode(), "mode": step.put.mode}
    results, _ = await _call(env, step, session, [(PUT_TOOL, tool_input)])
    if results[0].get("is_error"):
        return Outcome(False, error=_tool_text(results[0]))
    return Outcome(True, {"files": [path], "path": path}, details={"bytes": len(data)})


async def _get(env: ActionEnv, step: Step, session: Session, ctx: Mapping[str, Any]) -> Outcome:
    raw = render(step.get, ctx)
    paths = [str(path) for path in (raw if isinstance(raw, list) else [raw])]
    results, artifacts = await _call(env, step, session, [(GET_TOOL, {"path": p}) for p in paths])
    failed = [_tool_text(block) for block in results if block.get("is_error")]
    if failed:
        return Outcome(False, error="; ".join(failed))
    files = dict(artifacts)
    texts = {path: data.decode("utf-8", "replace") for path, data in files.items()}
    first = texts.get(paths[0], "")
    outputs = {"files": texts, "text": first, "json": _json_of(first, "the file")}
    return Outcome(True, outputs, files=files)


async def _agent(env: ActionEnv, step: Step, session: Session, ctx: Mapping[str, Any]) -> Outcome:
    from orchestrator.agent.loop import AgentError, run_agent
    from orchestrator.tools.versions import DEFAULT_MODEL

    assert step.agent is not None
    assert step.id is not None
    spec = step.agent
    if spec.task is None:
        return Outcome(False, error="agent: give the task", retryable=False)
    registry = env.router.registry
    families = [
        tool.family if (tool := registry.get(name)) is not None else name for name in spec.tools
    ]
    client = env.agent_client(spec.base_url) if env.agent_client is not None else None
    started = time.perf_counter()
    try:
        result = await run_agent(
            env.host,
            text_of(spec.task, ctx),
            session=session,
            model=text_of(spec.model, ctx) if spec.model else DEFAULT_MODEL,
            tools=families,
            max_turns=spec.max_turns,
            max_tokens=spec.max_tokens,
            token_budget=spec.token_budget,
            system=text_of(spec.system, ctx) if spec.system else None,
            base_url=spec.base_url,
            run_root=env.run_root / step.id,
            client=client,
        )
    except AgentError as exc:
        where = {"run_dir": str(exc.run_dir)} if exc.run_dir else {}
        if exc.run_dir is not None:
            await _mask_transcripts(exc.run_dir, env.masker)
        return Outcome(False, error=str(exc), details=where)
    except KeyError as exc:
        return Outcome(False, error=str(exc).strip("'\""), retryable=False)
    finally:
        if client is not None:
            await client.close()
    await _mask_transcripts(result.run_dir, env.masker)
    done = result.stop_reason in ("end_turn", "stop_sequence")
    outputs = {
        "text": result.final_text,
        "json": _json_of(result.final_text, "the agent's final text"),
        "stop_reason": result.stop_reason,
        "turns": result.turns,
        # Every prompt token, whether the cache served it or not.
        "input_tokens": result.input_tokens + result.cache_read_tokens + result.cache_write_tokens,
        "output_tokens": result.output_tokens,
        "cache_read_tokens": result.cache_read_tokens,
        "cost_usd": result.cost_usd,
        "exit_code": 0 if done else 1,
    }
    details: dict[str, Any] = {
        "run_dir": str(result.run_dir),
        "model": text_of(spec.model, ctx) if spec.model else DEFAULT_MODEL,
        "agent_seconds": round(time.perf_counter() - started, 3),
    }
    error = None if done else f"the agent stopped without finishing ({result.stop_reason})"
    return Outcome(done, outputs, error, details)


async def _mask_transcripts(run_dir: Path, masker: Masker) -> None:
    """An agent run's transcript with the run's secrets masked (Claude saw them; logs do not)."""
    if not masker:
        return

    def rewrite() -> None:
        for path in run_dir.glob("*.jsonl"):
            text = path.read_text(encoding="utf-8")
            masked = masker.text(text)
            if masked != text:
                path.write_text(masked, encoding="utf-8")

    await trio.to_thread.run_sync(rewrite)


_ACTIONS = {
    "exec": _exec,
    "shell": _shell,
    "tool": _tool,
    "put": _put,
    "get": _get,
    "agent": _agent,
}


async def run_action(env: ActionEnv, step: Step, context: Mapping[str, Any]) -> Outcome:
    """One attempt of ``step`` with ``context`` (vars, secrets, steps, item)."""
    assert step.session is not None
    session = env.sessions[step.session]
    try:
        return await _ACTIONS[step.action](env, step, session, context)
    except TemplateError as exc:
        return Outcome(False, error=f"template: {exc}", retryable=False)
    except SbxError as exc:
        return Outcome(False, error=str(exc))
