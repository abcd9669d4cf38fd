"""The memory tool with real sandboxes: a host store, edited from the host, shared and confined.

The store is never mounted into a sandbox: whatever a sandbox mounts its code
can write, past the store's cap, onto the host's disk.
"""

from __future__ import annotations

import docker
import trio

from orchestrator import Config, Orchestrator

from ..toolcalls import call
from .conftest import IMAGE


def _store(config: Config, namespace: str = "default") -> str:
    assert config.memory.root is not None
    return str(config.memory.root / namespace)


async def test_memories_persist_across_sessions(orch: Orchestrator, config: Config) -> None:
    async with orch.session(image=IMAGE) as first:
        err, text, _ = await call(
            first,
            "memory",
            {"command": "create", "path": "/memories/project/notes.md", "file_text": "step 1\n"},
        )
        assert not err, text
    async with orch.session(image=IMAGE) as second:
        await call(
            second,
            "memory",
            {
                "command": "insert",
                "path": "/memories/project/notes.md",
                "insert_line": 1,
                "insert_text": "step 2",
            },
        )
        err, text, _ = await call(second, "memory", {"command": "view", "path": "/memories"})
    assert not err, text
    assert "\t/memories/project/\n" in text
    assert "/memories/project/notes.md" in text
    notes = await trio.Path(f"{_store(config)}/project/notes.md").read_text()
    assert notes == "step 1\nstep 2\n"


async def test_traversal_and_symlinks_out_are_refused(orch: Orchestrator, config: Config) -> None:
    async with orch.session(image=IMAGE) as s:
        await trio.Path(f"{_store(config)}/etc").symlink_to("/etc")
        results = [
            await call(s, "memory", {"command": "view", "path": "/memories/../etc/passwd"}),
            await call(s, "memory", {"command": "view", "path": "/memories/etc/passwd"}),
            await call(
                s,
                "memory",
                {"command": "create", "path": "/memories/etc/evil", "file_text": "x"},
            ),
            await call(s, "memory", {"command": "view", "path": "/workspace"}),
        ]
    texts = [text for _, text, _ in results]
    assert all(err for err, _, _ in results)
    assert "would escape /memories directory" in texts[0]
    assert "would escape /memories directory via symlink" in texts[1]
    assert "would escape /memories directory via symlink" in texts[2]
    assert "Path must start with /memories" in texts[3]
    assert not any("root:x:0:0" in text for text in texts)


async def test_sandboxed_code_cannot_reach_the_store_even_as_root(
    orch: Orchestrator, config: Config, docker_client: docker.DockerClient
) -> None:
    # Mounted, the store was the sandbox's to fill: 100 MB past a 64 MiB cap, up to
    # the host's whole disk.  Root (CAP_DAC_OVERRIDE) beats any permission, so the
    # store is no mount at all.
    async with orch.session(image=IMAGE) as s:
        attrs = docker_client.api.inspect_container(s.sandbox_id)
        err, text, _ = await call(
            s, "memory", {"command": "create", "path": "/memories/kept.md", "file_text": "hi"}
        )
        assert not err, text
        for user in (None, "root"):
            fill = await s.exec(
                "head -c 10M /dev/zero > /memories/fill; echo rc=$?; ls /memories", user=user
            )
            assert "rc=1" in fill.stdout_text, fill
            assert "kept.md" not in fill.stdout_text, fill
    mounts = attrs["HostConfig"]["Mounts"]
    assert [m["Target"] for m in mounts] == ["/opt/sbx"]  # the read-only guest bundle alone
    assert not attrs["HostConfig"]["Binds"]
    assert attrs["HostConfig"]["ReadonlyRootfs"] is True
    names = sorted(p.name for p in (config.memory.root / "default").iterdir())  # type: ignore[operator]
    assert names == ["kept.md"]


async def test_sessions_sharing_a_namespace_take_turns(orch: Orchestrator, config: Config) -> None:
    async with orch.session(image=IMAGE) as a, orch.session(image=IMAGE) as b:
        await call(a, "memory", {"command": "create", "path": "/memories/log", "file_text": ""})

        async def append(session: object, tag: str) -> None:
            for n in range(15):
                err, text, _ = await call(
                    session,
                    "memory",
                    {
                        "command": "insert",
                        "path": "/memories/log",
                        "insert_line": 0,
                        "insert_text": f"{tag}{n}",
                    },
                )
                assert not err, text

        async with trio.open_nursery() as nursery:
            nursery.start_soon(append, a, "a")
            nursery.start_soon(append, b, "b")
    lines = (await trio.Path(f"{_store(config)}/log").read_text()).splitlines()
    assert sorted(lines) == sorted([f"a{n}" for n in range(15)] + [f"b{n}" for n in range(15)])


async def test_the_cap_holds_across_sessions(config: Config) -> None:
    config.memory.max_bytes = 4096
    async with Orchestrator(config) as orch:
        async with orch.session(image=IMAGE) as s:
            first = await call(
                s, "memory", {"command": "create", "path": "/memories/a", "file_text": "x" * 3000}
            )
        async with orch.session(image=IMAGE) as s:
            second = await call(
                s, "memory", {"command": "create", "path": "/memories/b", "file_text": "y" * 2000}
            )
    assert not first[0]
    assert second[0]
    assert "The memory store is full: it holds 3000 of its 4096 bytes" in second[1]
