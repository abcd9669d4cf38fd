"""The command line's parsing and its error reporting (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import build_parser, main


def test_run_takes_everything_after_the_double_dash_as_the_command() -> None:
    args = build_parser().parse_args(
        ["run", "--image", "desktop", "-e", "A=1", "--memory", "512m", "--", "ls", "-la", "--x"]
    )
    assert args.image == "desktop"
    assert args.env == [("A", "1")]
    assert args.memory == 512 << 20
    assert args.cmd == ["--", "ls", "-la", "--x"]


def test_run_without_a_command_is_a_usage_error_of_sbx(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 125  # sbx failed, as `docker run` exits 125 for a usage error
    assert "run needs a command" in capsys.readouterr().err


def test_bad_env_pair_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "-e", "NOEQUALS", "--", "true"])
    assert "NAME=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "status"), [(["run", "--", "true"], 125), (["gc"], 2)])
def test_invalid_config_names_the_key_and_exits_125_for_run_2_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], status: int
) -> None:
    path = tmp_path / "sbx.toml"
    path.write_text("[sandbox]\ncpus = -1\n")
    assert main(["--config", str(path), *command]) == status
    err = capsys.readouterr().err
    assert "sandbox.cpus = -1" in err
    assert "Traceback" not in err


def test_version_prints_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert "protocol 1" in capsys.readouterr().out


def test_unreachable_engine_names_docker_host_and_how_to_start_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert main(["run", "--", "true"]) == 125
    assert main(["gc"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the Docker Engine" in err
    assert "DOCKER_HOST" in err
    assert "dockerd" in err


@pytest.mark.parametrize(
    ("argv", "sbx_url", "remote"),
    [
        (["run", "--", "true"], None, False),
        (["run", "--", "true"], "http://127.0.0.1:8765", True),
        (["--log-level", "debug", "run", "--url", "http://h:1", "--", "true"], None, True),
        (["run", "--url=http://h:1", "true"], None, True),
        (["run", "--local", "--", "true"], "http://127.0.0.1:8765", False),
        (["run", "--", "tool", "--url", "x"], None, False),  # the command's own flag
        (["run", "-e", "A=1", "tool", "--url", "x"], None, False),
        (["run", "--image", "--url", "--url", "x", "--", "t"], None, True),
        (["run", "--help"], "http://127.0.0.1:8765", False),
        (["exec", "abc", "--", "true"], "http://127.0.0.1:8765", False),
        (["--config", "run", "images", "ls"], "http://127.0.0.1:8765", False),
    ],
)
def test_run_goes_to_a_server_only_when_pointed_at_one(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], sbx_url: str | None, remote: bool
) -> None:
    from orchestrator.cli.run_remote import wants_remote

    if sbx_url is None:
        monkeypatch.delenv("SBX_URL", raising=False)
    else:
        monkeypatch.setenv("SBX_URL", sbx_url)
    assert wants_remote(argv) is remote


def test_a_bad_server_url_is_a_failure_of_sbx(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SBX_URL", "ftp://example")
    assert main(["run", "--", "true"]) == 125
    assert "must be an http(s) URL" in capsys.readouterr().err


def test_agent_context_flags_go_over_the_agent_section() -> None:
    from orchestrator.cli.agent import context_settings
    from orchestrator.config import Config

    args = build_parser().parse_args(
        [
            "agent",
            "--keep-images",
            "1",
            "--context-budget",
            "5000",
            "--no-prompt-caching",
            "--thinking-budget",
            "2048",
            "do it",
        ]
    )
    context = context_settings(Config(), args)
    assert (context.keep_images, context.image_trim_step) == (1, 1)
    assert context.context_budget == 5000
    assert context.prompt_caching is False
    assert args.thinking_budget == 2048
    unchanged = context_settings(Config(), build_parser().parse_args(["agent", "x"]))
    assert unchanged == Config().agent


def test_agent_flags_out_of_bounds_are_usage_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert main(["agent", "--context-budget", "10", "x"]) == 2
    assert "context_budget" in capsys.readouterr().err
    assert main(["agent"]) == 2
    assert "give a TASK (or --resume RUN_DIR)" in capsys.readouterr().err
    assert main(["agent", "--thinking-budget", "8000", "x"]) == 1
    assert "less than --max-tokens" in capsys.readouterr().err


def test_the_end_of_a_run_says_its_tokens_and_cost() -> None:
    from orchestrator.agent import AgentResult
    from orchestrator.cli.agent import summary_line

    result = AgentResult(
        Path("runs/x"), "end_turn", 12, 300, 900, "ok", "s", 50_000, 4_000, 0.0321, 1
    )
    line = summary_line(result)
    assert "end_turn after 12 turn(s)" in line
    assert "300 input (+50000 cache read, 4000 cache write) + 900 output tokens" in line
    assert "about $0.0321; 1 compaction(s)" in line


def test_a_user_image_build_needs_a_tag_and_one_context(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["images", "build", "--file", str(tmp_path / "Dockerfile")]) == 2
    assert "--file needs --tag NAME" in capsys.readouterr().err
    assert main(["images", "build", "--tag", "mine:1", "a", "b"]) == 2
    assert "at most one build CONTEXT" in capsys.readouterr().err
    assert main(["images", "build", "--tag", "mine:1", str(tmp_path / "none")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_sbx_cp_r_refuses_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cp", "-r", "-", "abc123:/workspace/x"]) == 2
    assert "not stdin or stdout" in capsys.readouterr().err
