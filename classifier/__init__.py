"""Freight mail classification: bytes in, a Classification out.

A pure package: it imports nothing of the project (no Django, no ORM), reads no settings and
touches no network, so it can be tested, benchmarked and replaced on its own.

    from classifier import classify
    result = classify(raw_bytes, shipment_prefix="SHP")
    result.category, result.shipment_refs, result.fields.origin, result.to_schema_dict(file="017.eml")
"""

from __future__ import annotations

from .attachments import KINDS, Attachment
from .locations import Location
from .parse import parse_headers
from .pipeline import attachments_of, classify
from .refs import DEFAULT_PREFIX, find_refs
from .result import CATEGORIES, Classification, Fields
from .rules import DEFAULT_RULES, Rules
from .signals import Signals, detect_noise, signals_from_headers

__all__ = [
    "CATEGORIES",
    "DEFAULT_PREFIX",
    "DEFAULT_RULES",
    "KINDS",
    "Attachment",
    "Classification",
    "Fields",
    "Location",
    "Rules",
    "Signals",
    "attachments_of",
    "classify",
    "detect_noise",
    "find_refs",
    "parse_headers",
    "signals_from_headers",
    "warm_up",
]


def warm_up() -> None:
    """Load the place-name data now (about a second) instead of on the first message that needs it."""
    from .regions import warm_up as load

    load()
