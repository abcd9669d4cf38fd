"""The configuration's layers, profiles, error messages, and ``sbx config show|validate|schema``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.cli import main_local
from orchestrator.config import explain_config, load_config
from orchestrator.config.loading import validate_file
from orchestrator.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("SBX_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


LAYERED = """\
owner = "file"
[sandbox]
memory = "512m"
cpus = 2
pids_limit = 100

[profile.ci]
owner = "profile"
[profile.ci.sandbox]
cpus = 0.5
"""


@pytest.mark.parametrize(
    ("profile", "env", "given", "owner", "source"),
    [
        (None, None, None, "file", "sbx.toml line 1"),
        ("ci", None, None, "profile", "sbx.toml line 8 [profile ci]"),
        ("ci", "env", None, "env", "env SBX_OWNER"),
        ("ci", "env", "given", "given", "command line"),
        (None, None, "given", "given", "command line"),
    ],
)
def test_each_layer_wins_over_the_ones_below(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    profile: str | None,
    env: str | None,
    given: str | None,
    owner: str,
    source: str,
) -> None:
    (tmp_path / "sbx.toml").write_text(LAYERED)
    if env:
        monkeypatch.setenv("SBX_OWNER", env)
    overrides = {"owner": given} if given else {}
    loaded = explain_config(profile=profile, **overrides)
    assert loaded.config.owner == owner
    assert loaded.origin(("owner",)) == source


def test_defaults_are_the_bottom_layer() -> None:
    loaded = explain_config()
    assert loaded.config.owner == "local"
    assert loaded.origin(("owner",)) == "default"


def test_layers_merge_key_by_key_within_a_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sbx.toml").write_text(LAYERED)
    monkeypatch.setenv("SBX_PROFILE", "ci")
    monkeypatch.setenv("SBX_SANDBOX__PIDS_LIMIT", "64")
    loaded = explain_config(sandbox={"start_timeout": 5})
    sandbox = loaded.config.sandbox
    assert sandbox.memory == 512 << 20  # the file
    assert sandbox.cpus == 0.5  # the profile, over the file's 2
    assert sandbox.pids_limit == 64  # the environment, over the file's 100
    assert sandbox.start_timeout == 5  # given in code
    assert sandbox.user == "1000:1000"  # the default
    origins = loaded.origins()
    assert origins[("sandbox", "memory")] == "sbx.toml line 3"
    assert origins[("sandbox", "cpus")] == "sbx.toml line 10 [profile ci]"
    assert origins[("sandbox", "pids_limit")] == "env SBX_SANDBOX__PIDS_LIMIT"
    assert origins[("sandbox", "start_timeout")] == "command line"
    assert origins[("sandbox", "user")] == "default"


def test_yaml_file_is_a_layer_too_with_profiles_and_lines(tmp_path: Path) -> None:
    (tmp_path / "sbx.yaml").write_text(
        "sandbox:\n  memory: 256m\n  cpus: 2\nprofile:\n  ci:\n    sandbox:\n      cpus: 0.25\n"
    )
    loaded = explain_config(profile="ci")
    assert loaded.config.sandbox.memory == 256 << 20
    assert loaded.config.sandbox.cpus == 0.25
    assert loaded.origin(("sandbox", "memory")) == "sbx.yaml line 2"
    assert loaded.origin(("sandbox", "cpus")) == "sbx.yaml line 7 [profile ci]"
    (tmp_path / "sbx.yaml").write_text("sandbox:\n  cpus: 2\n  memory: lots\n")
    with pytest.raises(ConfigError, match=r"sandbox\.memory = 'lots' \(sbx\.yaml line 3\)"):
        load_config()


def test_an_unknown_profile_lists_the_ones_there(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"profile 'ci'.*needs a config file.*none was found"):
        load_config(profile="ci")
    (tmp_path / "sbx.toml").write_text(LAYERED)
    with pytest.raises(ConfigError, match=r"profile 'prod'.*its profiles are ci"):
        load_config(profile="prod")


def test_a_bad_value_names_the_file_line_key_value_and_rule(tmp_path: Path) -> None:
    (tmp_path / "sbx.toml").write_text('owner = "x"\n\n[session]\nttl = -5\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert "session.ttl = -5 (sbx.toml line 4): Input should be greater than 0" in message


def test_a_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBX_SANDBOX__CPUS", "lots")
    with pytest.raises(ConfigError, match=r"sandbox\.cpus = 'lots' \(env SBX_SANDBOX__CPUS\)"):
        load_config()


def test_a_table_in_the_environment_that_does_not_parse_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SBX_SANDBOX__ENV", "{ A = ")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "sandbox.env = '{ A = ' (env SBX_SANDBOX__ENV): Input should be a valid dict" in str(
        info.value
    )


def test_an_unknown_key_suggests_the_closest_one(tmp_path: Path) -> None:
    (tmp_path / "sbx.toml").write_text("[sandbox]\ncpus = 1\nmemroy = '1g'\n")
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert "sandbox.memroy: unknown key (sbx.toml line 3); did you mean memory?" in message


def test_a_broken_file_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "sbx.toml").write_text('owner = "x"\n[sandbox\n')
    with pytest.raises(ConfigError, match=r"sbx\.toml is not valid TOML.*line 2"):
        load_config()


def test_unrelated_sbx_variables_are_ignored_unless_shaped_like_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for other in ("SBX_DEPLOY_REGION", "SBX_VERSION", "SBX_API_KEY", "SBX_IMAGE"):
        monkeypatch.setenv(other, "x")  # a deployment's own variables
    monkeypatch.setenv("SBX_PROFILE", "")
    assert load_config().owner == "local"
    monkeypatch.setenv("SBX_SANDBOX_MEMORY", "1g")  # run together: meant as a key
    with pytest.raises(ConfigError, match=r"SBX_SANDBOX_MEMORY: .*did you mean SBX_SANDBOX__ME"):
        load_config()
    monkeypatch.delenv("SBX_SANDBOX_MEMORY")
    monkeypatch.setenv("SBX_SANDBOX__MEMROY", "1g")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "SBX_SANDBOX__MEMROY: not a configuration key; did you mean SBX_SANDBOX__MEMORY?" in (
        str(info.value)
    )
    monkeypatch.delenv("SBX_SANDBOX__MEMROY")
    monkeypatch.setenv("SBX_DEPLOY__REGION", "eu-west")  # shaped like a key: named
    with pytest.raises(ConfigError, match=r"SBX_DEPLOY__REGION: .*the sections are"):
        load_config()


def test_show_prints_values_and_sources_with_secrets_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sbx.toml").write_text(LAYERED)
    monkeypatch.setenv("SBX_API__METRICS_TOKEN", "hunter2-secret")
    monkeypatch.setenv("SBX_SANDBOX__ENV", '{ API_KEY = "k-secret", LANG = "C" }')
    assert main_local(["--profile", "ci", "--log-level", "debug", "config", "show"]) == 0
    text = capsys.readouterr().out
    assert "hunter2-secret" not in text and "k-secret" not in text
    assert '"**********"   # env SBX_API__METRICS_TOKEN' in text
    assert "owner" in text and '"profile"   # sbx.toml line 8 [profile ci]' in text
    assert '"debug"   # command line; reloads while serving' in text

    assert main_local(["--profile", "ci", "config", "show", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["profile"] == "ci"
    values = document["values"]
    assert values["sandbox.cpus"] == {
        "value": 0.5,
        "source": "sbx.toml line 10 [profile ci]",
        "reload": "restart",
    }
    assert values["api.metrics_token"]["value"] == "**********"
    assert values["sandbox.env"]["value"] == {"API_KEY": "**********", "LANG": "**********"}
    assert values["limits.max_memory"]["reload"] == "live"


def test_validate_checks_the_file_and_each_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(LAYERED)
    monkeypatch.setenv("SBX_SANDBOX__CPUS", "lots")  # the file is checked on its own
    assert validate_file(good) == ["ci"]
    monkeypatch.delenv("SBX_SANDBOX__CPUS")
    assert main_local(["config", "validate", str(good)]) == 0
    assert "good.toml: valid (profiles: ci)" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(LAYERED + "[profile.big.sandbox]\ncpus = 1000\n")
    assert main_local(["config", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "with profile big" in err
    assert "sandbox.cpus = 1000 (" in err and "bad.toml line 12 [profile big]" in err


def test_schema_is_json_schema_with_profiles_and_reload_marks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main_local(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert "sandbox" in schema["properties"] and "profile" in schema["properties"]
    limits = schema["$defs"]["LimitsConfig"]["properties"]
    assert limits["max_memory"]["x-sbx-reload"] == "live"
    sandbox = schema["$defs"]["SandboxConfig"]["properties"]
    assert sandbox["memory"]["x-sbx-reload"] == "restart"
    assert any(alt.get("type") == "string" for alt in sandbox["memory"]["anyOf"])  # "512m"


def test_nothing_configured_loads_the_defaults_without_pydantic_settings(tmp_path: Path) -> None:
    """pydantic-settings brings asyncio and argparse; `sbx run` with nothing set skips them."""
    import subprocess
    import sys

    code = (
        "import sys; from orchestrator.config import load_config; c = load_config(); "
        "print(c.owner, 'pydantic_settings' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SBX_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    argv = [sys.executable, "-c", code]
    run = subprocess.run(argv, check=False, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.stdout.split() == ["local", "False"], run.stderr
    (tmp_path / "sbx.toml").write_text('owner = "file"\n')
    run = subprocess.run(argv, check=False, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.stdout.split() == ["file", "True"], run.stderr
