"""The result of classifying one message, and its SCHEMA.md shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .attachments import Attachment
from .locations import Location
from .signals import Signals

CATEGORIES = ("quote", "pickup", "operations", "other")
FIELD_NAMES = ("origin", "destination", "pickup_date", "delivery_date", "weight_lbs", "pieces", "equipment",
               "commodity", "hazmat")
_EMPTY: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Fields:
    origin: Location | None = None
    destination: Location | None = None
    pickup_date: dt.date | None = None
    delivery_date: dt.date | None = None
    weight_lbs: int | None = None
    pieces: int | None = None
    equipment: str | None = None
    commodity: str | None = None
    hazmat: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin.to_dict() if self.origin else None,
            "destination": self.destination.to_dict() if self.destination else None,
            "pickup_date": self.pickup_date.isoformat() if self.pickup_date else None,
            "delivery_date": self.delivery_date.isoformat() if self.delivery_date else None,
            "weight_lbs": self.weight_lbs,
            "pieces": self.pieces,
            "equipment": self.equipment,
            "commodity": self.commodity,
            "hazmat": self.hazmat,
        }


@dataclass(frozen=True, slots=True)
class Classification:
    """What one message is, and what it says.

    `fields` is filled for quote and pickup only (SCHEMA.md); `confidence` holds 0..1 per field
    that was stated, plus "category" and "shipment_refs"; `attachments` keep their payload bytes
    for whoever stores the documents.
    """

    category: str
    reason: str
    shipment_refs: tuple[str, ...] = ()
    fields: Fields = field(default_factory=Fields)
    confidence: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    attachments: tuple[Attachment, ...] = ()
    signals: Signals = field(default_factory=Signals)
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    subject: str = ""
    from_addr: str | None = None
    date: dt.datetime | None = None
    error: str | None = None

    def to_schema_dict(self, file: str | None = None) -> dict[str, Any]:
        """The SCHEMA.md object (what `manage.py classify --json` prints), plus reason, confidence
        and signals; "error" only when the message could not be read."""
        out: dict[str, Any] = {}
        if file is not None:
            out["file"] = file
        out["category"] = self.category
        out["shipment_refs"] = list(self.shipment_refs)
        out["fields"] = self.fields.to_dict() if self.category in ("quote", "pickup") else Fields().to_dict()
        out["attachments"] = [{"filename": a.filename, "kind": a.kind} for a in self.attachments]
        out["reason"] = self.reason
        out["confidence"] = dict(self.confidence)
        out["signals"] = self.signals.to_dict()
        if self.error is not None:
            out["error"] = self.error
        return out


def failed(error: str, *, subject: str = "") -> Classification:
    """What an unreadable message classifies as: other, with the error."""
    return Classification(category="other", reason=f"unreadable message: {error}", shipment_refs=(),
                          subject=subject, error=error,
                          confidence=MappingProxyType({"category": 0.5}))
