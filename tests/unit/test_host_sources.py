"""The host's apt sources are reduced to its own Debian release, in their own syntax."""

from __future__ import annotations

from pathlib import Path

from orchestrator.images.host_sources import (
    filter_sources,
    host_codename,
    host_debian_sources,
    parse_deb822,
    parse_one_line,
    suite_matches,
)

DEBIAN_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

NODESOURCE = """\
Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/nodesource.gpg
"""


def make_root(tmp_path: Path) -> Path:
    """A fake / with the same mix of sources as the build host."""
    apt = tmp_path / "etc/apt"
    parts = apt / "sources.list.d"
    parts.mkdir(parents=True)
    (tmp_path / "etc/os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
    )
    (parts / "debian.sources").write_text(DEBIAN_SOURCES)
    (parts / "nodesource.sources").write_text(NODESOURCE)
    (parts / "nodesource.sources.disabled-by-farm").write_text(DEBIAN_SOURCES)
    (parts / "google-cloud-sdk.list.disabled-by-farm").write_text(
        "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
    )
    (parts / "cloud.list").write_text(
        "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
    )
    return tmp_path


def test_one_line_entries_keep_options_and_skip_comments() -> None:
    text = (
        "# a comment\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://deb.debian.org/debian bookworm main contrib\n"
        "deb-src http://deb.debian.org/debian bookworm main  # trailing comment\n"
        "\n"
        "deb http://deb.debian.org/debian\n"
    )
    entries = parse_one_line(text, "sources.list")
    assert len(entries) == 2
    first = entries[0]
    assert first.types == ("deb",)
    assert first.options == "arch=amd64 signed-by=/k.gpg"
    assert first.uris == ("http://deb.debian.org/debian",)
    assert first.suites == ("bookworm",)
    assert first.components == ("main", "contrib")
    assert first.render() == (
        "deb [arch=amd64 signed-by=/k.gpg] http://deb.debian.org/debian bookworm main contrib"
    )
    assert entries[1].types == ("deb-src",)


def test_deb822_stanzas_skip_comments_and_disabled_entries() -> None:
    text = DEBIAN_SOURCES + "\nEnabled: no\nTypes: deb\nURIs: http://x\nSuites: bookworm\n"
    entries = parse_deb822(text, "debian.sources")
    assert [e.suites for e in entries] == [("bookworm", "bookworm-updates"), ("bookworm-security",)]
    assert entries[0].fields == (("Signed-By", "/usr/share/keyrings/debian-archive-keyring.gpg"),)


def test_deb822_embedded_key_survives_a_round_trip() -> None:
    text = (
        "Types: deb\nURIs: http://deb.example.org/debian\nSuites: bookworm\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n"
    )
    (entry,) = parse_deb822(text)
    rendered = entry.render()
    assert " -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n" in rendered
    (again,) = parse_deb822(rendered)
    assert again == entry


def test_only_the_hosts_release_and_its_pockets_are_kept() -> None:
    assert suite_matches("bookworm", "bookworm")
    assert suite_matches("bookworm-security", "bookworm")
    assert not suite_matches("nodistro", "bookworm")
    assert not suite_matches("cloud-sdk-bookworm", "bookworm")
    assert not suite_matches("bookworms", "bookworm")


def test_host_sources_drop_third_party_and_disabled_files(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    found = host_debian_sources("bookworm", root=root)
    assert found.one_line == ()
    uris = [entry.uris for entry in found.deb822]
    assert uris == [("http://deb.debian.org/debian",), ("http://deb.debian.org/debian-security",)]
    text = found.sources_text()
    assert "nodesource" not in text
    assert "cloud-sdk" not in text
    assert "Suites: bookworm bookworm-updates" in text
    assert any("nodistro" in note for note in found.dropped)
    assert any("cloud-sdk-bookworm" in note for note in found.dropped)


def test_sources_list_and_deb_src_entries(tmp_path: Path) -> None:
    apt = tmp_path / "etc/apt"
    apt.mkdir(parents=True)
    (apt / "sources.list").write_text(
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb-src http://deb.debian.org/debian bookworm main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "deb http://deb.debian.org/debian bookworm main\n"
    )
    found = host_debian_sources("bookworm", root=tmp_path)
    assert found.list_text() == (
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n"
    )
    assert found.sources_text() == ""


def test_another_target_suite_renames_the_kept_suites() -> None:
    entries = parse_deb822(DEBIAN_SOURCES)
    found = filter_sources(entries, "bookworm", target_suite="trixie")
    assert [e.suites for e in found.deb822] == [("trixie", "trixie-updates"), ("trixie-security",)]


def test_no_sources_at_all_is_empty(tmp_path: Path) -> None:
    assert host_debian_sources("bookworm", root=tmp_path).empty


def test_codename_comes_from_os_release(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    assert host_codename(root) == "bookworm"
    (root / "etc/os-release").write_text('ID=debian\nVERSION_CODENAME="trixie"\n')
    assert host_codename(root) == "trixie"
    (root / "etc/os-release").write_text("ID=arch\n")
    assert host_codename(root) is None
