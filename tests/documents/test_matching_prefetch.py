"""matching.prefetch(): find_match for a batch of documents from one query decides exactly what
it decides with its own queries per document."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from documents import matching
from tests.documents.support import shipment
from tms.accounts.models import Tenant

pytestmark = pytest.mark.django_db


def test_it_matches_a_batch_from_one_query_as_each_document_does_alone(acme: Tenant, globex: Tenant) -> None:
    shipment(acme, 105677)
    shipment(acme, 105533, po_number="77102")
    shipment(acme, 300001, po_number="77102")  # the same PO on two shipments: ambiguous
    shipment(acme, 400001, pro_number="RT-33817")
    shipment(acme, 500001, bol_number="7734120")
    shipment(globex, 600001, bol_number="88123-01")  # another tenant's: never evidence here
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POD_SHP105677.pdf", "PROOF OF DELIVERY", {}),
        ("PackingList_PO77102.pdf", "PO 77102", {"refs": ["SHP-105533"]}),
        ("PackingList_PO77102.pdf", "PO 77102", {}),
        ("receipt.pdf", "DELIVERY RECEIPT\nPRO: RT-33817", {}),
        ("scan.pdf", "BILL OF LADING No. 7734120 and SHP-105677", {"shipments": ["SHP-500001"]}),
        ("scan.pdf", "BOL 88123-01", {}),
        ("notes.txt", "nothing to see", {"shipments": ["SHP-105533"]}),
        ("notes.txt", "", {"refs": ["SHP-999999"]}),
    ]
    alone = [matching.find_match(tenant=acme, filename=f, text=t, hints=h) for f, t, h in cases]

    with CaptureQueriesContext(connection) as queries:
        prefetched = matching.prefetch(tenant=acme, documents=cases)
        together = [matching.find_match(tenant=acme, filename=f, text=t, hints=h, prefetched=prefetched)
                    for f, t, h in cases]

    assert together == alone
    assert len(queries.captured_queries) == 1
    assert [m.shipment.number if m.shipment else None for m in alone] == [
        "SHP-105677", "SHP-105533", None, "SHP-400001", "SHP-105677", None, "SHP-105533", None]


@pytest.mark.parametrize("named_newest", [False, True])
def test_it_asks_for_the_shipments_named_by_number_alone_when_too_many_rows_carry_a_token(
    acme: Tenant, monkeypatch: pytest.MonkeyPatch, named_newest: bool
) -> None:
    # More rows carry the batch's BOL/PO/PRO tokens than prefetch keeps: the one query stops
    # early and may miss the shipments named by number (the oldest here), so it asks for those on
    # their own; and a newer one named by number must not hide a row carrying a token.
    monkeypatch.setattr(matching, "_PREFETCH_MAX_ROWS", 2)
    if not named_newest:
        named = shipment(acme, 105677)
    for sequence in (300001, 300002, 300003):
        shipment(acme, sequence, po_number="77102")
    if named_newest:
        named = shipment(acme, 105677)
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POD_SHP105677.pdf", "PROOF OF DELIVERY", {}),
        ("PackingList_PO77102.pdf", "PO 77102", {}),
    ]
    alone = [matching.find_match(tenant=acme, filename=f, text=t, hints=h) for f, t, h in cases]

    with CaptureQueriesContext(connection) as queries:
        prefetched = matching.prefetch(tenant=acme, documents=cases)
    together = [matching.find_match(tenant=acme, filename=f, text=t, hints=h, prefetched=prefetched)
                for f, t, h in cases]

    assert prefetched.numbered is None and prefetched.by_number == {named.number: named}
    assert len(queries.captured_queries) == 2
    assert together == alone and alone[0].shipment == named and alone[1].shipment is None


def test_a_shipment_named_both_by_number_and_by_a_token_is_found_both_ways(acme: Tenant) -> None:
    both = shipment(acme, 105533, po_number="77102")
    cases: list[tuple[str, str, dict[str, Any]]] = [("scan.pdf", "PO 77102 for SHP-105533", {})]
    prefetched = matching.prefetch(tenant=acme, documents=cases)
    assert prefetched.by_number == {both.number: both} and prefetched.numbered == [both]
    assert matching.shipments_for_numbers(tenant=acme, tokens={"77102"}, prefetched=prefetched) == [(both, "PO 77102")]
