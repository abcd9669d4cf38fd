"""Text edits inside the sandbox: the engine behind Claude's text editor and memory tools.

Operations (prefix ``edit``) view, create, replace and insert text in files
and keep an undo history; ``delete`` and ``rename`` serve the memory store.
Each edit is one read-modify-write inside one call of the single-threaded
guest, written atomically (temporary file, then ``rename``), so a failed edit
changes nothing and two edits never interleave.  Files keep their bytes: the
line-ending convention (LF, CRLF), a missing final newline and bytes that are
not UTF-8 survive every edit.

Paths live in one of two *stores*: the allowed roots of every file operation,
or the memory store mounted at ``/memories`` (``store: "memories"``), which is
confined to itself, capped in size and locked against concurrent writers in
other sandboxes that share it.  Results carry facts (line numbers, snippets,
counts); the wording the model reads is the orchestrator's business.  Reading
(``view``, and the read each edit starts with) is in ``textview``.  Must not:
spawn processes, or change a file other than by one atomic write.
"""

from __future__ import annotations

import os
import stat
from typing import List, Optional, Tuple

from . import protocol
from .errors import CallError, os_error
from .textdoc import (
    Document,
    History,
    count_lines,
    display,
    find_all,
    line_of,
    signature,
    snippet,
    split_lines,
)
from .textstores import MEMORY_MOUNT, FileStore, MemoryStore
from .textview import read_file, view_path

MAX_REPORTED_MATCHES = 100


class TextEditor:
    def __init__(self, guest: object) -> None:
        self.guest = guest
        self.history = History()

    def store(self, args: dict) -> "FileStore | MemoryStore":
        max_file = int(args.get("max_file") or self.guest.files.max_file)  # type: ignore[attr-defined]
        if args.get("store") == MemoryStore.name:
            return MemoryStore(max_file, int(args.get("store_limit") or 64 << 20))
        if args.get("store") not in (None, FileStore.name):
            raise CallError(protocol.E_BAD_REQUEST, "unknown store %r" % args.get("store"))
        return FileStore(self.guest.files)  # type: ignore[attr-defined]

    # -- reading ------------------------------------------------------------

    def view(self, args: dict) -> Tuple[dict, bytes]:
        return view_path(self.store(args), args, self.guest.files.max_file)  # type: ignore[attr-defined]

    # -- writing ------------------------------------------------------------

    def _write(
        self,
        store: "FileStore | MemoryStore",
        real: str,
        shown: str,
        data: bytes,
        limit: int,
        *,
        parents: bool = False,
    ) -> tuple:
        if len(data) > limit:
            raise CallError(
                protocol.E_TOO_LARGE,
                "the edit would make %s %d bytes, over the %d-byte limit"
                % (shown, len(data), limit),
                {"path": shown, "size": len(data), "limit": limit},
            )
        try:
            # FileService.write creates missing parents and checks they stay confined.
            store.files.write({"path": real, "overwrite": True, "parents": parents}, data)
        except CallError as exc:
            raise CallError(exc.code, exc.message.replace(real, shown), exc.details) from None
        return signature(real)

    # -- edits ----------------------------------------------------------------

    def create(self, args: dict, payload: bytes) -> dict:
        store = self.store(args)
        path = args.get("path")
        real = store.real(path)
        shown = store.shown(real, str(path))
        limit = int(args.get("max_file") or self.guest.files.max_file)  # type: ignore[attr-defined]
        lock = store.lock()
        try:
            existing = self._lstat(real, shown)
            if existing is not None:
                if stat.S_ISDIR(existing.st_mode):
                    raise CallError(
                        protocol.E_IS_DIRECTORY, "%s is a directory" % shown, {"path": shown}
                    )
                raise CallError(protocol.E_EXISTS, "%s already exists" % shown, {"path": shown})
            store.check_room(len(payload))
            after = self._write(store, real, shown, payload, limit, parents=True)
        finally:
            if lock is not None:
                lock.release()
        self.history.push(
            real, None, after, int(args.get("history") or 0), int(args.get("history_bytes") or 0)
        )
        return {"path": shown, "size": len(payload)}

    @staticmethod
    def _lstat(real: str, shown: str) -> Optional[os.stat_result]:
        try:
            return os.lstat(real)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error(exc, shown, "open") from None

    def _load(
        self, store: "FileStore | MemoryStore", args: dict
    ) -> Tuple[str, str, bytes, Document, int]:
        path = args.get("path")
        real = store.real(path)
        shown = store.shown(real, str(path))
        limit = int(args.get("max_file") or self.guest.files.max_file)  # type: ignore[attr-defined]
        raw, _ = read_file(real, shown, limit)
        return real, shown, raw, Document(raw, shown), limit

    def _commit(
        self,
        store: "FileStore | MemoryStore",
        args: dict,
        real: str,
        shown: str,
        raw: bytes,
        new: bytes,
        limit: int,
    ) -> None:
        store.check_room(len(new) - len(raw))
        after = self._write(store, real, shown, new, limit)
        self.history.push(
            real, raw, after, int(args.get("history") or 0), int(args.get("history_bytes") or 0)
        )

    def str_replace(self, args: dict, payload: bytes) -> Tuple[dict, bytes]:
        old_len = int(args.get("old_len", -1))
        if old_len < 0 or old_len > len(payload):
            raise CallError(protocol.E_BAD_REQUEST, "old_len must give the length of old_str")
        old = payload[:old_len].decode("utf-8", "surrogateescape")
        new = payload[old_len:].decode("utf-8", "surrogateescape")
        if not old:
            raise CallError(protocol.E_BAD_REQUEST, "old_str is empty", {"reason": "empty"})
        store = self.store(args)
        lock = store.lock()
        try:
            real, shown, raw, doc, limit = self._load(store, args)
            work = doc.work
            needle = doc.incoming(old)
            replacement = doc.incoming(new)
            found = find_all(work, needle, MAX_REPORTED_MATCHES + 1)
            if not found and doc.style == "mixed" and "\n" in needle:
                # The model saw this file without its CRs: try the CRLF spelling too.
                crlf_needle = needle.replace("\r\n", "\n").replace("\n", "\r\n")
                found = find_all(work, crlf_needle, MAX_REPORTED_MATCHES + 1)
                if found:
                    needle = crlf_needle
                    replacement = replacement.replace("\r\n", "\n").replace("\n", "\r\n")
            if not found:
                raise CallError(
                    protocol.E_NO_MATCH,
                    "old_str does not occur in %s" % shown,
                    dict(self._near_misses(work, needle), path=shown, style=doc.style),
                )
            if len(found) > 1:
                lines = [line_of(work, offset) for offset in found[:MAX_REPORTED_MATCHES]]
                raise CallError(
                    protocol.E_AMBIGUOUS,
                    "old_str occurs %d times in %s" % (len(found), shown),
                    {
                        "path": shown,
                        "lines": lines,
                        "count": len(found),
                        "more": len(found) > MAX_REPORTED_MATCHES,
                    },
                )
            offset = found[0]
            updated = work[:offset] + replacement + work[offset + len(needle) :]
            # Replacing a text by itself is an edit that changes nothing: it succeeds
            # (as the published tool does) without touching the file or its history.
            if needle != replacement:
                self._commit(store, args, real, shown, raw, doc.encode(updated), limit)
        finally:
            if lock is not None:
                lock.release()
        first = line_of(work, offset)
        last = first + replacement.count("\n")
        start, text = snippet(updated, first, last)
        return {
            "path": shown,
            "line": first,
            "snippet_start": start,
            "lines": count_lines(updated),
        }, text

    @staticmethod
    def _near_misses(work: str, needle: str) -> dict:
        """Where a differently indented or spaced ``needle`` would have matched, for the hint."""
        first = next((line.strip() for line in needle.split("\n") if line.strip()), "")
        if not first or len(work) > 8 << 20:
            return {}
        squeeze = " ".join(first.split())
        lines: List[int] = []
        for number, line in enumerate(work.split("\n"), 1):
            if squeeze and squeeze in " ".join(line.split()):
                lines.append(number)
                if len(lines) >= 10:
                    break
        return {"similar_lines": lines} if lines else {}

    def insert(self, args: dict, payload: bytes) -> Tuple[dict, bytes]:
        line = args.get("line")
        if not isinstance(line, int) or isinstance(line, bool):
            raise CallError(protocol.E_BAD_REQUEST, "line must be an integer")
        text = payload.decode("utf-8", "surrogateescape")
        store = self.store(args)
        lock = store.lock()
        try:
            real, shown, raw, doc, limit = self._load(store, args)
            work = doc.work
            lines = split_lines(work)
            total = len(lines)
            if line < 0 or line > total:
                raise CallError(
                    protocol.E_BAD_RANGE,
                    "insert_line %d is outside 0..%d" % (line, total),
                    {"lines": total, "line": line, "path": shown},
                )
            eol = doc.eol
            text = doc.incoming(text)
            if text.endswith("\r\n"):
                text = text[:-2]
            elif text.endswith("\n"):
                text = text[:-1]
            if eol == "\r\n":
                text = text.replace("\r\n", "\n").replace("\n", "\r\n")
            added = text.split("\n")
            if line == 0:
                offset = 0
            else:
                offset = 0
                for _ in range(line):
                    nxt = work.find("\n", offset)
                    offset = len(work) if nxt < 0 else nxt + 1
            if offset == len(work) and work and not work.endswith("\n"):
                # After a last line without a newline: break the line, keep the file unterminated.
                updated = work + eol + text
            else:
                updated = work[:offset] + text + eol + work[offset:]
            self._commit(store, args, real, shown, raw, doc.encode(updated), limit)
        finally:
            if lock is not None:
                lock.release()
        start, shown_text = snippet(updated, line + 1, line + len(added))
        return {
            "path": shown,
            "line": line,
            "inserted": len(added),
            "snippet_start": start,
            "lines": count_lines(updated),
        }, shown_text

    def undo(self, args: dict) -> Tuple[dict, bytes]:
        store = self.store(args)
        path = args.get("path")
        real = store.real(path)
        shown = store.shown(real, str(path))
        entry = self.history.pop(real)
        if entry is None:
            raise CallError(
                protocol.E_NO_HISTORY,
                "no edit of %s to undo" % shown,
                {"path": shown, "dropped": real in self.history.dropped},
            )
        before, after = entry
        changed = signature(real) != after
        if before is None:
            try:
                os.unlink(real)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.history.files.setdefault(real, []).append(entry)
                raise os_error(exc, shown, "remove") from None
            return {"path": shown, "restored": "removed", "changed_since": changed}, b""
        try:
            store.files.write({"path": real, "overwrite": True, "parents": True}, before)
        except CallError:
            self.history.files.setdefault(real, []).append(entry)
            raise
        doc = Document(before, shown)
        lines = split_lines(doc.work)
        budget = int(args.get("max_bytes") or 0)
        if budget:
            used = 0
            for index, line in enumerate(lines):
                used += len(line) + 8
                if used > budget:
                    lines = lines[: max(1, index)]
                    break
        return {
            "path": shown,
            "restored": "content",
            "changed_since": changed,
            "lines": count_lines(doc.work),
            "shown_lines": len(lines),
            "remaining": self.history.depth(real),
        }, display(lines)

    def delete(self, args: dict) -> dict:
        store = self.store(args)
        if store.name != MemoryStore.name:
            raise CallError(protocol.E_BAD_REQUEST, "edit.delete works on the memory store only")
        path = args.get("path")
        real = store.real(path, follow_final=False)
        shown = store.shown(real, str(path))
        if real == store.root:  # type: ignore[union-attr]
            raise CallError(
                protocol.E_PATH_NOT_ALLOWED,
                "%s itself cannot be deleted" % MEMORY_MOUNT,
                {"path": shown, "reason": "root"},
            )
        lock = store.lock()
        try:
            result = store.files.remove({"path": real, "recursive": True})
        except CallError as exc:
            raise CallError(exc.code, exc.message.replace(real, shown), {"path": shown}) from None
        finally:
            if lock is not None:
                lock.release()
        return {"path": shown, "removed": bool(result.get("removed"))}

    def rename(self, args: dict) -> dict:
        store = self.store(args)
        if store.name != MemoryStore.name:
            raise CallError(protocol.E_BAD_REQUEST, "edit.rename works on the memory store only")
        old_real = store.real(args.get("old_path"), follow_final=False)
        new_real = store.real(args.get("new_path"), follow_final=False)
        old_shown = store.shown(old_real, str(args.get("old_path")))
        new_shown = store.shown(new_real, str(args.get("new_path")))
        if store.root in (old_real, new_real):  # type: ignore[union-attr]
            raise CallError(
                protocol.E_PATH_NOT_ALLOWED,
                "%s itself cannot be renamed" % MEMORY_MOUNT,
                {"path": old_shown, "reason": "root"},
            )
        if new_real == old_real or new_real.startswith(old_real + "/"):
            raise CallError(
                protocol.E_BAD_REQUEST,
                "%s cannot be moved into itself" % old_shown,
                {"path": old_shown, "reason": "into_itself"},
            )
        lock = store.lock()
        try:
            if self._lstat(old_real, old_shown) is None:
                raise CallError(
                    protocol.E_NOT_FOUND, "%s does not exist" % old_shown, {"path": old_shown}
                )
            if self._lstat(new_real, new_shown) is not None:
                raise CallError(
                    protocol.E_EXISTS, "%s already exists" % new_shown, {"path": new_shown}
                )
            parent = os.path.dirname(new_real)
            try:
                os.makedirs(parent, exist_ok=True)
                os.rename(old_real, new_real)
            except OSError as exc:
                raise os_error(exc, old_shown, "rename") from None
        finally:
            lock.release()
        return {"old_path": old_shown, "new_path": new_shown}


def register(guest: object) -> None:
    editor = TextEditor(guest)
    send = guest.send  # type: ignore[attr-defined]

    def reply(fn):  # type: ignore[no-untyped-def]
        def handler(call_id: int, args: dict, payload: bytes) -> None:
            value = fn(args, payload)
            if isinstance(value, tuple):
                send(protocol.result(call_id, value[0], value[1]))
            else:
                send(protocol.result(call_id, value))

        return handler

    guest.handlers.update(  # type: ignore[attr-defined]
        {
            protocol.OP_EDIT_VIEW: reply(lambda a, p: editor.view(a)),
            protocol.OP_EDIT_CREATE: reply(editor.create),
            protocol.OP_EDIT_STR_REPLACE: reply(editor.str_replace),
            protocol.OP_EDIT_INSERT: reply(editor.insert),
            protocol.OP_EDIT_UNDO: reply(lambda a, p: editor.undo(a)),
            protocol.OP_EDIT_DELETE: reply(lambda a, p: editor.delete(a)),
            protocol.OP_EDIT_RENAME: reply(lambda a, p: editor.rename(a)),
        }
    )
