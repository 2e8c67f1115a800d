"""Shipment numbers this system issued: the tenant's prefix, then 5 to 8 digits.

Senders write them as ``SHP-104233``, ``SHP104233``, ``shp-104233``, ``SHP #104233``,
``SHP 104233`` or, in file names, ``POD_SHP104233``; every form is normalised to ``SHP-104233``.
PO, PRO, BOL and carrier load numbers have other prefixes and never match.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

DEFAULT_PREFIX = "SHP"


@functools.lru_cache(maxsize=64)
def ref_pattern(prefix: str = DEFAULT_PREFIX) -> re.Pattern[str]:
    """The compiled pattern for one prefix: not glued to a word before it, at most a short
    separator (space, '-', '#', ':', '_', '.') between prefix and digits, and no ninth digit."""
    if not prefix or not prefix.strip():
        raise ValueError("a shipment-number prefix is required")
    return re.compile(
        rf"(?<![A-Za-z0-9]){re.escape(prefix.strip())}[ \t]?[-#:_.]?[ \t]?(\d{{5,8}})(?![0-9])",
        re.IGNORECASE)


def find_refs(text: str, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Normalised shipment numbers in `text`: sorted, without duplicates."""
    return refs_in([text], prefix)


def refs_in(texts: Iterable[str], prefix: str = DEFAULT_PREFIX) -> list[str]:
    pattern = ref_pattern(prefix)
    label = prefix.strip().upper()
    found: set[str] = set()
    for text in texts:
        if text:
            found.update(f"{label}-{digits}" for digits in pattern.findall(text))
    return sorted(found)

