"""Row: one row of a list page, built from `.values()` instead of a model instance.

A dict, because the template engine tries `row[key]` before anything else: on a model instance or a
dataclass that first try raises a TypeError that the engine catches, on every lookup of every row
(bench/README.md, "Pages"). Its keys also read as attributes (`row.number`) for Python code.
"""

from __future__ import annotations

from typing import Any


class Row(dict[str, Any]):
    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None
