"""The allow-list of per-session sandbox options."""

from __future__ import annotations

import pytest

from orchestrator.config import Config
from orchestrator.errors import ConfigError, OptionNotAllowed, OptionOverLimit
from orchestrator.options import parse_options


def test_allowed_options_parse() -> None:
    options = parse_options(
        {"image": "desktop", "memory": "2g", "cpus": 2, "network": True, "env": {"A": "1"}},
        Config(),
    )
    assert options.memory == 2 << 30
    assert options.network is True


@pytest.mark.parametrize("name", ["privileged", "cap_add", "volumes", "devices", "read_only"])
def test_dangerous_options_are_refused_with_the_allowed_list(name: str) -> None:
    with pytest.raises(OptionNotAllowed) as info:
        parse_options({name: True}, Config())
    assert name in str(info.value)
    assert "memory" in str(info.value)  # lists what is allowed


def test_reserved_labels_are_refused() -> None:
    with pytest.raises(ConfigError, match="reserved"):
        parse_options({"labels": {"io.sbx.session": "x"}}, Config())


def test_tmpfs_sizes_only_for_configured_mounts() -> None:
    assert parse_options({"tmpfs_sizes": {"/tmp": "1g"}}, Config()).tmpfs_sizes == {"/tmp": 1 << 30}
    with pytest.raises(OptionNotAllowed, match="/etc"):
        parse_options({"tmpfs_sizes": {"/etc": "1g"}}, Config())


def test_wrong_types_name_the_field() -> None:
    with pytest.raises(ConfigError, match="cpus"):
        parse_options({"cpus": "many"}, Config())


def test_relative_workdir_is_refused() -> None:
    with pytest.raises(ConfigError, match="absolute"):
        parse_options({"workdir": "work"}, Config())


@pytest.mark.parametrize(
    ("options", "field", "ceiling"),
    [
        ({"memory": "100g"}, "memory", "limits.max_memory = 16 GiB"),
        ({"tmpfs_sizes": {"/tmp": "100t"}}, "tmpfs_sizes['/tmp']", "limits.max_tmpfs_size = 8 GiB"),
        ({"cpus": 64}, "cpus", "limits.max_cpus"),
        ({"pids_limit": 60000}, "pids_limit", "limits.max_pids = 4096"),
        ({"ttl": 1e9}, "ttl", "limits.max_ttl = 86400 s"),
        ({"idle_timeout": 1e9}, "idle_timeout", "limits.max_ttl"),
        ({"labels": {f"k{i}": "v" for i in range(33)}}, "labels", "limits.max_labels = 32"),
        ({"labels": {"big": "x" * (50 << 20)}}, "labels", "limits.max_label_bytes = 8 KiB"),
        ({"env": {f"E{i}": "v" for i in range(257)}}, "env", "limits.max_env = 256"),
        ({"env": {"BIG": "x" * (1 << 20)}}, "env", "limits.max_env_bytes = 128 KiB"),
    ],
)
def test_options_past_a_ceiling_name_the_field_the_value_and_the_ceiling(
    options: dict[str, object], field: str, ceiling: str
) -> None:
    with pytest.raises(OptionOverLimit) as info:
        parse_options(options, Config())
    assert info.value.field == field
    assert str(info.value).startswith(f"{field} = ")
    assert ceiling in str(info.value)
    assert len(str(info.value)) < 1000, "the message must not echo a huge value back"


def test_the_memory_ceiling_counts_the_tmpfs_mounts_and_shows_the_sum() -> None:
    config = Config()
    config.limits.max_memory = 4 << 30
    # 2 GiB for processes is fine alone, but /workspace follows memory (100%), /tmp (50%)...
    with pytest.raises(OptionOverLimit) as info:
        parse_options({"memory": "2g"}, config)
    message = str(info.value)
    assert "2 GiB (processes) + 512 MiB (/home/sandbox)" in message
    assert "2 GiB (/workspace)" in message and "512 MiB (/var/tmp)" in message
    assert "= 6.1 GiB" in message
    # Shrinking the workspace makes the same memory fit.
    fits = parse_options(
        {"memory": "2g", "tmpfs_sizes": {"/workspace": "16m", "/tmp": "64m"}}, config
    )
    assert fits.memory == 2 << 30


def test_limits_are_the_operators_to_raise() -> None:
    config = Config()
    config.limits.max_cpus = 128
    assert parse_options({"cpus": 64}, config).cpus == 64


@pytest.mark.parametrize("image", ["../../etc", "UPPER", "a//b", "x:", "x@sha256:12", " img", ""])
def test_malformed_image_references_are_refused(image: str) -> None:
    with pytest.raises(ConfigError, match="image"):
        parse_options({"image": image}, Config())


@pytest.mark.parametrize(
    "image",
    [
        "code-runner",
        "sbx-desktop:latest",
        "myorg/img:1.2",
        "registry.local:5000/team/img:v1",
        "img@sha256:" + "a" * 64,
        "sha256:" + "b" * 64,
        "0123456789ab",
    ],
)
def test_image_references_in_the_engines_grammar_pass(image: str) -> None:
    assert parse_options({"image": image}, Config()).image == image


def test_text_that_is_not_unicode_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="not valid Unicode"):
        parse_options({"env": {"A": "\udcff"}}, Config())
    with pytest.raises(ConfigError, match="not valid Unicode"):
        parse_options({"labels": {"k\udcff": "v"}}, Config())


def test_sbx_variables_are_reserved_for_sbx() -> None:
    # The guest reads a few SBX_* variables; a session must not be able to set them.
    with pytest.raises(ConfigError, match="SBX_PATH_MAP is reserved"):
        parse_options({"env": {"SBX_PATH_MAP": '{"/memories": "/etc"}'}}, Config())
