"""{% shipment_documents shipment as documents %}: the documents filed on a shipment, for the
shipment page's include (documents/_shipment_documents.html), so that shipments/ need not know us."""

from __future__ import annotations

from django import template

from shipments.models import Shipment

from ..models import Document
from ..selectors import documents_for_shipment

register = template.Library()


@register.simple_tag
def shipment_documents(shipment: Shipment) -> list[Document]:
    return list(documents_for_shipment(shipment=shipment))
