"""The batch intake (mailboxes.intake.messages_process, MAILBOX_INTAKE_BATCH messages per
transaction, with per-batch prefetches and bulk writes) does exactly what one-by-one does, in far
fewer queries."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from documents.models import Document
from mailboxes.intake import message_process, messages_process
from mailboxes.models import InboundMessage, Mailbox, OutboundMessage
from shipments.models import Activity, Contact, FiledMessage, Shipment
from shipments.services import customer_create, shipment_create, shipment_number_format
from tests.factories import make_mailbox, make_staff, make_tenant
from tests.shipments.support import build_mail
from tms.accounts.models import Staff, Tenant

pytestmark = pytest.mark.django_db

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "messages"
COUNT = 60


@pytest.fixture(autouse=True)
def handlers(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MAILBOX_INTAKE_HANDLERS = ["shipments.intake.handle", "documents.intake.handle"]


def store_corpus(mailbox: Mailbox, count: int = COUNT, first_uid: int = 1) -> list[int]:
    """The first `count` corpus messages as the reader stores them, each with its own Message-ID."""
    ids = []
    for uid, path in enumerate(sorted(CORPUS.glob("*.eml"))[:count], start=first_uid):
        message_id = f"<{path.stem}-{uuid.uuid4().hex}@batch.test>"
        raw = re.sub(rb"(?im)^Message-ID:[^\r\n]*", b"Message-ID: " + message_id.encode(), path.read_bytes(), count=1)
        sender = re.search(rb"(?im)^From:([^\r\n]*)", raw)
        row = InboundMessage.objects.for_tenant(mailbox.tenant).create(
            mailbox=mailbox, folder="INBOX", uidvalidity=1, uid=uid, message_id=message_id, raw=raw, size=len(raw),
            from_address=sender.group(1).decode(errors="replace").strip() if sender else "",
        )
        ids.append(row.pk)
    return ids


def outcome(tenant: Tenant) -> dict[str, Any]:
    """What the intake made for a tenant, comparable across tenants (numbers, not ids)."""
    messages = InboundMessage.objects.for_tenant(tenant).order_by("uid")
    shipments = Shipment.objects.for_tenant(tenant)
    return {
        "messages": [(m.uid, m.status, m.category, m.attempts, sorted(m.result.get("records", {}).items()))
                     for m in messages],
        "shipments": sorted((s.number, s.source_message.uid if s.source_message else None, s.status,
                             s.contact.email if s.contact else "") for s in shipments),
        "activities": sorted((a.shipment.number, a.kind, a.inbound_message.uid if a.inbound_message else None)
                             for a in Activity.objects.for_tenant(tenant)),
        "contacts": sorted(c.email.lower() for c in Contact.objects.for_tenant(tenant)),
        "filed": sorted((f.inbound_message.uid, f.contact.email.lower(), f.category)
                        for f in FiledMessage.objects.for_tenant(tenant)),
        "documents": sorted((d.source_message.uid, d.position, d.filename)
                            for d in Document.objects.for_tenant(tenant)),
    }


def test_it_makes_in_one_batch_what_it_makes_one_message_at_a_time(
    acme: Tenant, globex: Tenant, alice: Staff, charlie: Staff
) -> None:
    batched = store_corpus(make_mailbox(alice, "dispatch@acme.test"))
    alone = store_corpus(make_mailbox(charlie, "dispatch@acme.test"))

    messages_process(message_ids=batched)
    for pk in alone:
        message_process(message_id=pk)

    made = outcome(acme)
    assert made == outcome(globex)
    assert made["shipments"] and made["contacts"] and made["filed"] and made["documents"]
    assert all(status == "processed" or status == "ignored" for _, status, *_ in made["messages"])


def columns(tenant: Tenant) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of the rows the intake made for a tenant, comparable across tenants: related rows
    by what names them there (numbers, UIDs, addresses), the columns that are unique by nature (ids,
    Message-IDs) and the times left out - those are checked to be set."""
    plain: dict[str, list[tuple[Any, ...]]] = {}
    named = {
        Shipment: ("number", "source_message__uid", "contact__email", "customer__name"),
        Activity: ("shipment__number", "inbound_message__uid"),
        FiledMessage: ("inbound_message__uid", "contact__email"),
        Document: ("source_message__uid", "position"),
    }
    for model, keys in named.items():
        fields = [f for f in model._meta.concrete_fields
                  if not f.is_relation and f.name not in ("id", "public_id", "source_message_key", "message_key")]
        rows = model.objects.for_tenant(tenant)
        times = [f.name for f in fields if f.get_internal_type() == "DateTimeField" and not f.null]
        for name in times:
            assert not rows.filter(Q(**{name: None}) | Q(**{f"{name}__gt": timezone.now()})).exists()
        assert None not in set(rows.values_list("public_id", flat=True))
        names = [*keys, *(f.name for f in fields if f.name not in times and f.name not in keys)]
        plain[model.__name__] = sorted(tuple(str(v) for v in row) for row in rows.values_list(*names))
    return plain


def test_a_batch_writes_every_column_as_one_message_at_a_time_does(
    acme: Tenant, globex: Tenant, alice: Staff, charlie: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch inserts its shipments, activities, filings and documents in one statement each
    (tms.db.rows_insert, columns_insert): each column holds what the ORM's save() gives it."""
    for tenant in (acme, globex):  # the counter row exists: the batch keeps its shipments pending
        shipment_create(tenant=tenant)
    batched = store_corpus(make_mailbox(alice, "dispatch@acme.test"))
    alone = store_corpus(make_mailbox(charlie, "dispatch@acme.test"))

    def not_one_by_one(**_: Any) -> None:
        raise AssertionError("the batch failed and ran one message at a time")

    with monkeypatch.context() as patched:
        patched.setattr("mailboxes.intake.message_process", not_one_by_one)
        messages_process(message_ids=batched)
    for pk in alone:
        message_process(message_id=pk)

    made = columns(acme)
    assert made == columns(globex)
    assert all(made.values())
    for tenant, owner in ((acme, alice), (globex, charlie)):
        assert {s.assigned_to for s in Shipment.objects.for_tenant(tenant).exclude(source_message=None)} == {owner}


def test_it_runs_a_batch_again_without_making_anything_twice(acme: Tenant, alice: Staff) -> None:
    ids = store_corpus(make_mailbox(alice, "dispatch@acme.test"))
    messages_process(message_ids=ids)
    before = outcome(acme)
    InboundMessage.objects.for_tenant(acme).update(status=InboundMessage.Status.RECEIVED)

    messages_process(message_ids=ids)

    after = outcome(acme)
    same = ("shipments", "activities", "contacts", "documents")
    assert {k: after[k] for k in same} == {k: before[k] for k in same}
    # Mail of category "other" is filed only under a contact that exists when it is read: a second
    # run may file more (senders that became contacts later in the first run), never twice.
    assert set(before["filed"]) <= set(after["filed"])
    assert len({uid for uid, *_ in after["filed"]}) == len(after["filed"])


def test_it_needs_few_queries_per_message_in_a_batch(acme: Tenant, alice: Staff) -> None:
    mailbox = make_mailbox(alice, "dispatch@acme.test")
    messages_process(message_ids=store_corpus(mailbox, count=50))  # the senders become contacts
    ids = store_corpus(mailbox, count=50, first_uid=1000)  # the same mail again, new Message-IDs

    with CaptureQueriesContext(connection) as queries:
        messages_process(message_ids=ids)

    # 9 a message before the per-batch prefetches and bulk writes (21 before batches at all).
    assert len(queries.captured_queries) <= 6 * len(ids)
    assert not InboundMessage.objects.for_tenant(acme).exclude(status__in=["processed", "ignored"]).exists()


def test_a_batch_finds_the_shipments_made_from_copies_of_its_mail_in_its_one_lookup(
    acme: Tenant, alice: Staff, bob: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copies of mail (same Message-IDs) in another staff mailbox of the tenant: the batch's one
    lookup of its messages' shipments finds them by Message-ID, so it makes no second shipment -
    not even one the unique constraint would refuse, making the batch run one message at a time."""
    first = store_corpus(make_mailbox(alice, "dispatch@acme.test"))
    messages_process(message_ids=first)
    made = set(Shipment.objects.for_tenant(acme).values_list("number", flat=True))
    assert made
    raws = [bytes(raw) for raw in InboundMessage.objects.for_tenant(acme).filter(pk__in=first)
            .order_by("uid").values_list("raw", flat=True)]

    def not_one_by_one(**_: Any) -> None:
        raise AssertionError("the batch failed and ran one message at a time")

    monkeypatch.setattr("mailboxes.intake.message_process", not_one_by_one)
    messages_process(message_ids=store_raw(make_mailbox(bob, "bob@acme.test"), raws))

    assert set(Shipment.objects.for_tenant(acme).values_list("number", flat=True)) == made


def store_raw(mailbox: Mailbox, raws: list[bytes], first_uid: int = 1) -> list[int]:
    ids = []
    for uid, raw in enumerate(raws, start=first_uid):
        found = re.search(rb"(?im)^Message-ID:\s*(<[^>]+>)", raw)
        sender = re.search(rb"(?im)^From:([^\r\n]*)", raw)
        row = InboundMessage.objects.for_tenant(mailbox.tenant).create(
            mailbox=mailbox, folder="INBOX", uidvalidity=1, uid=uid, raw=raw, size=len(raw),
            message_id=found.group(1).decode() if found else "",
            from_address=sender.group(1).decode(errors="replace").strip() if sender else "",
        )
        ids.append(row.pk)
    return ids


def same_batch_thread(tenant: Tenant) -> list[bytes]:
    """An update on the tenant's first shipment, a pickup request, then in the same batch a reply
    to it and an update naming the shipment it makes (the tenant's second)."""
    request_id = f"<req-{uuid.uuid4().hex}@shipper.test>"
    request = re.sub(rb"(?im)^Message-ID:[^\r\n]*", b"Message-ID: " + request_id.encode(),
                     (CORPUS / "002.eml").read_bytes(), count=1)
    sender = re.search(rb"(?im)^From:([^\r\n]*)", request)
    assert sender is not None
    number = shipment_number_format(tenant=tenant, sequence=2)

    def mail(subject: str, body: str, extra: str = "") -> bytes:
        return (f"From:{sender.group(1).decode()}\r\nTo: dispatch@acme.test\r\nSubject: {subject}\r\n"
                f"Message-ID: <{uuid.uuid4().hex}@shipper.test>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n"
                f"{extra}\r\n{body}\r\n").encode()

    first = shipment_number_format(tenant=tenant, sequence=1)
    return [
        mail(f"{first} delivered", f"Shipment {first} was delivered this morning, POD to follow."),
        request,
        mail("Re: pickup", "Can you confirm the driver for this one?", f"In-Reply-To: {request_id}\r\n"),
        mail(f"{number} delivered", f"Shipment {number} was delivered this morning, POD to follow."),
    ]


def prepared_ahead(tenant: Tenant, ids: list[int]) -> Any:
    """What the intake workers compute for these messages (mailboxes/prepare.py), computed here."""
    from mailboxes.classification import tenant_rules
    from mailboxes.intake import intake_preparers
    from mailboxes.prepare import _prepare

    raws = dict(InboundMessage.objects.for_tenant(tenant).filter(pk__in=ids).values_list("pk", "raw"))
    return dict(_prepare([(pk, bytes(raw)) for pk, raw in raws.items()], tenant.ref_prefix, tenant_rules(tenant),
                         intake_preparers())).get


@pytest.mark.parametrize("ahead", [False, True], ids=["classified here", "classified by the workers"])
def test_it_files_replies_to_a_shipment_made_earlier_in_the_same_batch(
    acme: Tenant, globex: Tenant, alice: Staff, charlie: Staff, ahead: bool
) -> None:
    for tenant in (acme, globex):
        shipment_create(tenant=tenant)  # the tenant's counter exists: the batch numbers its own
    batched = store_raw(make_mailbox(alice, "dispatch@acme.test"), same_batch_thread(acme))
    alone = store_raw(make_mailbox(charlie, "dispatch@acme.test"), same_batch_thread(globex))

    messages_process(message_ids=batched, prepared=prepared_ahead(acme, batched) if ahead else None)
    for pk in alone:
        message_process(message_id=pk)

    made = outcome(acme)
    assert made == outcome(globex)
    number = shipment_number_format(tenant=acme, sequence=2)
    assert [(n, uid) for n, uid, *_ in made["shipments"]] == [(shipment_number_format(tenant=acme, sequence=1), None),
                                                               (number, 2)]
    assert sorted(uid for n, kind, uid in made["activities"] if n == number) == [2, 3, 4]


def replies_thread(tenant: Tenant, mailbox: Mailbox) -> list[bytes]:
    """After a reply to unknown mail (the batch looks up all its reply ids then), an update on the
    tenant's first shipment, a reply to that update and a reply to our mail about the shipment:
    all in one batch, the two replies found through what the batch filed and what we sent."""
    first = Shipment.objects.for_tenant(tenant).get(sequence=1)
    ours = f"<ours-{uuid.uuid4().hex}@tms.test>"
    OutboundMessage.objects.for_tenant(tenant).create(
        staff=mailbox.staff, mailbox=mailbox, from_address=mailbox.email_address, message_id=ours,
        related=first.related_key, subject=f"{first.subject_tag} Your quote",
    )
    update_id = f"<update-{uuid.uuid4().hex}@shipper.test>"

    def mail(subject: str, body: str, message_id: str = "", extra: str = "") -> bytes:
        return (f"From: Gus <gus@sawmill.example>\r\nTo: dispatch@acme.test\r\nSubject: {subject}\r\n"
                f"Message-ID: {message_id or f'<{uuid.uuid4().hex}@shipper.test>'}\r\n"
                f"Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n{extra}\r\n{body}\r\n").encode()

    return [
        mail("Re: lunch", "See you at noon.", extra=f"In-Reply-To: <{uuid.uuid4().hex}@elsewhere.test>\r\n"),
        mail(f"{first.number} delivered", f"Shipment {first.number} was delivered this morning, POD to follow.",
             message_id=update_id),
        mail("Re: delivered", "Thanks, and the invoice?", extra=f"In-Reply-To: {update_id}\r\n"),
        mail("Re: Your quote", "Looks good, book it.", extra=f"In-Reply-To: {ours}\r\nReferences: {ours}\r\n"),
    ]


def test_it_files_replies_to_mail_filed_earlier_in_the_same_batch(
    acme: Tenant, globex: Tenant, alice: Staff, charlie: Staff
) -> None:
    boxes = {acme: make_mailbox(alice, "dispatch@acme.test"), globex: make_mailbox(charlie, "dispatch@acme.test")}
    for tenant in boxes:
        shipment_create(tenant=tenant)
    batched = store_raw(boxes[acme], replies_thread(acme, boxes[acme]))
    alone = store_raw(boxes[globex], replies_thread(globex, boxes[globex]))

    with CaptureQueriesContext(connection) as queries:
        messages_process(message_ids=batched, prepared=prepared_ahead(acme, batched))
    for pk in alone:
        message_process(message_id=pk)

    made = outcome(acme)
    assert made == outcome(globex)
    first = shipment_number_format(tenant=acme, sequence=1)
    assert sorted(uid for n, kind, uid in made["activities"] if n == first and uid) == [2, 3, 4]
    # The reply ids of the whole batch were looked up once (our mail, then the mail filed).
    looked_up = [q["sql"] for q in queries.captured_queries if "mailboxes_outboundmessage" in q["sql"]
                 and "related" in q["sql"]]
    assert len(looked_up) == 1


def test_it_files_a_batch_of_new_senders_under_the_customers_of_their_domains(acme: Tenant, alice: Staff) -> None:
    sawmill = customer_create(tenant=acme, name="Inland Sawmill", email_domains=["sawmill.example"])
    customer_create(tenant=acme, name="Other Co", email_domains=["other.example"])
    mailbox = make_mailbox(alice, "dispatch@acme.test")
    senders = ["Gus <gus@sawmill.example>", "ann@SAWMILL.example", "joe@gmail.com", "Bo <bo@nowhere.example>"]
    raws = [build_mail(sender=sender, to="dispatch@acme.test", subject="Quote Dallas, TX 75201 to Atlanta, GA 30301",
                       body="Please quote 2 pallets, 1200 lbs, dry van, pickup next Monday.") for sender in senders]
    ids = store_raw(mailbox, raws)

    with CaptureQueriesContext(connection) as queries:
        messages_process(message_ids=ids, prepared=prepared_ahead(acme, ids))

    contacts = {c.email: c.customer for c in Contact.objects.for_tenant(acme)}
    assert contacts == {"gus@sawmill.example": sawmill, "ann@sawmill.example": sawmill, "joe@gmail.com": None,
                        "bo@nowhere.example": None}
    domains = [q for q in queries.captured_queries if "shipments_customerdomain" in q["sql"]]
    assert len(domains) == 1  # the domains of all the batch's senders, once


def test_it_numbers_a_batch_after_shipments_made_meanwhile_elsewhere(acme: Tenant, alice: Staff) -> None:
    shipment_create(tenant=acme)
    ids = store_corpus(make_mailbox(alice, "dispatch@acme.test"))

    messages_process(message_ids=ids)
    later = shipment_create(tenant=acme)

    sequences = sorted(Shipment.objects.for_tenant(acme).values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))  # no gap, no reuse
    assert later.sequence == sequences[-1]


def test_it_makes_the_same_with_what_the_intake_workers_prepared(
    acme: Tenant, globex: Tenant, alice: Staff, charlie: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailboxes.classification import tenant_rules
    from mailboxes.intake import intake_preparers
    from mailboxes.prepare import _prepare
    from shipments import services

    prepared_ids = store_corpus(make_mailbox(alice, "dispatch@acme.test"))
    alone = store_corpus(make_mailbox(charlie, "dispatch@acme.test"))
    raws = dict(InboundMessage.objects.for_tenant(acme).filter(pk__in=prepared_ids).values_list("pk", "raw"))
    # What the workers compute (mailboxes/prepare.py), computed here: the classification and the
    # handlers' companions (the shipments excerpt, the documents' text).
    ready = dict(_prepare([(pk, bytes(raw)) for pk, raw in raws.items()], acme.ref_prefix, tenant_rules(acme),
                          intake_preparers()))
    assert all("shipments.intake.prepare" in p.extras for p in ready.values() if not p.noise)
    excerpts: list[int] = []
    real = services.message_excerpt

    def counting(raw: Any) -> str:
        excerpts.append(1)
        return real(raw)

    monkeypatch.setattr(services, "message_excerpt", counting)

    messages_process(message_ids=prepared_ids, prepared=ready.get)
    assert excerpts == []  # every excerpt came from the workers
    for pk in alone:
        message_process(message_id=pk)

    assert outcome(acme) == outcome(globex)
    assert excerpts


def _put(mailbox: Mailbox, uid: int, raw: bytes, message_id: str) -> InboundMessage:
    raw = re.sub(rb"(?im)^Message-ID:[^\r\n]*", b"Message-ID: " + message_id.encode(), raw, count=1)
    sender = re.search(rb"(?im)^From:([^\r\n]*)", raw)
    return InboundMessage.objects.for_tenant(mailbox.tenant).create(
        mailbox=mailbox, folder="INBOX", uidvalidity=1, uid=uid, message_id=message_id, raw=raw, size=len(raw),
        from_address=sender.group(1).decode(errors="replace").strip() if sender else "")


@pytest.mark.django_db(transaction=True)
def test_a_conflict_of_the_batch_shipments_is_not_blamed_on_the_message_that_named_them() -> None:
    """A copy of a quote is filed by a concurrent intake (mailbox A) while a batch of mailbox B
    holds [the copy, a reply to it]: the reply makes the batch insert its pending shipment early,
    which conflicts with the concurrent one. That is the batch's conflict, not the reply's: the
    batch runs one message at a time and both messages are processed, neither failed."""
    import classifier

    tenant = make_tenant("race", "Race Freight")
    shipment_create(tenant=tenant)  # the counter row exists: the batch keeps its shipments pending
    a = make_mailbox(make_staff(tenant, "a@race.test"), "a@race.test")
    b = make_mailbox(make_staff(tenant, "b@race.test"), "b@race.test")
    quote = next(p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))
                 if classifier.classify(p.read_bytes()).category == "quote")
    key = "<copy-123@x.test>"
    copy_a = _put(a, 1, quote, key)
    copy_b = _put(b, 1, quote, key)
    reply = (b"From: Gus <gus@sawmill.example>\r\nTo: b@race.test\r\nSubject: Re: quote\r\n"
             b"Message-ID: x\r\nIn-Reply-To: " + key.encode() + b"\r\n\r\nThanks, please also add liftgate.\r\n")
    reply_b = _put(b, 2, reply, "<reply-1@x.test>")
    filed = threading.Event()
    waited: list[bool] = []
    errors: list[BaseException] = []

    def concurrent_intake() -> None:
        # Files the copy of mailbox A and holds its transaction (and the tenant's counter row) until
        # the batch waits on it: the batch has then looked for the copy's shipment and not found it.
        try:
            with transaction.atomic():
                shipment_create(tenant=tenant, source_message=InboundMessage.unscoped.get(pk=copy_a.pk))
                filed.set()
                deadline = time.monotonic() + 60  # a safety net only; the loop ends on the lock wait
                with connection.cursor() as cursor:
                    while time.monotonic() < deadline:
                        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                       " AND datname = current_database() AND pid <> pg_backend_pid()")
                        if cursor.fetchone()[0]:
                            waited.append(True)
                            break
                        time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)
        finally:
            filed.set()
            connection.close()

    thread = threading.Thread(target=concurrent_intake)
    thread.start()
    assert filed.wait(60)
    outcomes = messages_process(message_ids=[copy_b.pk, reply_b.pk])
    thread.join(60)
    assert not errors and waited == [True]  # the batch really ran into the concurrent copy

    rows = {m.pk: (m.status, m.attempts, m.error) for m in InboundMessage.unscoped.filter(pk__in=[copy_b.pk, reply_b.pk])}
    assert rows[reply_b.pk] == ("processed", 1, ""), f"the reply was blamed: {rows[reply_b.pk]}"
    assert rows[copy_b.pk] == ("processed", 1, "")
    reply_outcome = outcomes[reply_b.pk]
    assert reply_outcome is not None and reply_outcome.status == "processed"
    # The copy found the concurrent shipment rather than making a second one; the reply is on it.
    shipment = Shipment.unscoped.get(tenant=tenant, source_message=copy_a.pk)
    assert Shipment.unscoped.filter(tenant=tenant).count() == 2  # the first one and the copy's
    assert set(Activity.unscoped.filter(shipment=shipment).values_list("inbound_message", flat=True)) >= {
        copy_a.pk, reply_b.pk}
    sequences = sorted(Shipment.unscoped.filter(tenant=tenant).values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("counter_exists", [True, False])
def test_a_batch_locks_the_counter_before_it_inserts_a_new_contact(
    counter_exists: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch takes its locks in one order - the tenant's counter, then contacts - so two
    workers of one tenant never deadlock over a new sender (one inserts the contact and waits for
    the counter, the other holds the counter and inserts the same contact). Paused just before its
    first new contact, the batch already holds the counter row (made first when the tenant had
    none)."""
    from shipments import services
    from shipments.models import ShipmentCounter

    tenant = make_tenant("order", "Lock Order Freight")
    if counter_exists:
        shipment_create(tenant=tenant)
    mailbox = make_mailbox(make_staff(tenant, "d@order.test"), "d@order.test")
    raws = [build_mail(sender=f"New Sender {n} <new{n}@sender.example>", to="d@order.test",
                       subject="Quote Dallas, TX 75201 to Atlanta, GA 30301",
                       body="Please quote 2 pallets, 1200 lbs, dry van, pickup next Monday.") for n in range(2)]
    ids = store_raw(mailbox, raws)
    paused, resume = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    make = services._contact_make

    def pausing_make(**kwargs: Any) -> Any:
        if not paused.is_set():
            paused.set()
            resume.wait(60)
        return make(**kwargs)

    monkeypatch.setattr(services, "_contact_make", pausing_make)

    def batch() -> None:
        try:
            messages_process(message_ids=ids)
        except BaseException as exc:
            errors.append(exc)
        finally:
            paused.set()
            connection.close()

    thread = threading.Thread(target=batch)
    thread.start()
    try:
        assert paused.wait(60)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '100ms'")
            table = ShipmentCounter._meta.db_table
            if counter_exists:
                cursor.execute(f"SELECT 1 FROM {table} WHERE tenant_id = %s FOR UPDATE", [tenant.pk])
            else:  # the batch's row is not committed: making it too has to wait for the batch
                cursor.execute(f"INSERT INTO {table} (tenant_id, last_value) VALUES (%s, 0)"
                               " ON CONFLICT (tenant_id) DO NOTHING", [tenant.pk])
            pytest.fail("the counter was free: the batch inserts contacts before it locks the counter")
    except Exception as exc:  # the expected outcome: the counter is the batch's until it commits
        if "lock timeout" not in str(exc):
            raise
    finally:
        resume.set()
        thread.join(60)
    assert not errors
    sequences = sorted(Shipment.objects.for_tenant(tenant).values_list("sequence", flat=True))
    assert sequences == list(range(1, 2 + counter_exists + 1))  # both quotes numbered, no gap
