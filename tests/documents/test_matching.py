"""documents.matching's lookups: the tenant's shipments by BOL/PO/PRO number and by shipment
number, one key at a time by indexes that start with the key, whatever PostgreSQL's statistics
say of the tenant."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import pytest
from django.db import connection
from django.db.models import Q
from django.db.models.functions import Upper
from django.test.utils import CaptureQueriesContext

from documents import matching
from shipments.models import Shipment
from shipments.services import shipment_number_format
from tms.accounts.models import Tenant

pytestmark = pytest.mark.django_db

# The indexes that start with a key the matcher looks up (shipments/0005): never the tenant first.
KEY_FIRST = {"shipment_bol_upper", "shipment_po_upper", "shipment_pro_upper", "shipment_number_unique"}


def _shipments(tenant: Tenant, sequences: Iterable[int], **values: str) -> list[Shipment]:
    """Shipments as an import leaves them; each of `values` a format of the sequence ("B{:05d}")."""
    return list(Shipment.unscoped.bulk_create(
        [Shipment(tenant=tenant, sequence=n, number=shipment_number_format(tenant=tenant, sequence=n),
                  **{name: value.format(n) for name, value in values.items()}) for n in sequences],
        batch_size=1000))


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _plan_nodes(child))]


def _expected(tenant: Tenant, tokens: set[str], numbers: Iterable[str] = ()) -> list[Shipment]:
    """What the lookup by BOL/PO/PRO number or shipment number means, asked of the ORM."""
    named = Q(bol__in=tokens) | Q(po__in=tokens) | Q(pro__in=tokens) | Q(number__in=numbers)
    return cast(list[Shipment], list(
        Shipment.objects.for_tenant(tenant)
        .annotate(bol=Upper("bol_number"), po=Upper("po_number"), pro=Upper("pro_number"))
        .filter(named).order_by("-created_at", "-id")))


def _seen(shipments: Iterable[Shipment]) -> list[tuple[int, str, str, str]]:
    return [(s.pk, s.bol, s.po, s.pro) for s in shipments]  # type: ignore[attr-defined]


def test_a_new_tenants_lookups_go_one_key_at_a_time_by_indexes_that_start_with_the_key(
    acme: Tenant, globex: Tenant
) -> None:
    # A tenant the statistics have never seen (a new tenant in an analysed table, its first import,
    # until the next ANALYZE) looks like one row: PostgreSQL took the tenant's own index for every
    # lookup and read all the tenant's shipments each time (bench/README.md, ingest).
    _shipments(globex, range(1, 3001), bol_number="g{:05d}", po_number="GP{:05d}")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE shipments_shipment")
    _shipments(acme, range(1, 1001), bol_number="b{:05d}", po_number="P{:05d}", pro_number="R-{:05d}")
    tokens = {f"B{n:05d}" for n in range(1, 1000, 10)} | {f"P{n:05d}" for n in range(2, 1000, 10)} | {
        f"R-{n:05d}" for n in range(3, 1000, 10)}
    numbers = {shipment_number_format(tenant=acme, sequence=n) for n in range(5, 1000, 50)}
    refs = [f"SHP-{n}" for n in range(7, 1000, 100)]

    with CaptureQueriesContext(connection) as queries:
        matching.prefetch_evidence(tenant=acme, evidences=[([sorted(numbers)], tokens)])
        matching.prefetch_evidence(tenant=acme, evidences=[([sorted(numbers)], set())])
        matching.find_match(tenant=acme, filename="scan.pdf", text=" ".join(sorted(tokens)),
                            hints={"refs": refs, "shipments": sorted(numbers)})
        matching.hinted_shipments(tenant=acme, hints={"refs": refs, "shipments": sorted(numbers)})

    lookups = [q["sql"] for q in queries.captured_queries if "shipments_shipment" in q["sql"]]
    assert len(lookups) == 6
    plans = []
    with connection.cursor() as cursor:
        # On tables this small a sequential scan may be cheapest: ask which indexes it would take.
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in lookups:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            nodes = _plan_nodes(cursor.fetchone()[0][0]["Plan"])
            plans.append(sorted({n["Index Name"] for n in nodes if "Index Name" in n}
                                | {"Seq Scan" for n in nodes if n["Node Type"] == "Seq Scan"
                                   and n.get("Relation Name") == "shipments_shipment"}))
    # Whatever the statistics say of the tenant: never all its rows read through its own index.
    assert [used for used in plans if not used or not set(used) <= KEY_FIRST] == []


def test_it_finds_the_tenants_shipments_by_each_number_once_newest_first_and_never_an_outsiders(
    acme: Tenant, globex: Tenant
) -> None:
    # The same BOL/PO/PRO numbers and shipment numbers at another tenant: never found here.
    _shipments(globex, range(1, 201), bol_number="b{:05d}", po_number="P{:05d}", pro_number="R-{:05d}")
    ours = _shipments(acme, range(1, 201), bol_number="b{:05d}", po_number="P{:05d}", pro_number="r-{:05d}")
    # 60 rows carry the same PO (more than shipments_for_numbers keeps), one of them named by its
    # BOL and its number too: each row comes once.
    Shipment.objects.for_tenant(acme).filter(sequence__gt=140).update(po_number="p-shared")
    tokens = {"P-SHARED", "B00150", "P00003", "R-00004", "R-00009", "B00004", "NOWHERE-1"}
    numbers = {ours[149].number, ours[9].number, "SHP-999999"}

    expected = _expected(acme, tokens, numbers)
    assert {s.tenant_id for s in expected} == {acme.pk} and len(expected) == 64

    prefetched = matching.prefetch_evidence(tenant=acme, evidences=[([sorted(numbers)], tokens)])
    assert prefetched.numbered is not None
    assert _seen(prefetched.numbered) == _seen(_expected(acme, tokens))
    assert prefetched.by_number == {ours[149].number: ours[149], ours[9].number: ours[9]}
    alone = matching.prefetch_evidence(tenant=acme, evidences=[([sorted(numbers)], set())])
    assert alone.by_number == prefetched.by_number

    found = matching.shipments_for_numbers(tenant=acme, tokens=tokens)
    assert [s.pk for s, _ in found] == [s.pk for s in _expected(acme, tokens)][:matching._NUMBERED_LIMIT]
    assert found[:2] == [(ours[199], "PO P-SHARED"), (ours[198], "PO P-SHARED")]
    # A shipment named by its BOL, its PRO and (B00004, P00004) twice over comes once.
    assert matching.shipments_for_numbers(tenant=acme, tokens={"B00150", "R-00150", "B00004", "R-00004", "P00004"}) == [
        (ours[149], "BOL B00150"), (ours[3], "BOL B00004")]
    assert found == matching.shipments_for_numbers(tenant=acme, tokens=tokens, prefetched=prefetched)

    hinted = matching.hinted_shipments(tenant=acme, hints={
        "refs": ["SHP-150", "SHP-999999"], "shipments": [ours[9].number, ours[149].number, ours[20].number]})
    assert hinted == [ours[149], ours[20], ours[9]]  # the refs' first, then those filed on, newest first
    theirs = matching.hinted_shipments(tenant=globex, hints={"refs": ["SHP-10"], "shipments": [ours[20].number]})
    assert [(s.tenant_id, s.number) for s in theirs] == [(globex.pk, ours[9].number), (globex.pk, ours[20].number)]


def test_it_asks_for_the_numbers_on_their_own_when_the_one_query_stops_early(
    acme: Tenant, globex: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(matching, "_PREFETCH_MAX_ROWS", 5)
    _shipments(globex, range(1, 31), po_number="77102")
    ours = _shipments(acme, range(1, 31), po_number="77102")
    numbers = {ours[0].number, ours[29].number}

    prefetched = matching.prefetch_evidence(tenant=acme, evidences=[([sorted(numbers)], {"77102"})])

    assert prefetched.numbered is None
    assert prefetched.by_number == {ours[0].number: ours[0], ours[29].number: ours[29]}
