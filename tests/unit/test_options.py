"""The allow-list of per-session sandbox options."""

from __future__ import annotations

import pytest

from orchestrator.config import Config
from orchestrator.errors import ConfigError, OptionNotAllowed
from orchestrator.options import parse_options


def test_allowed_options_parse() -> None:
    options = parse_options(
        {"image": "desktop", "memory": "2g", "cpus": 2, "network": True, "env": {"A": "1"}},
        Config(),
    )
    assert options.memory == 2 << 30
    assert options.network is True


@pytest.mark.parametrize("name", ["privileged", "cap_add", "volumes", "devices", "user"])
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
