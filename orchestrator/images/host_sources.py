"""The host's Debian apt sources, as mmdebstrap should see them.

``sbx-base`` is bootstrapped from the same mirrors the host already uses
(decision 3: no registry, and no mirror configuration of our own), so this
module reads ``/etc/apt/sources.list``, ``/etc/apt/sources.list.d/*.list`` and
``*.sources`` (deb822), keeps the binary (``deb``) entries of the host's
release — suites named after the codename or ``<codename>-*`` — and renders
them back in their own syntax for mmdebstrap's ``MIRROR`` files.  Third-party
repositories (``nodistro``, ``cloud-sdk-bookworm``, ...) are dropped.

It only reads files and returns text: it must not run apt, touch the network
or write anything, so it is cheap to unit-test against a fake root.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AptSource",
    "HostSources",
    "filter_sources",
    "host_codename",
    "host_debian_sources",
    "parse_deb822",
    "parse_one_line",
    "suite_matches",
]

_ONE_LINE_OPTIONS = re.compile(r"^\[([^\]]*)\]\s*")


@dataclass(frozen=True)
class AptSource:
    """One apt source entry (a line, or one deb822 stanza), in its original syntax.

    ``fields`` keeps a deb822 stanza's other fields (``Signed-By`` may be a
    multi-line embedded key) so it can be written back unchanged;
    ``options`` keeps a one-line entry's ``[key=value ...]`` text.
    """

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    origin: str
    deb822: bool = False
    options: str = ""
    fields: tuple[tuple[str, str], ...] = ()

    def render(self) -> str:
        """The entry as apt text, one-line or a deb822 stanza (without trailing blank line)."""
        if not self.deb822:
            lines = []
            opts = f" [{self.options}]" if self.options else ""
            for kind in self.types:
                for uri in self.uris:
                    for suite in self.suites:
                        parts = [f"{kind}{opts}", uri, suite, *self.components]
                        lines.append(" ".join(parts))
            return "\n".join(lines)
        out = [
            f"Types: {' '.join(self.types)}",
            f"URIs: {' '.join(self.uris)}",
            f"Suites: {' '.join(self.suites)}",
        ]
        if self.components:
            out.append(f"Components: {' '.join(self.components)}")
        for name, value in self.fields:
            first, *rest = value.split("\n")
            out.append(f"{name}: {first}".rstrip())
            out.extend(f" {line}" if line.strip() else " ." for line in rest)
        return "\n".join(out)


@dataclass(frozen=True)
class HostSources:
    """The filtered sources, split by syntax because mmdebstrap tells them apart by file name."""

    one_line: tuple[AptSource, ...] = ()
    deb822: tuple[AptSource, ...] = ()
    dropped: tuple[str, ...] = field(default=())
    """Human-readable notes on entries that were left out (for logs)."""

    @property
    def empty(self) -> bool:
        return not self.one_line and not self.deb822

    def list_text(self) -> str:
        """Content for a ``.list`` file (empty when there are no one-line entries)."""
        return "".join(entry.render() + "\n" for entry in self.one_line)

    def sources_text(self) -> str:
        """Content for a ``.sources`` file (empty when there are no deb822 entries)."""
        return "\n".join(entry.render() + "\n" for entry in self.deb822)


def parse_one_line(text: str, origin: str = "<text>") -> list[AptSource]:
    """Entries of a ``sources.list``-style text; comments and blank lines are skipped."""
    entries: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        rest = rest.strip()
        if kind not in ("deb", "deb-src"):
            continue
        options = ""
        match = _ONE_LINE_OPTIONS.match(rest)
        if match:
            options = " ".join(match.group(1).split())
            rest = rest[match.end() :]
        words = rest.split()
        if len(words) < 2:
            continue
        entries.append(
            AptSource(
                types=(kind,),
                uris=(words[0],),
                suites=(words[1],),
                components=tuple(words[2:]),
                origin=origin,
                options=options,
            )
        )
    return entries


def parse_deb822(text: str, origin: str = "<text>") -> list[AptSource]:
    """Stanzas of a deb822 ``.sources`` text; ``Enabled: no`` stanzas are skipped."""
    entries: list[AptSource] = []
    for stanza in _deb822_stanzas(text):
        lowered = {name.lower(): value for name, value in stanza}
        if lowered.get("enabled", "yes").strip().lower() == "no":
            continue
        types = tuple(lowered.get("types", "").split())
        uris = tuple(lowered.get("uris", "").split())
        suites = tuple(lowered.get("suites", "").split())
        if not types or not uris or not suites:
            continue
        known = {"types", "uris", "suites", "components"}
        entries.append(
            AptSource(
                types=types,
                uris=uris,
                suites=suites,
                components=tuple(lowered.get("components", "").split()),
                origin=origin,
                deb822=True,
                fields=tuple((name, value) for name, value in stanza if name.lower() not in known),
            )
        )
    return entries


def _deb822_stanzas(text: str) -> Iterable[list[tuple[str, str]]]:
    """Split deb822 text into stanzas of (field, value); continuation lines join with newlines."""
    stanza: list[tuple[str, str]] = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanza:
                yield stanza
                stanza = []
            continue
        if raw[0] in " \t":
            if stanza:
                name, value = stanza[-1]
                cont = raw.strip()
                stanza[-1] = (name, f"{value}\n{'' if cont == '.' else cont}")
            continue
        name, sep, value = raw.partition(":")
        if not sep:
            continue
        stanza.append((name.strip(), value.strip()))
    if stanza:
        yield stanza


def host_codename(root: Path = Path("/")) -> str | None:
    """``VERSION_CODENAME`` from the host's ``/etc/os-release``, or ``None``."""
    for candidate in (root / "etc/os-release", root / "usr/lib/os-release"):
        try:
            text = candidate.read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "VERSION_CODENAME":
                codename = value.strip().strip("\"'")
                return codename or None
    return None


def suite_matches(suite: str, codename: str) -> bool:
    """True for ``codename`` itself and its pockets (``codename-updates``, ``-security``...)."""
    return suite == codename or suite.startswith(codename + "-")


def _retarget(suite: str, codename: str, target: str) -> str:
    """``bookworm-updates`` → ``trixie-updates`` when building another release than the host's."""
    return target + suite[len(codename) :]


def host_debian_sources(
    codename: str,
    *,
    target_suite: str | None = None,
    root: Path = Path("/"),
) -> HostSources:
    """The host's binary sources for ``codename``, ready for mmdebstrap.

    ``target_suite`` (when it differs from ``codename``) renames the kept
    suites, so a bookworm host can bootstrap trixie from the same mirrors.
    Files whose names end in anything but ``.list``/``.sources`` (such as
    ``*.disabled-by-farm`` or ``*.save``) are not sources and are ignored,
    exactly as apt ignores them.
    """
    apt_dir = root / "etc/apt"
    found: list[AptSource] = []
    main_list = apt_dir / "sources.list"
    if main_list.is_file():
        found.extend(parse_one_line(_read(main_list), str(main_list)))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if not path.is_file():
                continue
            if path.name.endswith(".list"):
                found.extend(parse_one_line(_read(path), str(path)))
            elif path.name.endswith(".sources"):
                found.extend(parse_deb822(_read(path), str(path)))
    return filter_sources(found, codename, target_suite=target_suite)


def filter_sources(
    entries: Sequence[AptSource], codename: str, *, target_suite: str | None = None
) -> HostSources:
    """Keep ``deb`` entries whose suites belong to ``codename``; note what was dropped."""
    one_line: list[AptSource] = []
    deb822: list[AptSource] = []
    dropped: list[str] = []
    seen: set[str] = set()
    target = target_suite or codename
    for entry in entries:
        types = tuple(kind for kind in entry.types if kind == "deb")
        suites = tuple(s for s in entry.suites if suite_matches(s, codename))
        if not types or not suites:
            dropped.append(f"{entry.origin}: {' '.join(entry.uris)} {' '.join(entry.suites)}")
            continue
        if target != codename:
            suites = tuple(_retarget(s, codename, target) for s in suites)
        kept = AptSource(
            types=types,
            uris=entry.uris,
            suites=suites,
            components=entry.components,
            origin=entry.origin,
            deb822=entry.deb822,
            options=entry.options,
            fields=entry.fields,
        )
        key = kept.render()
        if key in seen:
            continue
        seen.add(key)
        (deb822 if kept.deb822 else one_line).append(kept)
    return HostSources(one_line=tuple(one_line), deb822=tuple(deb822), dropped=tuple(dropped))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
