"""The memory tool and its store: commands, confinement, the size cap, persistence, set-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import Config, FakeBackend, Orchestrator
from orchestrator.backends.base import BindMount, SandboxSpec
from orchestrator.backends.docker.backend import host_config_for
from orchestrator.errors import ConfigError
from orchestrator.memory_store import memory_root, prepare_namespace
from orchestrator.options import parse_options

from ..toolcalls import call


def store(config: Config, namespace: str = "default") -> Path:
    assert config.memory.root is not None
    return config.memory.root / namespace


async def test_memories_outlive_the_session_that_wrote_them(orch: Orchestrator) -> None:
    async with orch.session() as first:
        err, text, _ = await call(
            first,
            "memory",
            {"command": "create", "path": "/memories/prefs.md", "file_text": "likes: tea\n"},
        )
        assert (err, text) == (False, "File created successfully at: /memories/prefs.md")
    async with orch.session() as second:
        err, text, _ = await call(
            second, "memory", {"command": "view", "path": "/memories/prefs.md"}
        )
    assert not err
    assert text == "Here's the content of /memories/prefs.md with line numbers:\n     1\tlikes: tea"


async def test_namespaces_are_separate(orch: Orchestrator, fake_config: Config) -> None:
    async with orch.session(memory_namespace="project-a") as a:
        await call(a, "memory", {"command": "create", "path": "/memories/x", "file_text": "a"})
    async with orch.session() as other:
        err, text, _ = await call(other, "memory", {"command": "view", "path": "/memories/x"})
    assert err
    assert "does not exist" in text
    assert (store(fake_config, "project-a") / "x").read_text() == "a"
    assert not (store(fake_config) / "x").exists()


async def test_every_command(orch: Orchestrator, fake_config: Config) -> None:
    async with orch.session() as s:

        async def memory(**tool_input: object) -> tuple[bool, str]:
            err, text, _ = await call(s, "memory", dict(tool_input))
            return err, text

        assert await memory(command="create", path="/memories/a/notes.md", file_text="one\ntwo\n")
        err, text = await memory(
            command="str_replace", path="/memories/a/notes.md", old_str="two", new_str="TWO"
        )
        assert not err
        assert text.startswith("The memory file has been edited. Here is the snippet")
        assert "     2\tTWO" in text
        assert await memory(
            command="insert", path="/memories/a/notes.md", insert_line=0, insert_text="zero\n"
        ) == (False, "The file /memories/a/notes.md has been edited.")
        assert (store(fake_config) / "a" / "notes.md").read_text() == "zero\none\nTWO\n"
        err, text = await memory(command="view", path="/memories")
        assert not err
        assert text.splitlines()[0] == (
            "Here're the files and directories up to 2 levels deep in /memories, excluding "
            "hidden items:"
        )
        assert "\t/memories/a/\n" in text + "\n"
        assert "13B\t/memories/a/notes.md" in text
        assert await memory(
            command="rename", old_path="/memories/a/notes.md", new_path="/memories/b/n.md"
        ) == (False, "Successfully renamed /memories/a/notes.md to /memories/b/n.md")
        assert await memory(command="delete", path="/memories/b") == (
            False,
            "Successfully deleted /memories/b",
        )
        assert not (store(fake_config) / "b").exists()


@pytest.mark.parametrize(
    ("tool_input", "message"),
    [
        (
            {"command": "create", "path": "/memories/x.md", "file_text": "again"},
            "File /memories/x.md already exists",
        ),
        (
            {"command": "str_replace", "path": "/memories/x.md", "old_str": "zz", "new_str": "y"},
            "No replacement was performed, old_str `zz` did not appear verbatim in /memories/x.md.",
        ),
        (
            {"command": "str_replace", "path": "/memories/x.md", "old_str": "a", "new_str": "b"},
            "Multiple occurrences of old_str `a` in lines: 1, 2. Please ensure it is unique",
        ),
        (
            {"command": "insert", "path": "/memories/x.md", "insert_line": 9, "insert_text": "q"},
            "Invalid `insert_line` parameter: 9. It should be within the range [0, 2].",
        ),
        (
            {"command": "view", "path": "/memories/nope.md"},
            "The path /memories/nope.md does not exist. Please provide a valid path.",
        ),
        ({"command": "delete", "path": "/memories/nope"}, "The path /memories/nope does not exist"),
        (
            {"command": "delete", "path": "/memories"},
            "Cannot delete the /memories directory itself",
        ),
        (
            {"command": "rename", "old_path": "/memories/x.md", "new_path": "/memories/y.md"},
            "The destination /memories/y.md already exists",
        ),
        (
            {"command": "rename", "old_path": "/memories", "new_path": "/memories/z"},
            "Cannot rename the /memories directory itself",
        ),
        ({"command": "view", "path": "/etc/passwd"}, "Path must start with /memories, got: /etc"),
        (
            {"command": "view", "path": "/memories/../etc/passwd"},
            "Path /memories/../etc/passwd would escape /memories directory",
        ),
        (
            {"command": "create", "path": "/memories/../../x", "file_text": "x"},
            "would escape /memories directory",
        ),
        ({"command": "create", "path": "/memories/q.md"}, "missing required parameter 'file_text'"),
        ({"command": "forget", "path": "/memories"}, "Unknown command: forget"),
    ],
)
async def test_bad_calls_are_errors_that_change_nothing(
    orch: Orchestrator, fake_config: Config, tool_input: dict[str, object], message: str
) -> None:
    async with orch.session() as s:
        await call(
            s, "memory", {"command": "create", "path": "/memories/x.md", "file_text": "a\na\n"}
        )
        await call(s, "memory", {"command": "create", "path": "/memories/y.md", "file_text": "y"})
        before = sorted(p.name for p in store(fake_config).iterdir())
        err, text, _ = await call(s, "memory", tool_input)
    assert err, text
    assert message in text
    assert sorted(p.name for p in store(fake_config).iterdir()) == before
    assert (store(fake_config) / "x.md").read_text() == "a\na\n"


async def test_a_symlink_out_of_the_store_is_refused(
    orch: Orchestrator, fake_config: Config, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    async with orch.session() as s:
        (store(fake_config) / "escape").symlink_to(secret)
        err, text, _ = await call(s, "memory", {"command": "view", "path": "/memories/escape"})
        err2, text2_, _ = await call(
            s,
            "memory",
            {
                "command": "str_replace",
                "path": "/memories/escape",
                "old_str": "host",
                "new_str": "x",
            },
        )
    assert err and err2
    assert "would escape /memories directory via symlink" in text
    assert "host secret" not in text + text2_
    assert secret.read_text() == "host secret\n"


async def test_the_store_has_a_size_cap(fake_config: Config, fake_backend: FakeBackend) -> None:
    fake_config.memory.max_bytes = 1000
    async with Orchestrator(fake_config, backend=fake_backend) as orch, orch.session() as s:
        ok, _, _ = await call(
            s, "memory", {"command": "create", "path": "/memories/a", "file_text": "k" + "x" * 899}
        )
        err, text, _ = await call(
            s, "memory", {"command": "create", "path": "/memories/b", "file_text": "y" * 200}
        )
        grow, grow_text, _ = await call(
            s,
            "memory",
            {
                "command": "str_replace",
                "path": "/memories/a",
                "old_str": "kx",
                "new_str": "z" * 300,
            },
        )
    assert not ok
    assert err and grow
    assert "The memory store is full: it holds 900 of its 1000 bytes" in text
    assert "Delete or shorten memories" in grow_text
    assert not (store(fake_config) / "b").exists()
    assert (store(fake_config) / "a").read_text() == "k" + "x" * 899


async def test_a_session_without_the_store_says_so(orch: Orchestrator, fake_config: Config) -> None:
    async with orch.session(memories=False) as s:
        err, text, _ = await call(s, "memory", {"command": "view", "path": "/memories"})
    assert err
    assert "no memory store" in text
    assert not store(fake_config).exists()


def test_namespace_names_cannot_climb_out(fake_config: Config) -> None:
    with pytest.raises(ConfigError, match=r"cannot be '\.' or '\.\.'"):
        parse_options({"memory_namespace": ".."}, fake_config)
    with pytest.raises(ConfigError, match="memory_namespace"):
        parse_options({"memory_namespace": "a/b"}, fake_config)


def test_the_default_root_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert memory_root(Config().memory) == tmp_path / "data" / "sbx" / "memories"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert (
        memory_root(Config().memory) == tmp_path / "home" / ".local" / "share" / "sbx" / "memories"
    )


def test_the_sandbox_user_gets_the_namespace(
    fake_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    chowned: list[tuple[str, int, int]] = []
    monkeypatch.setattr("orchestrator.memory_store.os.geteuid", lambda: 0)
    monkeypatch.setattr(
        "orchestrator.memory_store.os.chown", lambda p, u, g: chowned.append((str(p), u, g))
    )
    path = prepare_namespace(fake_config, "as-root")
    assert chowned == [(str(path), 1000, 1000)]
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_another_user_opens_the_namespace_but_not_the_root(
    fake_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("orchestrator.memory_store.os.geteuid", lambda: 4321)
    fake_config.sandbox.user = "4999:4999"  # not the directory's owner
    path = prepare_namespace(fake_config, "as-someone")
    assert path.stat().st_mode & 0o777 == 0o777
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_docker_mounts_the_store_as_a_bind_mount() -> None:
    spec = SandboxSpec(
        image="sbx-code-runner",
        name="n",
        labels={},
        env={},
        memory=1 << 30,
        cpus=1,
        pids_limit=64,
        network=False,
        tmpfs={},
        user="1000:1000",
        workdir="/workspace",
        mounts=(BindMount(source="/srv/memories/default", target="/memories"),),
    )
    [mount] = host_config_for(spec)["mounts"]
    assert mount["Type"] == "bind"
    assert mount["Source"] == "/srv/memories/default"
    assert mount["Target"] == "/memories"
    assert mount["ReadOnly"] is False
    assert "binds" not in host_config_for(spec)


async def test_the_store_is_never_mounted_into_the_sandbox(
    orch: Orchestrator, fake_config: Config, fake_backend: FakeBackend
) -> None:
    # Whatever a sandbox mounts its code can write, past the store's cap; the memory
    # tool's edits run in a guest of the session's own on the host instead.
    async with orch.session() as s:
        assert s.memory_namespace == "default"
        [box] = [b for b in fake_backend.sandboxes.values() if b.spec.name == f"sbx-{s.id}"]
        printed = await s.exec(["sh", "-c", 'printf %s "${SBX_PATH_MAP:-none}"'])
        err, text, _ = await call(
            s, "memory", {"command": "create", "path": "/memories/n.md", "file_text": "kept"}
        )
        process = s._memory._process
        assert process is not None and process.returncode is None  # the store's own guest
    # It ended with its session (nothing outlives a session).
    assert process.returncode is not None
    assert box.spec.mounts == ()
    assert printed.stdout_text == "none"
    assert not err, text
    assert (store(fake_config) / "n.md").read_text() == "kept"


async def test_owners_never_share_a_namespace(orch: Orchestrator, fake_config: Config) -> None:
    alice = await orch.open_session(owner="alice")
    try:
        await call(alice, "memory", {"command": "create", "path": "/memories/a", "file_text": "A"})
    finally:
        await alice.close()
    bob = await orch.open_session(owner="bob", memory_namespace="default")
    try:
        err, text, _ = await call(bob, "memory", {"command": "view", "path": "/memories/a"})
    finally:
        await bob.close()
    assert err
    assert "does not exist" in text
    assert fake_config.memory.root is not None
    assert (fake_config.memory.root / "@alice" / "default" / "a").read_text() == "A"
    assert not (fake_config.memory.root / "default").exists()
