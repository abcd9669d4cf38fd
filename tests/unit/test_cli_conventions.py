"""The command line's conventions: help everywhere, exit statuses, completion, secrets, silence."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from orchestrator import Config, FakeBackend
from orchestrator.cli import build_parser, main, version_text
from orchestrator.cli.agent import TOOL_FAMILIES
from orchestrator.cli.completion import completion_script
from orchestrator.cli.secret_args import SecretError, secret_from_args
from orchestrator.errors import ImageNotFound
from orchestrator.options import parse_options


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("sbx",)
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, dict[str, str]]]:
    """Every parser of the tree with its path and the help of its sub-commands."""
    helps: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))
    yield path, parser, helps


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, parser, sub_helps in _parsers(build_parser()):
        missing += [f"{' '.join(path)} {name}" for name, text in sub_helps.items() if not text]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{' '.join(path)} {action.option_strings or action.dest}")
    assert missing == []


def test_every_default_worth_showing_is_in_the_help() -> None:
    unshown = []
    for path, parser, _ in _parsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default in (None, False, [], "", argparse.SUPPRESS):
                continue
            flat = " ".join(text.split())
            if f"default: {default}" not in flat and f"default {default}" not in flat:
                unshown.append(f"{' '.join(path)} {action.option_strings[0]}={default!r}")
    assert unshown == []


def test_tools_lists_the_registrys_families_and_refuses_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from orchestrator.tools.registry import default_registry

    assert list(TOOL_FAMILIES) == default_registry(Config()).families()
    agent = build_parser()._subparsers._group_actions[0].choices["agent"]  # type: ignore[union-attr]
    assert all(family in " ".join(agent.format_help().split()) for family in TOOL_FAMILIES)
    assert build_parser().parse_args(["agent", "--tools", "bash, memory,bash", "t"]).tools == [
        "bash",
        "memory",
    ]
    with pytest.raises(SystemExit) as info:
        main(["agent", "--tools", "bash,shell", "t"])
    assert info.value.code == 2
    assert "shell is not a tool family; choose from bash, code_execution" in (
        capsys.readouterr().err
    )


def test_version_flag_prints_what_the_version_command_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    flag = capsys.readouterr().out
    assert main(["version"]) == 0
    assert capsys.readouterr().out == flag == version_text() + "\n"


def _bash_complete(script: str, words: list[str]) -> list[str]:
    """What bash offers for the last of ``words`` (the script loaded for real)."""
    line = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _sbx; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.split()


def test_bash_completion_offers_commands_options_and_choices() -> None:
    script = completion_script("bash", build_parser())
    assert {"run", "exec-code", "images", "completion"} <= set(_bash_complete(script, ["sbx", ""]))
    assert _bash_complete(script, ["sbx", "ima"]) == ["images"]
    assert _bash_complete(script, ["sbx", "images", ""]) == ["build", "ls", "rm"]
    assert "--memory" in _bash_complete(script, ["sbx", "run", "--mem"])
    assert _bash_complete(script, ["sbx", "--log-level", "d"]) == ["debug"]
    # a value taken by an option is skipped, not read as a command
    assert _bash_complete(script, ["sbx", "--config", "images", "images", "b"]) == ["build"]
    assert _bash_complete(script, ["sbx", "exec-code", "--language", ""]) == ["python", "bash"]
    # after `--` the words are the sandboxed command's: no sbx options offered
    assert _bash_complete(script, ["sbx", "run", "--", "--"]) == []


def test_zsh_and_fish_completion_name_every_command() -> None:
    zsh = completion_script("zsh", build_parser())
    assert "bashcompinit" in zsh and "complete -F _sbx sbx" in zsh
    fish = completion_script("fish", build_parser())
    assert "complete -c sbx -n __fish_use_subcommand -a exec-code" in fish
    assert "__fish_seen_subcommand_from images; and not __fish_seen_subcommand_from build ls" in (
        fish
    )
    assert "-l memory -r -F" in fish
    assert "-l language -x -a 'python bash'" in fish


def test_completion_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    assert "complete -F _sbx sbx" in capsys.readouterr().out


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch, fake_config: Config) -> Iterator[list[FakeBackend]]:
    """``sbx run``/``exec-code`` over the fake backend (the real guest as a local process)."""
    from orchestrator import cli, runtime

    made: list[FakeBackend] = []

    def backend(config: Config) -> FakeBackend:
        made.append(FakeBackend())
        return made[-1]

    monkeypatch.setattr(cli, "_load", lambda args: fake_config)
    monkeypatch.setattr(runtime, "make_backend", backend)
    yield made
    for each in made:
        assert not [box for box in each.sandboxes.values() if not box.removed]
        trio.run(each.aclose)


def test_run_exits_with_the_commands_status_and_125_when_sbx_fails(
    fake_run: list[FakeBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--", "sh", "-c", "exit 3"]) == 3
    assert main(["run", "--", "sh", "-c", "exit 125"]) == 125  # the command's own, passed on
    assert main(["run", "--", "no-such-program-here"]) == 127
    capsys.readouterr()
    assert main(["run", "--image", "sbx-nope", "--", "true"]) == 125
    assert "image sbx-nope not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["run", "--bogus", "--", "true"], 125),
        (["exec-code", "--bogus", "x.py"], 125),
        (["exec", "--bogus", "s", "--", "true"], 125),
        (["images", "ls", "--bogus"], 2),
        (["--bogus", "version"], 2),
    ],
)
def test_usage_errors_exit_125_for_commands_that_run_one_and_2_otherwise(
    argv: list[str], status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == status
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_exec_code_exits_125_when_sbx_fails(
    fake_run: list[FakeBackend], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "job.py"
    script.write_text("print(1)")
    assert main(["exec-code", "--image", "sbx-nope", str(script)]) == 125
    assert "image sbx-nope not found" in capsys.readouterr().err


def test_an_unknown_image_suggests_the_closest_names_and_how_to_list_and_build() -> None:
    known = ["base", "code-runner", "desktop"]
    typo = str(ImageNotFound("code-runer", known=known))
    assert "did you mean code-runner?" in typo
    assert "`sbx images ls`" in typo and "`sbx images build NAME`" in typo
    assert "did you mean desktop?" in str(ImageNotFound("sbx-destkop:latest", known=known))
    unbuilt = str(ImageNotFound("sbx-test-desktop", known=known))  # ours, under a prefix
    assert "sbx images build desktop" in unbuilt
    assert "did you mean" not in str(ImageNotFound("postgres:16", known=known))


def test_memory_too_small_is_refused_in_units_a_person_reads(
    capsys: pytest.CaptureFixture[str], fake_config: Config
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--memory", "1k", "--", "true"])
    assert info.value.code == 125
    err = capsys.readouterr().err
    assert "1k (1 KiB) is too little: a sandbox needs at least 16m" in err
    assert "16777216" not in err
    with pytest.raises(Exception, match="1 KiB is too little: a sandbox needs at least 16m"):
        parse_options({"memory": "1k"}, fake_config)


def test_a_token_file_gives_the_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "token"
    path.write_text("sbx_s3cret\n")
    args = build_parser().parse_args(["session", "ls", "--token-file", str(path)])
    assert secret_from_args(args, name="token", env="SBX_TOKEN") == "sbx_s3cret"
    assert capsys.readouterr().err == ""  # no warning for a file
    agent = build_parser().parse_args(["agent", "--api-key-file", str(path), "task"])
    assert secret_from_args(agent, name="api-key", env="ANTHROPIC_API_KEY") == "sbx_s3cret"
    path.write_text("\n")
    with pytest.raises(SecretError, match="the file is empty"):
        secret_from_args(args, name="token", env="SBX_TOKEN")


def test_a_missing_token_file_is_a_usage_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent"
    url = ["--url", "http://127.0.0.1:9"]
    assert main(["session", "ls", *url, "--token-file", str(missing)]) == 2
    assert f"--token-file {missing}: cannot read it" in capsys.readouterr().err
    assert main(["run", *url, "--token-file", str(missing), "--", "true"]) == 125
    assert f"--token-file {missing}: cannot read it" in capsys.readouterr().err


def test_a_token_on_the_command_line_still_works_with_a_deprecation_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = build_parser().parse_args(["session", "ls", "--token", "sbx_typed"])
    assert secret_from_args(args, name="token", env="SBX_TOKEN") == "sbx_typed"
    err = capsys.readouterr().err
    assert "--token is deprecated" in err and "--token-file" in err and "$SBX_TOKEN" in err
    agent = build_parser().parse_args(["agent", "--api-key", "k", "task"])
    assert secret_from_args(agent, name="api-key", env="ANTHROPIC_API_KEY") == "k"
    assert "--api-key is deprecated" in capsys.readouterr().err


_ENTRY_WITH_AN_ATEXIT_HOOK = """
import atexit, sys
atexit.register(lambda: print("teardown ran", file=sys.stderr))
sys.argv = ["sbx", *sys.argv[1:]]
from orchestrator.cli import entry
entry()
"""


@pytest.mark.parametrize(
    ("argv", "status", "torn_down"),
    [
        (["run", "--url", "http://127.0.0.1:1", "--", "true"], 125, False),
        (["version"], 0, True),
    ],
)
def test_one_shot_commands_skip_the_interpreters_teardown_and_keep_their_output_and_status(
    argv: list[str], status: int, torn_down: bool
) -> None:
    import os
    import sys

    env = {**os.environ, "SBX_TOKEN": "x"}
    done = subprocess.run(
        [sys.executable, "-c", _ENTRY_WITH_AN_ATEXIT_HOOK, *argv],
        capture_output=True,
        check=False,
        env=env,
        timeout=60,
    )
    assert done.returncode == status, done.stderr
    assert (b"teardown ran" in done.stderr) is torn_down
    if status:  # what sbx said before ending was flushed, not lost with os._exit
        assert b"sbx: cannot reach the sbx API at http://127.0.0.1:1" in done.stderr
    else:
        assert done.stdout.startswith(b"sbx ")


def test_failures_of_work_done_side_by_side_are_worded_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.bench import density
    from orchestrator.errors import SandboxStartError

    async def two_sandboxes_fail(*args: object) -> None:
        raise ExceptionGroup(
            "sessions",
            [
                SandboxStartError("sandbox a was not ready within 60 s"),
                ExceptionGroup("inner", [SandboxStartError("sandbox b was not ready")]),
            ],
        )

    monkeypatch.setattr(density, "collect_density", two_sandboxes_fail)
    assert main(["bench", "--density", "--sessions", "2"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "sbx: sandbox a was not ready within 60 s (and 1 more)"

    async def a_bug(*args: object) -> None:
        raise ExceptionGroup("sessions", [SandboxStartError("x"), KeyError("bug")])

    monkeypatch.setattr(density, "collect_density", a_bug)
    with pytest.raises(ExceptionGroup):  # a bug of ours is never worded away
        main(["bench", "--density", "--sessions", "2"])
