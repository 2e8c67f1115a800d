"""Reads of documents: always for one tenant, a fixed number of queries per page, and never the
raw bytes of the source message nor the extracted text where a list does not show it."""

from __future__ import annotations

from typing import Any, cast

from django.core.files import File
from django.db.models import QuerySet

from shipments import selectors as shipment_selectors
from shipments.models import Shipment
from shipments.services import shipment_numbers_for_refs
from tms.accounts.models import Tenant

from .models import Document, Kind, MatchState, Status

_LIST_DEFERRED = ("extracted_text", "source_message__raw", "source_message__headers")


def _base(tenant: Tenant) -> QuerySet[Document]:
    return (
        Document.objects.for_tenant(tenant)
        .select_related("source_message", "shipment", "matched_by", "stored")
        .defer(*_LIST_DEFERRED)
        .order_by("-created_at", "-id")
    )


def documents_inbox(*, tenant: Tenant) -> QuerySet[Document]:
    """Unmatched documents, newest first: what staff still have to file."""
    return _base(tenant).filter(match_state=MatchState.UNMATCHED)


def documents_for_shipment(*, shipment: Shipment) -> QuerySet[Document]:
    """The documents filed on a shipment, newest first."""
    return _base(shipment.tenant).filter(shipment=shipment, match_state=MatchState.MATCHED)


def document_list(
    *, tenant: Tenant, match_state: str = "", status: str = "", kind: str = "", shipment: str = ""
) -> QuerySet[Document]:
    """The tenant's documents, newest first, narrowed by the filters (unknown values match none)."""
    qs = _base(tenant)
    for name, value, allowed in (("match_state", match_state, MatchState.values), ("status", status, Status.values),
                                 ("kind", kind, Kind.values)):
        if value:
            qs = qs.filter(**{name: value}) if value in allowed else qs.none()
    if shipment:
        found = shipment_for_reference(tenant=tenant, value=shipment)
        qs = qs.filter(shipment=found) if found is not None else qs.none()
    return qs


def document_get(*, tenant: Tenant, public_id: Any) -> Document | None:
    key = shipment_selectors.as_uuid(public_id)
    if key is None:
        return None
    found = (
        Document.objects.for_tenant(tenant)
        .select_related("source_message", "shipment", "matched_by", "stored", "tenant")
        .defer("source_message__raw", "source_message__headers")
        .filter(public_id=key)
        .first()
    )
    return cast(Document | None, found)


def shipment_for_reference(*, tenant: Tenant, value: str) -> Shipment | None:
    """A shipment of the tenant by its public id or its number ("SHP-000123", "shp 123", "123")."""
    value = (value or "").strip()
    if not value:
        return None
    if shipment_selectors.as_uuid(value) is not None:
        return shipment_selectors.shipment_get(tenant=tenant, public_id=value)
    found = shipment_selectors.shipment_by_number(tenant=tenant, number=value)
    if found is not None:
        return found
    numbers = shipment_numbers_for_refs(tenant=tenant, refs=[value])
    number = numbers.get(value)
    return shipment_selectors.shipment_by_number(tenant=tenant, number=number) if number else None


def shipment_choices(*, tenant: Tenant, first: list[str] | None = None, limit: int = 100) -> list[str]:
    """Shipment numbers to offer in the inbox's match menu: the suggested ones first, then the newest."""
    newest = list(
        Shipment.objects.for_tenant(tenant).order_by("-created_at", "-id").values_list("number", flat=True)[:limit]
    )
    return list(dict.fromkeys([*(first or []), *newest]))


def document_open(*, document: Document) -> File:  # type: ignore[type-arg]
    """The stored content, opened for reading (FileNotFoundError when it was never stored)."""
    if document.stored is None:
        raise FileNotFoundError("the document's content was not stored")
    return document.stored.file.open("rb")
