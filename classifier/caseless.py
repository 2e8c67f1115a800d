"""Case-insensitive scans at the cost of case-sensitive ones, on ASCII text.

re.IGNORECASE folds the case of every character the engine compares, and it keeps the engine from
skipping ahead to the characters a match can start with, so a case-insensitive pattern that scans
a whole body costs several times what the same pattern costs case-sensitively. On ASCII text
(nearly all mail) lower-casing the text first gives the same matches at the same positions; text
with other characters is scanned as before.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

# Characters outside ASCII that re.IGNORECASE equates with an ASCII letter (capital I with a dot,
# dotless i, long s, the Kelvin sign): in a pattern they would match ASCII text only case-insensitively.
_FOLDS_TO_ASCII = frozenset("\u0130\u0131\u017f\u212a")
_NOT_LITERAL = re.compile(r"\\.|\(\?P<\w+>|\(\?P=\w+\)", re.DOTALL)  # escapes, group names


class Caseless:
    """A pattern matched case-insensitively. Its matches in ASCII text are found in the text
    lower-cased: their positions are the text's, their group() strings are lower-case.

    The pattern must not need IGNORECASE to match lower-cased text: no upper-case letters outside
    escapes (in literals or in sets), no case-sensitive groups. That is checked here.
    """

    __slots__ = ("any_case", "lower_case")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        bare = _NOT_LITERAL.sub("", pattern)
        if "(?-i" in pattern or any(ch.isupper() or ch in _FOLDS_TO_ASCII for ch in bare):
            raise ValueError(f"not a pattern for lower-cased text: {pattern[:80]!r}")
        self.any_case = re.compile(pattern, flags | re.IGNORECASE)
        self.lower_case = re.compile(pattern, flags & ~re.IGNORECASE)

    def finditer(self, text: str, lowered: str | None = None) -> Iterator[re.Match[str]]:
        """`lowered`: text.lower(), when the caller has it already."""
        if text.isascii():
            return self.lower_case.finditer(text.lower() if lowered is None else lowered)
        return self.any_case.finditer(text)

    def search(self, text: str, pos: int = 0, endpos: int = sys.maxsize,
               lowered: str | None = None) -> re.Match[str] | None:
        if text.isascii():
            return self.lower_case.search(text.lower() if lowered is None else lowered, pos, endpos)
        return self.any_case.search(text, pos, endpos)
