"""The HTML report, opened in a real headless Chromium: self-contained, escaped, complete."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.evals import GraderResult, SuiteResult, TrialResult, write_reports

CHROMIUM = "/usr/bin/chromium"


def _png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _result(run_dir: Path) -> SuiteResult:
    agent_dir = run_dir / "trials" / "agentic" / "1" / "agent" / "agent" / "run1"
    agent_dir.mkdir(parents=True)
    (agent_dir / "0001-toolu_1.png").write_bytes(_png("red"))
    entries = [
        {"type": "start", "task": "click the <button>"},
        {
            "type": "assistant",
            "turn": 1,
            "content": [
                {"type": "text", "text": "Taking a screenshot."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "computer",
                    "input": {"action": "screenshot"},
                },
            ],
        },
        {
            "type": "tool_results",
            "turn": 1,
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "image", "file": "0001-toolu_1.png"}],
                }
            ],
        },
        {"type": "end", "stop_reason": "end_turn", "turns": 1},
    ]
    (agent_dir / "transcript.jsonl").write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    shot = run_dir / "trials" / "agentic" / "1" / "screenshot.png"
    shot.write_bytes(_png("blue"))
    passed = TrialResult(
        task="agentic",
        epoch=1,
        status="passed",
        seconds=2.5,
        session_id="abc123",
        graders=[GraderResult("command", "command true", True, "`true` exited 0", 1.0)],
        model="claude-sonnet-4-6",
        input_tokens=1200,
        output_tokens=300,
        cost_usd=0.0081,
        transcripts=["trials/agentic/1/agent/agent/run1/transcript.jsonl"],
        screenshots=["trials/agentic/1/screenshot.png"],
        timings={"start": 0.3, "solve": 2.0},
    )
    failed = TrialResult(
        task="scripted",
        epoch=1,
        status="failed",
        message="file_matches /out: <script>alert(1)</script> did not match",
        seconds=0.7,
        graders=[
            GraderResult("exit_code", "exit_code", True, "exit code 0, expected 0", 1.0),
            GraderResult(
                "file_matches", "file_matches /out", False, "<script>alert(1)</script>", 0.0
            ),
        ],
        solve={
            "ok": True,
            "steps": {
                "solve-1": {
                    "status": "succeeded",
                    "seconds": 0.1,
                    "action": "exec",
                    "stdout": "hello & <goodbye>",
                    "details": {"command": "echo 'hello & <goodbye>'"},
                }
            },
        },
    )
    return SuiteResult(
        name="report <check>",
        trials=[passed, failed],
        seconds=3.2,
        started="2025-01-01T00:00:00+00:00",
        run_dir=str(run_dir),
    )


def test_the_html_report_renders_in_chromium(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package")
    from playwright.sync_api import sync_playwright

    run_dir = tmp_path / "run"
    html_path = tmp_path / "report.html"
    write_reports(_result(run_dir), html_path=html_path)
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto(html_path.as_uri())
            assert page.title() == "report <check> — sbx eval"
            assert page.locator("h1").inner_text() == "report <check>"

            def count(status: str) -> str:
                return page.locator(f'#summary [data-status="{status}"] b').inner_text()

            assert (count("total"), count("passed"), count("failed"), count("timeout")) == (
                "2",
                "1",
                "1",
                "0",
            )
            assert count("cost") == "$0.0081"
            assert page.locator("#trials tr[data-status]").count() == 2
            assert page.evaluate("document.scripts.length") == 0  # the message was escaped

            failed = page.locator('details.trial[data-status="failed"]')
            message = failed.locator(".grader[data-passed=false] .message")
            assert not message.is_visible()
            failed.locator("summary").click()
            assert message.is_visible()
            assert message.inner_text() == "<script>alert(1)</script>"
            assert "hello & <goodbye>" in failed.inner_text()

            passed = page.locator('details.trial[data-status="passed"]')
            passed.locator("summary").click()
            text = passed.inner_text()
            assert "click the <button>" in text
            assert "Claude, turn 1" in text
            assert "claude-sonnet-4-6: 1200 in, 300 out, $0.0081" in text
            images = passed.locator("img")
            assert images.count() == 2  # the tool result's screenshot and the final one
            assert page.evaluate(
                "[...document.images].every(i => i.complete && i.naturalWidth === 64)"
            )
        finally:
            browser.close()
    assert requests == [html_path.as_uri()] or all(
        url == html_path.as_uri() or url.startswith("data:") for url in requests
    )
