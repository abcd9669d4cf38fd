"""One error tree on both sides of the wire: every error has a kind, a status and a remedy,
and the API's client raises the class the server raised, with its hints."""

from __future__ import annotations

import json

import pytest
import trio

from orchestrator import errors
from orchestrator.api.client import ApiClientError, SbxClient, api_error
from orchestrator.api.errors import sbx_error_response
from orchestrator.error_kinds import ERROR_KINDS, error_class, kind_of
from tests.api_harness import ALICE, Api

_CLASSES = [
    value
    for value in (getattr(errors, name) for name in errors.__all__)
    if isinstance(value, type) and issubclass(value, errors.SbxError)
]


def _instance(cls: type[errors.SbxError]) -> errors.SbxError:
    if cls is errors.OptionOverLimit:
        return cls("too much memory", field="memory")
    if cls is errors.InputTooLarge:
        return cls("too long", limit=10, key="session.max_command_bytes")
    if cls is errors.DependencyDown:
        return cls("the engine keeps failing", breaker="engine", retry_after=7.0)
    if cls is errors.SandboxLost:
        return cls("session s1", "crashed", "the container exited")
    return cls("something happened")


def test_every_error_class_has_its_own_kind() -> None:
    listed = [cls for cls, _, _ in ERROR_KINDS]
    assert sorted(c.__name__ for c in _CLASSES) == sorted(c.__name__ for c in listed)
    kinds = [kind for _, _, kind in ERROR_KINDS]
    assert len(set(kinds)) == len(kinds)


def test_no_class_is_listed_after_its_base_so_the_most_specific_wins() -> None:
    listed = [cls for cls, _, _ in ERROR_KINDS]
    for i, cls in enumerate(listed):
        for base in listed[:i]:
            assert not issubclass(cls, base), f"{cls.__name__} is shadowed by {base.__name__}"


_RAISED = [cls for cls in _CLASSES if cls not in (errors.SbxError, errors.SessionError)]


@pytest.mark.parametrize("cls", _RAISED, ids=lambda c: c.__name__)
def test_every_error_names_a_remedy_of_its_own(cls: type[errors.SbxError]) -> None:
    assert "remedy" in vars(cls), f"{cls.__name__} has no remedy of its own"


def test_a_bug_is_a_500_not_a_typed_error() -> None:
    assert kind_of(RuntimeError("boom")) == (500, "internal_error")
    assert error_class("internal_error") is None


@pytest.mark.parametrize("cls", _CLASSES, ids=lambda c: c.__name__)
def test_the_client_raises_the_class_the_server_raised(cls: type[errors.SbxError]) -> None:
    sent = _instance(cls)
    response = sbx_error_response(sent)
    received = api_error(response.status_code, bytes(response.body))
    assert isinstance(received, ApiClientError)
    assert isinstance(received, cls)
    assert received.status == response.status_code
    assert received.kind == kind_of(sent)[1]
    assert received.remedy == sent.remedy
    assert received.retryable == sent.retryable
    assert received.retry_after == sent.retry_after
    assert str(sent) in str(received)


def test_hints_reach_the_body_and_a_retry_after_header() -> None:
    response = sbx_error_response(errors.ShellBusy("bash is running `sleep 9`"))
    body = json.loads(bytes(response.body))["error"]
    assert body == {
        "type": "shell_busy",
        "message": "bash is running `sleep 9`",
        "remedy": errors.ShellBusy.remedy,
        "retryable": True,
        "retry_after": 1.0,
    }
    assert response.headers["retry-after"] == "1"


def test_a_raiser_can_say_more_than_the_class() -> None:
    err = errors.SandboxStartError("no").with_hint(remedy="free some memory", retryable=False)
    assert (err.remedy, err.retryable) == ("free some memory", False)
    assert errors.SandboxStartError.retryable is True  # the class is untouched


def test_an_error_body_that_is_not_json_is_still_an_api_error() -> None:
    received = api_error(502, b"<html>bad gateway</html>")
    assert type(received) is ApiClientError
    assert "bad gateway" in str(received)
    assert received.retryable is False


async def test_a_remote_unknown_session_is_a_session_not_found(api: Api) -> None:
    def ask() -> None:
        with SbxClient(api.url, ALICE) as client:
            client.exec("no-such-session", "true")

    with pytest.raises(errors.SessionNotFound) as caught:
        await trio.to_thread.run_sync(ask)
    assert isinstance(caught.value, ApiClientError)
    assert caught.value.status == 404
    assert "GET /v1/sessions" in str(caught.value)
