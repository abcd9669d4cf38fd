"""Configuration layering and its error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import Config, load_config, parse_bytes
from orchestrator.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("SBX_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_hardened() -> None:
    config = load_config()
    assert config.sandbox.network is False
    assert config.sandbox.user == "1000:1000"
    assert config.sandbox.memory == 1 << 30


def test_toml_file_then_environment_override_key_by_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sbx.toml"
    path.write_text('[sandbox]\nmemory = "512m"\ncpus = 2\n[session]\nttl = 60\n')
    monkeypatch.setenv("SBX_SANDBOX__CPUS", "0.5")
    config = load_config(path)
    assert config.sandbox.memory == 512 << 20  # from the file
    assert config.sandbox.cpus == 0.5  # the environment wins
    assert config.session.ttl == 60


def test_sbx_config_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "other.toml"
    path.write_text('owner = "ci"\n')
    monkeypatch.setenv("SBX_CONFIG", str(path))
    assert load_config().owner == "ci"


def test_sbx_toml_in_the_current_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / "sbx.toml").write_text("[session]\nidle_timeout = 5\n")
    assert load_config().session.idle_timeout == 5


def test_invalid_value_names_key_value_and_rule(tmp_path: Path) -> None:
    path = tmp_path / "sbx.toml"
    path.write_text('[sandbox]\nmemory = "lots"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "sandbox.memory" in message
    assert "'lots'" in message
    assert "512m" in message  # says what is allowed


def test_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "sbx.toml"
    path.write_text("[sandbox]\nmemroy = 1\n")
    with pytest.raises(ConfigError, match=r"sandbox\.memroy: unknown key"):
        load_config(path)


def test_unknown_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBX_SESION__TTL", "5")
    with pytest.raises(ConfigError, match=r"SBX_SESION__TTL.*did you mean SBX_SESSION__TTL"):
        load_config()


def test_environment_accepts_inline_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBX_SANDBOX__ENV", '{ A = "1" }')
    assert load_config().sandbox.env == {"A": "1"}


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sbx.toml"
    path.write_text("[sandbox\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_missing_config_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_overrides_in_code_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBX_OWNER", "env")
    assert load_config(owner="code").owner == "code"


@pytest.mark.parametrize(
    ("text", "value"),
    [("512m", 512 << 20), ("1g", 1 << 30), ("64KiB", 64 << 10), (1234, 1234), ("1.5g", 3 << 29)],
)
def test_sizes(text: str | int, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("bad", ["", "ten", "1x", -1, True])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_bytes(bad)


def test_image_short_names_resolve() -> None:
    config = Config()
    assert config.image_name("code-runner") == "sbx-code-runner"
    assert config.image_name("sbx-desktop") == "sbx-desktop"
    assert config.image_name("registry.local/img:1") == "registry.local/img:1"


def test_the_example_config_documents_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "sbx.example.toml"
    assert load_config(example).model_dump() == Config().model_dump()


def test_the_deployments_own_variables_are_not_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.config import NOT_CONFIG_VARIABLES, load_config

    for name in ("SBX_DATA", "SBX_PUBLISH", "SBX_POOL_SIZE", "SBX_TOKEN_OWNER", "SBX_URL"):
        assert name in NOT_CONFIG_VARIABLES
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("SBX_POOL__SIZE", "3")
    assert load_config().pool.size == 3  # and nothing above was taken for a key
    monkeypatch.setenv("SBX_POOLSIZE", "3")
    with pytest.raises(ConfigError, match=r"SBX_POOLSIZE.*did you mean SBX_POOL__SIZE"):
        load_config()


def test_tmpfs_sizes_may_follow_memory_and_the_limit_adds_them_up() -> None:
    config = load_config(sandbox={"memory": "512m", "tmpfs": {"/workspace": "50%", "/x": "8m"}})
    assert config.sandbox.tmpfs_for(512 << 20) == {"/workspace": 256 << 20, "/x": 8 << 20}
    assert config.sandbox.tmpfs_for(2 << 30, {"/x": 1 << 20}) == {
        "/workspace": 1 << 30,
        "/x": 1 << 20,
    }
    assert config.sandbox.memory_limit == (512 << 20) + (256 << 20) + (8 << 20) + (64 << 20)
    assert config.model_dump()["sandbox"]["tmpfs"] == {"/workspace": "50%", "/x": 8 << 20}
    with pytest.raises(ConfigError, match=r"share of memory"):
        load_config(sandbox={"tmpfs": {"/workspace": "0%"}})


def test_defaults_past_a_limit_show_the_arithmetic() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(sandbox={"memory": "15g"})
    message = str(info.value)
    assert "15 GiB (processes) + " in message and "64 MiB (/dev/shm) = " in message
    assert "limits.max_memory (16 GiB)" in message
    assert "(top level)" not in message and "{'sandbox'" not in message
    with pytest.raises(ConfigError, match=r"sandbox.cpus = 9 is over limits.max_cpus \(8\)"):
        load_config(sandbox={"cpus": 9}, limits={"max_cpus": 8})
    with pytest.raises(ConfigError, match=r"session\.ttl"):
        load_config(session={"ttl": 100}, limits={"max_ttl": 10})
