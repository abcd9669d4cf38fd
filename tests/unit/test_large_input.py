"""Input of any size or encoding: a result, or a clear refusal at once (never a stall, never
an error outside the ``SbxError`` tree)."""

from __future__ import annotations

import pytest
import trio

from orchestrator import Config, Orchestrator, SbxError
from orchestrator.errors import InputTooLarge, InvalidInput


async def test_a_large_environment_travels_beside_the_header(orch: Orchestrator) -> None:
    env = {f"V{i}": "x" * (60 << 10) for i in range(24)}  # 1.4 MiB: over one frame header
    async with orch.session() as s:
        r = await s.exec('echo "${#V0} ${#V23}"', env=env)
    assert r.stdout == b"61440 61440\n", r


async def test_stdin_larger_than_a_frame_is_streamed_whole(orch: Orchestrator) -> None:
    data = bytes(range(256)) * ((100 << 20) // 256)  # 100 MiB: over one frame's payload
    async with orch.session() as s:
        r = await s.exec("sha256sum | cut -c1-16; true", stdin=data, timeout=120)
        small = await s.exec("cat", stdin=b"small")
    import hashlib

    assert r.stdout.decode().strip() == hashlib.sha256(data).hexdigest()[:16], r
    assert small.stdout == b"small"


async def test_a_command_that_ignores_most_of_its_stdin_ends_normally(orch: Orchestrator) -> None:
    async with orch.session() as s:
        with trio.fail_after(30):
            r = await s.exec("head -c 5", stdin=b"y" * (20 << 20))
    assert r.stdout == b"yyyyy" and r.exit_code == 0, r


@pytest.mark.parametrize(
    ("command", "env", "error", "words"),
    [
        ("echo \udcff", None, InvalidInput, "not valid Unicode at position 5"),
        (["echo", "a\0b"], None, InvalidInput, "argument 1 holds a NUL byte"),
        ("true", {"K": "\udcff"}, InvalidInput, "environment variable 'K'"),
        ("x" * (3 << 20), None, InputTooLarge, "session.max_command_bytes"),
    ],
)
async def test_a_command_that_cannot_be_sent_is_refused_at_once(
    orch: Orchestrator,
    command: str | list[str],
    env: dict[str, str] | None,
    error: type[SbxError],
    words: str,
) -> None:
    async with orch.session() as s:
        started = trio.current_time()
        with pytest.raises(error, match=words.replace("(", r"\(")):
            await s.exec(command, env=env)
        assert trio.current_time() - started < 1.0, "a refusal must not wait for anything"
        with pytest.raises(InvalidInput):
            await s.shell("echo \udcff")
        assert (await s.exec("echo usable")).stdout == b"usable\n"


async def test_stdin_past_the_limit_names_the_key(fake_config: Config, fake_backend) -> None:
    fake_config.session.max_stdin = 1 << 20
    async with Orchestrator(fake_config, backend=fake_backend) as orch, orch.session() as s:
        with pytest.raises(InputTooLarge, match=r"session\.max_stdin") as info:
            await s.exec("cat", stdin=b"z" * (2 << 20))
        assert info.value.key == "session.max_stdin" and info.value.limit == 1 << 20


async def test_every_refusal_is_an_sbx_error_even_for_a_frame_that_cannot_be_built(
    orch: Orchestrator,
) -> None:
    async with orch.session() as s:
        with pytest.raises(SbxError):
            await s.write_file("/workspace/big", b"q" * ((64 << 20) + 1))
        assert (await s.exec("echo fine")).stdout == b"fine\n"
