"""Secret values out of everything a run shows: outputs, events, logs and reports.

A ``Masker`` knows a run's secret values and replaces each occurrence --
raw, shell-quoted or JSON-escaped, since that is how a value substituted
into a command may appear -- with ``***``.  Runs keep the real values
internally (a step may pass a secret to the next); whatever leaves the run
goes through ``mask`` first.

Must not: keep secret values anywhere but in the masker, or log them.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "Masker"]

MASK = "***"


class Masker:
    """Replaces a run's secret values in text and in nested data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in secrets:
            if not value:
                continue
            forms.add(value)
            forms.add(shlex.quote(value))
            forms.add(json.dumps(value)[1:-1])
            for line in value.splitlines():
                if len(line.strip()) >= 4:  # a multi-line secret, printed a line at a time
                    forms.add(line.strip())
        # Longest first, so a value is replaced whole before any part of it.
        self._forms = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def add(self, value: str) -> None:
        if value and value not in self._forms:
            self._forms = sorted({*self._forms, value}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for form in self._forms:
            if form in value:
                value = value.replace(form, MASK)
        return value

    def mask(self, value: Any) -> Any:
        """``value`` with every string in it masked (mappings, lists and tuples walked)."""
        if not self._forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            for form in self._forms:
                value = value.replace(form.encode("utf-8"), MASK.encode())
            return value
        if isinstance(value, dict):
            return {self.mask(key): self.mask(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask(item) for item in value]
        return value
