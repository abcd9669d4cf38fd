"""The HTML report: one self-contained page (no script, style or image from elsewhere).

A summary (counts by status, time, tokens, cost), a table of the trials,
then one collapsible section per trial: its graders with their messages,
its timings, what the solver did -- each workflow step with its command and
output, or the agent's transcript turn by turn -- and its screenshots,
embedded as data URIs.  Every text is HTML-escaped and long ones are cut.

Must not: fetch or link anything outside the page, or run anything.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from orchestrator.evals.results import SuiteResult, TrialResult

__all__ = ["html_page"]

MAX_TEXT = 20_000
MAX_IMAGES = 40

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} .muted{color:#777}
#summary{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}
.count{border-radius:6px;padding:.5em 1em;background:#eee;min-width:5em;text-align:center}
.count b{display:block;font-size:1.6em}
.passed{background:#d9f2dc} .failed{background:#f8d7d7} .timeout{background:#fbeec4}
.error{background:#ead7f5}
.badge{border-radius:4px;padding:0 .5em;font-weight:600;font-size:.85em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
details.trial{border:1px solid #ccc;border-radius:6px;margin:.6em 0;padding:.3em .8em}
details.trial>summary{cursor:pointer;font-weight:600}
pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:30em;white-space:pre-wrap}
.turn{border-left:3px solid #9ab;padding-left:.8em;margin:.6em 0}
.tool-use{border-left-color:#c96} .tool-result{border-left-color:#6a6}
img.shot{max-width:100%;border:1px solid #ccc;margin:.3em 0}
.banner{background:#fbeec4;padding:.6em 1em;border-radius:6px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cut(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return text[:MAX_TEXT] + f"\n… [{len(text) - MAX_TEXT} more characters in the JSON report]"


def _pre(text: str, css: str = "") -> str:
    return f'<pre class="{css}">{_e(_cut(text))}</pre>' if text else ""


def _image(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return f'<p class="muted">missing image {_e(path.name)}</p>'
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img class="shot" alt="{_e(path.name)}" src="data:image/png;base64,{encoded}">'


def _summary(result: SuiteResult) -> str:
    counts = result.summary()
    cells = [
        f'<div class="count {status}" data-status="{status}"><b>{counts[status]}</b>{status}</div>'
        for status in ("passed", "failed", "timeout", "error")
    ]
    cells.insert(0, f'<div class="count" data-status="total"><b>{counts["total"]}</b>trials</div>')
    tokens = counts["input_tokens"] + counts["output_tokens"]
    cost = f"${counts['cost_usd']:.4f}" if counts["cost_usd"] is not None else "—"
    cells.append(f'<div class="count"><b>{result.seconds:.1f} s</b>wall time</div>')
    cells.append(f'<div class="count"><b>{tokens}</b>tokens</div>')
    cells.append(f'<div class="count" data-status="cost"><b>{cost}</b>cost</div>')
    return f'<section id="summary">{"".join(cells)}</section>'


def _table(result: SuiteResult) -> str:
    rows = []
    for index, trial in enumerate(result.trials):
        passed = sum(1 for g in trial.graders if g.passed)
        cost = f"${trial.cost_usd:.4f}" if trial.cost_usd is not None else ""
        tokens = trial.input_tokens + trial.output_tokens
        rows.append(
            f'<tr data-status="{trial.status}"><td><span class="badge {trial.status}">'
            f"{trial.status}</span></td>"
            f'<td><a href="#trial-{index}">{_e(trial.label)}</a></td>'
            f"<td>{trial.seconds:.2f}</td><td>{passed}/{len(trial.graders)}</td>"
            f"<td>{tokens or ''}</td><td>{cost}</td></tr>"
        )
    head = "<tr><th>status</th><th>task</th><th>s</th><th>graders</th><th>tokens</th><th>cost</th>"
    return f'<table id="trials">{head}</tr>{"".join(rows)}</table>'


def _graders(trial: TrialResult) -> str:
    if not trial.graders:
        return ""
    rows = "".join(
        f'<tr class="grader" data-passed="{str(g.passed).lower()}"><td>'
        f'<span class="badge {"passed" if g.passed else "failed"}">'
        f"{'pass' if g.passed else 'fail'}</span></td><td>{_e(g.name)}</td>"
        f"<td>{'' if g.score is None else f'{g.score:g}'}</td>"
        f'<td class="message">{_e(g.message)}</td></tr>'
        for g in trial.graders
    )
    head = "<tr><th></th><th>grader</th><th>score</th><th>message</th></tr>"
    return f"<h3>Graders</h3><table>{head}{rows}</table>"


def _steps(trial: TrialResult) -> str:
    steps = trial.solve.get("steps", {}) if trial.solve else {}
    parts = []
    for step_id, step in steps.items():
        if step.get("action") == "agent":
            continue  # its transcript follows
        command = step.get("details", {}).get("command")
        head = (
            f"{step_id} · {step.get('action', '')} · {step.get('status')} · {step.get('seconds')} s"
        )
        body = [_pre(f"$ {command}") if command else ""]
        for key in ("stdout", "stderr", "text", "error", "reason"):
            value = step.get(key)
            if isinstance(value, str) and value:
                body.append(f"<div class='muted'>{key}</div>{_pre(value)}")
        parts.append(f'<div class="turn step"><b>{_e(head)}</b>{"".join(body)}</div>')
    return "<h3>Solver</h3>" + "".join(parts) if parts else ""


def _blocks(blocks: Any, folder: Path, images: list[int]) -> str:
    out = []
    for block in blocks if isinstance(blocks, list) else [{"type": "text", "text": str(blocks)}]:
        kind = block.get("type")
        if kind == "text":
            out.append(_pre(block.get("text", "")))
        elif kind == "tool_use":
            shown = json.dumps(block.get("input"), ensure_ascii=False, indent=1)
            out.append(
                f'<div class="turn tool-use"><b>{_e(block.get("name"))}</b>{_pre(shown)}</div>'
            )
        elif kind == "tool_result":
            error = " (error)" if block.get("is_error") else ""
            inner = _blocks(block.get("content", ""), folder, images)
            out.append(f'<div class="turn tool-result"><b>result{error}</b>{inner}</div>')
        elif kind == "image" and "file" in block:
            images[0] += 1
            if images[0] <= MAX_IMAGES:
                out.append(_image(folder / str(block["file"])))
    return "".join(out)


def _transcript(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return f'<p class="muted">transcript {_e(path)} is missing</p>'
    images = [0]
    parts = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        kind = entry.get("type")
        if kind == "start":
            parts.append(f'<div class="turn"><b>task</b>{_pre(str(entry.get("task", "")))}</div>')
        elif kind == "assistant":
            body = _blocks(entry.get("content", []), path.parent, images)
            parts.append(
                f'<div class="turn assistant"><b>Claude, turn {entry.get("turn")}</b>{body}</div>'
            )
        elif kind == "tool_results":
            parts.append(_blocks(entry.get("content", []), path.parent, images))
        elif kind in ("error", "end"):
            shown = (
                entry.get("message")
                or f"{entry.get('stop_reason')} after {entry.get('turns')} turns"
            )
            parts.append(f'<div class="turn"><b>{kind}</b> {_e(shown)}</div>')
    return f'<div class="transcript">{"".join(parts)}</div>'


def _trial(index: int, trial: TrialResult, run_dir: Path) -> str:
    timings = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in trial.timings.items())
    usage = ""
    if trial.model:
        cost = f", ${trial.cost_usd:.4f}" if trial.cost_usd is not None else ""
        usage = (
            f"<p>{_e(trial.model)}: {trial.input_tokens} in, {trial.output_tokens} out{cost}</p>"
        )
    transcripts = "".join(
        "<h3>Transcript</h3>" + _transcript(run_dir / rel) for rel in trial.transcripts
    )
    shots = [rel for rel in trial.screenshots if Path(rel).name == "screenshot.png"]
    screenshots = "".join(_image(run_dir / rel) for rel in shots[:MAX_IMAGES])
    message = f'<p class="message">{_e(trial.message)}</p>' if trial.message else ""
    return (
        f'<details class="trial" id="trial-{index}" data-status="{trial.status}" '
        f'data-task="{_e(trial.task)}"><summary><span class="badge {trial.status}">'
        f"{trial.status}</span> {_e(trial.label)} — {trial.seconds:.2f} s</summary>"
        f"{message}<p class='muted'>session {_e(trial.session_id)}; {_e(timings)}</p>{usage}"
        f"{_graders(trial)}{_steps(trial)}{transcripts}"
        + (f"<h3>Screenshots</h3>{screenshots}" if screenshots else "")
        + "</details>"
    )


def html_page(result: SuiteResult, run_dir: Path) -> str:
    """The whole report as one HTML document."""
    banner = (
        '<p class="banner" id="interrupted">This run was interrupted: '
        f"{len(result.trials)} of {result.planned} trials finished. Resume it with "
        f"<code>sbx eval SUITE --resume {_e(result.run_dir)}</code>.</p>"
        if result.interrupted
        else ""
    )
    trials = "".join(_trial(i, t, run_dir) for i, t in enumerate(result.trials))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(result.name)} — sbx eval</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(result.name)}</h1><p class='muted'>started {_e(result.started)}; "
        f"run directory {_e(result.run_dir)}</p>{banner}{_summary(result)}{_table(result)}"
        f"<h2>Trials</h2>{trials}</body></html>\n"
    )
