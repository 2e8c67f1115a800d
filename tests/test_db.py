"""tms.db: the batch-write helpers write what the ORM would."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from django.db import connection, models, transaction
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy

from documents.models import Document, StoredFile
from mailboxes.models import InboundMessage
from shipments.models import Activity, Contact, Shipment
from tests.factories import make_mailbox
from tms.accounts.models import Staff, Tenant
from tms.db import _column_rule, _column_values, _insert_fields, by_each_key, model_rows

pytestmark = pytest.mark.django_db

# The models the intake inserts through rows_insert or updates through rows_update_unnest.
INSERTED = (Shipment, Activity, Contact, Document, StoredFile, InboundMessage)
SAMPLES: tuple[Any, ...] = (
    "text", "", " 42 ", "2026-11-02", str(uuid.UUID(int=7)), gettext_lazy("lazy"), None, 0, 7, 2**40, -3, True,
    False, 3.5, dt.date(2026, 11, 2), dt.datetime(2026, 11, 2, 10, 30, tzinfo=dt.UTC), uuid.UUID(int=7),
    {"a": 1}, [1, "b"],
)


def prepared(field: Any, value: Any, how: Any) -> tuple[str, Any]:
    """What preparing `value` for `field` gives (its exact type and value), or the error it raises."""
    obj = field.model()
    setattr(obj, field.attname, value)
    try:
        out = how(obj)
    except Exception as exc:  # the same refusal either way
        return "error", type(exc)
    if hasattr(out, "obj") and type(out).__module__.startswith("psycopg"):
        return type(out).__qualname__, out.obj  # a Jsonb or Binary wrapper: equal when it wraps the same value
    return type(out).__qualname__, out


@pytest.mark.parametrize("model", INSERTED, ids=lambda m: m.__name__)
def test_it_prepares_each_column_as_the_fields_themselves_do(model: type[models.Model]) -> None:
    assert connection.vendor == "postgresql"
    checked = 0
    for field in _insert_fields(model):
        if not _column_rule(field, connection.alias)[0]:
            continue  # pre_save makes the value (auto_now_add, a stored file): the field's own code runs
        for value in SAMPLES:
            django = prepared(field, value, lambda o, f=field: f.get_db_prep_save(f.pre_save(o, True), connection))
            ours = prepared(field, value, lambda o, f=field: _column_values(f, [o], connection)[0])
            assert ours == django, (field, value)
            checked += 1
    assert checked


def test_it_takes_the_short_way_for_the_intakes_usual_values() -> None:
    """The shortcut applies where it saves the calls: text, flags, dates, uuids, counts, keys."""
    rules = {f.name: _column_rule(f, connection.alias) for f in _insert_fields(Shipment)}
    assert str in rules["number"][1] and bool in rules["hazmat"][1] and dt.date in rules["pickup_date"][1]
    assert uuid.UUID in rules["public_id"][1] and int in rules["tenant"][1]
    assert rules["sequence"][2] is not None  # the integer wrapper of psycopg 3
    assert dt.datetime not in rules["pickup_date"][1]  # a datetime becomes a date: not unchanged
    assert not rules["created_at"][0]  # auto_now_add: pre_save makes it


def loaded(obj: models.Model) -> dict[str, Any]:
    """An instance as loaded: its field values (deferred ones left out) and its saved state."""
    state = {k: v for k, v in vars(obj).items() if k != "_state"}
    return {"class": type(obj), "values": state, "deferred": obj.get_deferred_fields(),
            "adding": obj._state.adding, "db": obj._state.db}


def test_model_rows_gives_the_instances_the_orm_gives(acme: Tenant, globex: Tenant, alice: Staff) -> None:
    from shipments.services import contact_create, shipment_create

    shipments = [shipment_create(tenant=acme, extraction_confidence={"origin": 0.9, "n": [1, "x"]}),
                 shipment_create(tenant=acme), shipment_create(tenant=globex)]
    numbers = [s.number for s in shipments]
    ours = model_rows(Shipment, "tenant_id = %s AND number = ANY(%s::varchar[])", [acme.pk, numbers],
                      order_by="id")
    theirs = Shipment.objects.for_tenant(acme).filter(number__in=numbers).order_by("id")
    assert [loaded(s) for s in ours] == [loaded(s) for s in theirs]
    assert len(ours) == 2 and ours[0].extraction_confidence == {"origin": 0.9, "n": [1, "x"]}

    contact_create(tenant=acme, email="Pat@Shipper.test", name="Pat")
    ours_c = model_rows(Contact, "tenant_id = %s AND LOWER(email) = ANY(%s::varchar[])",
                        [acme.pk, ["pat@shipper.test"]], annotations=[("email_lower", "LOWER(email)")])
    theirs_c = Contact.objects.for_tenant(acme).annotate(email_lower=Lower("email")).filter(
        email__iexact="pat@shipper.test")
    assert [loaded(c) for c in ours_c] == [loaded(c) for c in theirs_c]
    assert ours_c[0].email_lower == "pat@shipper.test"  # type: ignore[attr-defined]

    mailbox = make_mailbox(alice, "dispatch@acme.test")
    message = InboundMessage.objects.for_tenant(acme).create(
        mailbox=mailbox, folder="INBOX", uidvalidity=1, uid=1, raw=b"x", size=1, result={"a": [1]})
    ours_m = model_rows(InboundMessage, "id = ANY(%s::bigint[])", [[message.pk]], lock=True, defer=["raw"])
    theirs_m = InboundMessage.unscoped.select_for_update().filter(pk__in=[message.pk]).defer("raw")
    assert [loaded(m) for m in ours_m] == [loaded(m) for m in theirs_m]
    assert ours_m[0].get_deferred_fields() == {"raw"} and ours_m[0].result == {"a": [1]}


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _plan_nodes(child))]


def test_by_each_key_finds_the_tenants_rows_one_key_at_a_time_by_the_keys_index(acme: Tenant, globex: Tenant) -> None:
    from shipments.services import shipment_create

    for n in range(60):
        made = shipment_create(tenant=acme)
        Shipment.objects.for_tenant(acme).filter(pk=made.pk).update(source_message_key=f"<m{n}@acme.test>" if n % 3 else "")
    outsider = shipment_create(tenant=globex)  # another tenant's, with the same Message-ID
    Shipment.objects.for_tenant(globex).filter(pk=outsider.pk).update(source_message_key="<m1@acme.test>")
    keys = ["<m1@acme.test>", "<m2@acme.test>", "<m3@acme.test>", "<nowhere@acme.test>", ""]
    source = by_each_key(
        Shipment, ("varchar", "source_message_key = each_key.value AND source_message_key <> '' AND tenant_id + 0 = %s"))

    ours = model_rows(Shipment, "TRUE", [keys, acme.pk], source=source, order_by="id")

    theirs = Shipment.objects.for_tenant(acme).filter(source_message_key__in=keys[:4]).order_by("id")
    assert [loaded(s) for s in ours] == [loaded(s) for s in theirs]
    assert [s.source_message_key for s in ours] == ["<m1@acme.test>", "<m2@acme.test>"]
    with connection.cursor() as cursor:
        # On a table this small a sequential scan may be cheapest: ask which index it would take.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT id FROM {source}", [keys, acme.pk])
        plan = cursor.fetchone()[0]
    nodes = _plan_nodes(plan[0]["Plan"])
    # Whatever PostgreSQL's statistics say of the tenant: never all its rows read through its index.
    assert {n["Index Name"] for n in nodes if "Index Name" in n} == {"shipment_once_per_message_id"}
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "shipments_shipment"]


def test_a_new_mailboxs_uid_lookup_has_one_index_that_starts_with_the_mailbox(acme: Tenant, alice: Staff) -> None:
    # A mailbox the statistics have never seen (a new mailbox in an analysed table, until the next
    # ANALYZE) looks like one row, and PostgreSQL then took ANY index that starts with the mailbox:
    # the (mailbox, status) index for the UID lookup of each fetch batch, which read all the
    # mailbox's messages each batch (13.5 ms a batch at 30,000 in the bench; mailboxes/0007). The
    # only index that starts with the mailbox is the one whose UID column bounds the lookup.
    from mailboxes.reading import stored_uids_query

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = 'mailboxes_inboundmessage'::regclass AND a.attname = 'mailbox_id' "
            "AND i.indpred IS NULL")  # a partial index serves only queries that imply its condition
        assert [name for (name,) in cursor.fetchall()] == ["inbound_unique_uid"]

    # The table as in production: big and analysed, this mailbox not in its statistics. (On a tiny
    # table, whatever the last autovacuum saw, a full scan of the status index can cost the planner
    # as little as the bounded scan, and which one it takes is a coin toss.) The statistics are this
    # test's own: its transaction rolls ANALYZE back with the rows.
    old = make_mailbox(alice, "old@acme.test")
    InboundMessage.unscoped.bulk_create(
        (InboundMessage(tenant=acme, mailbox=old, folder="INBOX", uidvalidity=8, uid=uid,
                        message_id=f"<old{uid}@acme.test>", size=10, status="processed")
         for uid in range(1, 5_001)), batch_size=2_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE mailboxes_inboundmessage")
    mailbox = make_mailbox(alice, "new@acme.test")
    InboundMessage.unscoped.bulk_create(
        InboundMessage(tenant=acme, mailbox=mailbox, folder="INBOX", uidvalidity=8, uid=uid,
                       message_id=f"<{uid}@acme.test>", size=10, status="processed")
        for uid in range(1, 301))
    uids = list(range(101, 301))
    assert sorted(stored_uids_query(mailbox, "INBOX", 8, [*uids, 5000])) == uids
    assert not stored_uids_query(mailbox, "INBOX", 9, uids)  # another UIDVALIDITY: none of them
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = json.loads(stored_uids_query(mailbox, "INBOX", 8, uids).explain(format="json"))
    nodes = _plan_nodes(plan[0]["Plan"])
    assert {n["Index Name"] for n in nodes if "Index Name" in n} == {"inbound_unique_uid"}


def test_a_pass_asks_for_the_unfinished_messages_without_reading_the_processed_ones(acme: Tenant, alice: Staff) -> None:
    # By the status index, "processed and not yet post-processed" read every processed message of
    # the mailbox, each pass that found new mail (mailboxes/0008): only the unfinished ones now.
    from mailboxes.reading import unfinished_query

    mailbox, other = make_mailbox(alice, "busy@acme.test"), make_mailbox(alice, "other@acme.test")
    done = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def message(box: Any, uid: int, status: str, post_processed_at: dt.datetime | None) -> InboundMessage:
        return InboundMessage(tenant=acme, mailbox=box, folder="INBOX", uidvalidity=7, uid=uid, size=10,
                              message_id=f"<{box.pk}.{uid}@acme.test>", status=status, post_processed_at=post_processed_at)

    InboundMessage.unscoped.bulk_create(
        [message(mailbox, uid, "processed" if uid % 2 else "ignored", done) for uid in range(1, 3001)]
        + [message(mailbox, 3001, "processed", None), message(mailbox, 3002, "received", None),
           message(mailbox, 3003, "quarantined", None), message(other, 1, "processed", None)], batch_size=1000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE mailboxes_inboundmessage")

    assert sorted(unfinished_query(mailbox).values_list("uid", flat=True)) == [3001, 3002]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = json.loads(unfinished_query(mailbox).explain(format="json", analyze=True))
    nodes = _plan_nodes(plan[0]["Plan"])
    read = sum(n["Actual Rows"] * n["Actual Loops"] for n in nodes if "Index Name" in n)
    assert {n["Index Name"] for n in nodes if "Index Name" in n} >= {"inbound_awaiting_action"}
    assert read <= 3  # the unfinished ones, not the 3,000 processed


def test_the_apps_connections_run_without_jit() -> None:
    # A big table's lookups pass jit_above_cost: 20 ms of compiling a batch for a 1-2 ms lookup
    # (tms/settings.py, postgres_options).
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


@pytest.mark.django_db(transaction=True)
def test_statistics_refresh_shows_the_planner_a_new_tenants_rows(acme: Tenant, globex: Tenant) -> None:
    from tms.db import statistics_refresh

    Shipment.unscoped.bulk_create([Shipment(tenant=globex, sequence=n, number=f"G-{n}") for n in range(1, 501)])
    assert statistics_refresh(Shipment)
    Shipment.unscoped.bulk_create([Shipment(tenant=acme, sequence=n, number=f"A-{n}") for n in range(1, 2001)])

    def estimated() -> int:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) SELECT id FROM shipments_shipment WHERE tenant_id = %s", [acme.pk])
            return int(cursor.fetchone()[0][0]["Plan"]["Plan Rows"])

    assert estimated() < 100  # what the planner believed of acme before: a handful of rows
    assert statistics_refresh(Shipment)
    assert estimated() > 1000
    with transaction.atomic():  # never inside the caller's transaction (its lock would last as long)
        assert not statistics_refresh(Shipment)
    assert not statistics_refresh()  # nothing named: nothing analysed (not the whole database)
