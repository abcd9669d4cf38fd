"""Root is refused under gVisor, on the host and in the guest; under runc it is not."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from orchestrator import Config
from orchestrator.backends.base import root_refused
from orchestrator.errors import OptionNotAllowed
from orchestrator.options import SandboxOptions
from orchestrator.sandbox_spec import resolve_shape


@pytest.mark.parametrize("user", ["root", "0", "0:0", "root:root"])
def test_root_in_any_spelling_is_refused_under_gvisor_only(user: str) -> None:
    refused = root_refused(user, "runsc")
    assert refused is not None and "under gVisor" in refused and "non-root user" in refused
    assert root_refused(user, None) is None
    assert root_refused(user, "runc") is None


@pytest.mark.parametrize("user", [None, "1000", "1000:1000", "sandbox", "rooty", "10"])
def test_other_users_run_under_gvisor(user: str | None) -> None:
    assert root_refused(user, "runsc") is None


def test_a_root_session_under_gvisor_is_refused_before_any_sandbox_starts() -> None:
    config = Config()
    config.sandbox.runtime = "runsc"
    with pytest.raises(OptionNotAllowed, match="cannot run as root"):
        resolve_shape(SandboxOptions(user="root"), config, None)
    assert resolve_shape(SandboxOptions(user="1000"), config, None).user == "1000"
    config.sandbox.runtime = None
    assert resolve_shape(SandboxOptions(user="root"), config, None).user == "root"


def test_the_guest_refuses_uid_0_when_told_to_whatever_the_name(
    guest_module: Callable[[str], ModuleType],
) -> None:
    privileges = guest_module("privileges")
    identity = privileges.Identity()
    assert identity.person("0").uid == 0  # allowed until the host says otherwise
    identity.refuse_root = True
    with pytest.raises(PermissionError, match="cannot run as root"):
        identity.person("0")  # cached from before, refused all the same
    with pytest.raises(PermissionError, match="cannot run as root"):
        identity.person("root")
    assert identity.person("1000:1000").uid == 1000
