"""``sbx eval`` against the real engine: statuses, reports, Ctrl-C and --resume, no leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import IMAGE

SBX = [sys.executable, "-m", "orchestrator.cli"]


def _suite(tmp_path: Path, body: str, label: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(body).replace("LABEL", label).replace("IMAGE", IMAGE))
    return path


def _leftovers(client: docker.DockerClient, label: str, within: float = 0.0) -> list[str]:
    """Containers with the test's label; ``within`` seconds for the engine to finish removing
    them (an auto-removed container goes shortly after its supervisor lets go)."""
    deadline = time.monotonic() + within
    while True:
        found = client.containers.list(all=True, filters={"label": f"sbx-test={label}"})
        if not found or time.monotonic() >= deadline:
            return [c.name for c in found]
        time.sleep(0.2)


MIXED = """\
name: mixed
defaults: {image: IMAGE, timeout: 60, labels: {sbx-test: LABEL}}
tasks:
  - id: add
    files: {/workspace/in.txt: "2 3\\n"}
    setup: ["mkdir -p /workspace/out"]
    solve:
      - exec: "python3 -c 'a,b=open(\\"/workspace/in.txt\\").read().split(); print(int(a)+int(b))' > /workspace/out/r.txt"
    graders:
      - {type: exit_code, equals: 0}
      - {type: file_matches, path: /workspace/out/r.txt, pattern: "^5$"}
      - {type: command, run: "test -s /workspace/out/r.txt"}
      - name: inside the sandbox
        type: python
        code: |
          import os
          inside = os.getuid() == 1000 and os.path.exists("/workspace/in.txt")
          score = inside and float(open("/workspace/out/r.txt").read()) == 5
          message = f"uid {os.getuid()}"
  - id: wrong
    solve: [{exec: "echo 4 > /workspace/r.txt"}]
    graders:
      - {type: file_matches, path: /workspace/r.txt, pattern: "^5$"}
  - id: slow
    timeout: 2
    solve: [{exec: "sleep 60"}]
    graders: [{type: exit_code}]
"""  # noqa: E501


def test_a_suite_that_passes_fails_and_times_out(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    from playwright.sync_api import sync_playwright

    label = uuid.uuid4().hex
    suite = _suite(tmp_path, MIXED, label)
    out = tmp_path / "run"
    done = subprocess.run(
        [
            *SBX,
            "eval",
            str(suite),
            "--out",
            str(out),
            "--junit",
            str(tmp_path / "j.xml"),
            "--json",
            str(tmp_path / "r.json"),
            "--html",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "mixed: 1 passed, 1 failed, 1 timed out, 0 errors" in done.stdout

    cases = {c.get("name"): c for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    assert set(cases) == {"add", "wrong", "slow"}
    assert cases["add"].find("failure") is None
    failure = cases["wrong"].find("failure")
    assert failure is not None and failure.get("type") == "file_matches"
    assert "does not match '^5$'" in (failure.get("message") or "")
    timeout = cases["slow"].find("failure")
    assert timeout is not None and timeout.get("type") == "timeout"

    report = json.loads((tmp_path / "r.json").read_text())
    tasks = {t["task"]: t for t in report["tasks"]}
    assert tasks["add"]["graders"][3]["message"] == "uid 1000"
    assert tasks["slow"]["seconds"] < 30
    assert (out / "results.jsonl").exists() and (out / "report.html").exists()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            page.goto((tmp_path / "r.html").as_uri())
            assert page.locator('#summary [data-status="passed"] b').inner_text() == "1"
            assert page.locator('#summary [data-status="timeout"] b').inner_text() == "1"
            wrong = page.locator('details.trial[data-task="wrong"]')
            wrong.locator("summary").click()
            assert "does not match" in wrong.locator(".grader .message").inner_text()
        finally:
            browser.close()
    assert _leftovers(docker_client, label, within=10) == []


SLOW = """\
name: interruptible
defaults: {image: IMAGE, timeout: 120, labels: {sbx-test: LABEL}}
tasks:
"""


def test_ctrl_c_removes_every_sandbox_and_resume_runs_the_rest(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    label = uuid.uuid4().hex
    tasks = "".join(
        f"  - {{id: t{i}, solve: [{{exec: 'sleep {1 if i < 2 else 30}; echo {i}'}}], "
        f"graders: [{{type: output_matches, pattern: '^{i}$'}}]}}\n"
        for i in range(6)
    )
    suite = _suite(tmp_path, SLOW + tasks, label)
    out = tmp_path / "run"
    process = subprocess.Popen(
        [*SBX, "eval", str(suite), "--out", str(out), "--concurrency", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        finished = results.read_text().splitlines() if results.exists() else []
        if len(finished) >= 2 and len(_leftovers(docker_client, label)) >= 1:
            break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the first trials never finished")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"--resume {out}" in stderr
    assert _leftovers(docker_client, label, within=10) == []
    kept = [json.loads(line) for line in results.read_text().splitlines()]
    assert {t["task"] for t in kept} >= {"t0", "t1"}
    assert all(t["status"] == "passed" for t in kept)
    partial = json.loads((out / "report.json").read_text())
    assert partial["summary"]["interrupted"] is True

    fast = suite.read_text().replace("sleep 30", "sleep 0")
    suite.write_text(fast)  # the unfinished tasks changed: they run; the finished did not
    resumed = subprocess.run(
        [*SBX, "eval", str(suite), "--resume", str(out), "--concurrency", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"6 trials ({len(kept)} finished before, skipped)" in resumed.stderr
    assert "(6 of 6 trials)" in resumed.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["passed"] == 6
    assert [t["task"] for t in report["tasks"]] == [f"t{i}" for i in range(6)]
    assert _leftovers(docker_client, label, within=10) == []


def test_an_agent_suite_against_the_local_messages_api(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    root = Path(__file__).resolve().parents[2]
    examples = root / "examples" / "evals"
    server = subprocess.Popen(
        [*SBX, "fake-api", "--script", str(examples / "claude-script.yaml"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        env = {**os.environ, "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "dry-run"}
        done = subprocess.run(
            [
                *SBX,
                "eval",
                str(examples / "claude.yaml"),
                "--concurrency",
                "1",
                "--out",
                str(tmp_path / "run"),
                "--json",
                str(tmp_path / "r.json"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=env,
        )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["passed"] == 2
    first = report["tasks"][0]
    assert first["model"] == "claude-sonnet-4-6"
    assert first["input_tokens"] == 300 and first["output_tokens"] == 60
    assert first["cost_usd"] == pytest.approx((300 * 3 + 60 * 15) / 1e6)
    assert first["transcripts"] and (tmp_path / "run" / first["transcripts"][0]).exists()


def test_a_desktop_tasks_screenshot_is_in_the_html_report(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    from playwright.sync_api import sync_playwright

    label = uuid.uuid4().hex
    suite = _suite(
        tmp_path,
        """\
        name: desktop
        defaults: {image: desktop, timeout: 120, labels: {sbx-test: LABEL}}
        tasks:
          - id: screen
            screenshot: true
            solve: [{exec: "xdpyinfo | grep dimensions"}]
            graders: [{type: output_matches, pattern: "1024x768 pixels"}]
        """,
        label,
    )
    done = subprocess.run(
        [
            *SBX,
            "eval",
            str(suite),
            "--out",
            str(tmp_path / "run"),
            "--html",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["tasks"][0]["screenshots"] == ["trials/screen/1/screenshot.png"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            page.goto((tmp_path / "r.html").as_uri())
            page.locator("details.trial summary").click()
            shot = page.locator("details.trial img.shot")
            assert shot.count() == 1
            assert shot.evaluate("img => img.complete && img.naturalWidth") == 1024
        finally:
            browser.close()
    assert _leftovers(docker_client, label, within=10) == []
