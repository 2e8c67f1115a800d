"""Attachments of processed messages become documents, are read and matched to shipments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from documents.models import Document, StoredFile
from mailboxes.models import InboundMessage, Mailbox
from shipments.models import Activity
from tests.documents.pdfs import bomb_pdf, broken_pdf, encrypted_pdf, make_pdf
from tests.documents.support import corpus, corpus_labels, mail, receive, shipment
from tests.factories import make_mailbox, make_staff
from tms.accounts.models import Staff, Tenant

pytestmark = pytest.mark.django_db


def docs(message: InboundMessage) -> list[Document]:
    return list(Document.objects.for_tenant(message.tenant).filter(source_message=message).order_by("position"))


def test_it_matches_by_a_ref_in_the_file_name(inbox: Mailbox, acme: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    target = shipment(acme, 105677)
    message = receive(inbox, corpus("079.eml"), django_capture_on_commit_callbacks)

    [document] = docs(message)
    assert message.status == InboundMessage.Status.PROCESSED
    assert (document.filename, document.kind, document.status) == ("POD_SHP105677.pdf", "pod", "processed")
    assert document.shipment == target and document.match_state == "matched"
    assert document.matched_via.startswith("file name")
    assert "PROOF OF DELIVERY" in document.extracted_text
    activity = Activity.objects.for_tenant(acme).get(shipment=target, kind=Activity.Kind.DOCUMENT)
    assert "POD_SHP105677.pdf" in activity.text


def test_a_ref_in_the_file_name_wins_over_the_pdf_text_and_the_message(
    inbox: Mailbox, acme: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    named, in_text, in_message = shipment(acme, 200001), shipment(acme, 200002), shipment(acme, 200003)
    raw = mail("Paperwork for SHP-200003", attachments=[
        ("POD_SHP-200001.pdf", "application/pdf", make_pdf("PROOF OF DELIVERY\nBroker ref: SHP-200002")),
        ("scan_0042.pdf", "application/pdf", make_pdf("BILL OF LADING\nRef SHP-200002", compress=True)),
        ("notes.pdf", "application/pdf", make_pdf("Nothing to see here")),
    ])
    message = receive(inbox, raw, django_capture_on_commit_callbacks)

    by_name, by_text, by_message = docs(message)
    assert by_name.shipment == named and by_name.matched_via.startswith("file name")
    assert by_text.shipment == in_text and by_text.matched_via.startswith("document text")
    assert by_text.kind == "bol"
    # The message names two (its subject and an attachment's name): no guess for the third file.
    assert by_message.shipment is None and by_message.match_state == "unmatched"
    assert sorted(by_message.candidates) == [named.number, in_message.number]


def test_a_ref_only_in_the_message_matches(inbox: Mailbox, acme: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    target = shipment(acme, 105533)
    message = receive(inbox, corpus("003.eml"), django_capture_on_commit_callbacks)

    [document] = docs(message)
    assert (document.filename, document.kind) == ("PackingList_PO77102.pdf", "packing_list")
    assert document.shipment == target and document.matched_via.startswith("the message")


def test_a_po_number_known_on_a_shipment_wins_over_the_message(
    inbox: Mailbox, acme: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    shipment(acme, 105533)
    by_po = shipment(acme, 300001, po_number="77102")
    message = receive(inbox, corpus("003.eml"), django_capture_on_commit_callbacks)

    [document] = docs(message)
    assert document.shipment == by_po and document.matched_via == "number in the document: PO 77102"


def test_it_matches_a_pro_number_in_the_text(inbox: Mailbox, acme: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    target = shipment(acme, 400001, pro_number="RT-33817")
    raw = mail("Delivery receipt", attachments=[
        ("receipt.pdf", "application/pdf", make_pdf("DELIVERY RECEIPT\nPRO: RT-33817\nDelivered 10:42")),
    ])
    [document] = docs(receive(inbox, raw, django_capture_on_commit_callbacks))
    assert document.shipment == target and "PRO RT-33817" in document.matched_via


def test_it_files_the_corpus_attachments_on_the_right_shipments(
    inbox: Mailbox, acme: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    labels = corpus_labels()
    with_files = {name: row for name, row in labels.items() if row["attachments"]}
    for row in with_files.values():
        for ref in row["shipment_refs"]:
            shipment(acme, int(ref.split("-")[1]))

    for name, row in sorted(with_files.items()):
        message = receive(inbox, corpus(name), django_capture_on_commit_callbacks)
        found = docs(message)
        assert message.status == InboundMessage.Status.PROCESSED, name
        assert [(d.filename, d.kind) for d in found] == [(a["filename"], a["kind"]) for a in row["attachments"]], name
        assert all(d.status == "processed" for d in found), name
        if row["shipment_refs"]:
            [ref] = row["shipment_refs"]
            expected = f"SHP-{int(ref.split('-')[1]):06d}"
            assert [d.shipment.number if d.shipment else None for d in found] == [expected] * len(found), name
        elif row["category"] in ("quote", "pickup"):
            # The attachments of a request are filed on the shipment the request created.
            created = message.shipment
            assert [d.shipment for d in found] == [created] * len(found), name
        else:
            assert all(d.match_state == "unmatched" for d in found), name
    images = Document.objects.for_tenant(acme).filter(content_type="image/png")
    assert images.count() == 2 and all(d.extracted_text == "" and d.status == "processed" for d in images)


def test_a_broken_pdf_fails_alone(inbox: Mailbox, acme: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    target = shipment(acme, 105999)
    raw = mail("Docs for SHP-105999", attachments=[
        ("BOL_SHP105999.pdf", "application/pdf", make_pdf("BILL OF LADING\nRef SHP-105999")),
        ("POD_SHP105999.pdf", "application/pdf", broken_pdf()),
        ("manifest.csv", "text/csv", b"ref,pieces\nSHP-105999,6\n"),
        ("locked.pdf", "application/pdf", encrypted_pdf("BILL OF LADING SHP-105999")),
        ("bomb.pdf", "application/pdf", bomb_pdf(64 * 1024 * 1024)),
    ])
    message = receive(inbox, raw, django_capture_on_commit_callbacks)

    good, broken, csv_doc, locked, bomb = docs(message)
    assert message.status == InboundMessage.Status.PROCESSED
    assert good.status == "processed" and good.shipment == target
    assert csv_doc.status == "processed" and csv_doc.shipment == target and "SHP-105999\t6" in csv_doc.extracted_text
    assert broken.status == "failed" and broken.error.startswith("malformed PDF")
    assert locked.status == "failed" and locked.error.startswith("encrypted PDF")
    assert bomb.status == "failed" and "decompression bomb" in bomb.error
    for failed in (broken, locked, bomb):
        assert failed.match_state == "unmatched" and failed.shipment is None and failed.extracted_text == ""


def test_an_oversized_file_is_recorded_as_failed_and_not_stored(
    inbox: Mailbox, acme: Tenant, doc_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    doc_settings.DOCUMENT_MAX_BYTES = 10_000
    raw = mail("Big scan", attachments=[("huge.pdf", "application/pdf", make_pdf("x" * 20_000))])
    message = receive(inbox, raw, django_capture_on_commit_callbacks)

    [document] = docs(message)
    assert message.status == InboundMessage.Status.PROCESSED
    assert document.status == "failed" and document.error.startswith("file too large")
    assert document.stored is None and not StoredFile.objects.for_tenant(acme).exists()


def test_identical_content_is_stored_once_per_tenant(
    inbox: Mailbox, acme: Tenant, globex: Tenant, doc_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    pdf = make_pdf("RATE CONFIRMATION\nShipment SHP-100123")
    first = receive(inbox, mail("RC", attachments=[("rc.pdf", "application/pdf", pdf)]), django_capture_on_commit_callbacks)
    second = receive(inbox, mail("RC again", attachments=[("RC copy.pdf", "application/pdf", pdf)]),
                     django_capture_on_commit_callbacks)
    outsider = make_mailbox(make_staff(globex, "ops@globex.test"), "ops@globex.test")
    theirs = receive(outsider, mail("RC", attachments=[("rc.pdf", "application/pdf", pdf)]),
                     django_capture_on_commit_callbacks)

    [a], [b], [c] = docs(first), docs(second), docs(theirs)
    assert a.pk != b.pk and (a.filename, b.filename) == ("rc.pdf", "RC copy.pdf")
    assert a.stored_id == b.stored_id and a.sha256 == b.sha256
    assert StoredFile.objects.for_tenant(acme).count() == 1
    assert c.stored_id != a.stored_id  # another tenant never shares a stored copy
    stored_files = [p for p in Path(doc_settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert len(stored_files) == 2 and all(p.read_bytes() == pdf for p in stored_files)
    assert all(p.name == a.sha256 and a.filename not in str(p) for p in stored_files)


def test_a_batch_stores_new_content_once_and_takes_what_was_stored_meanwhile(
    acme: Tenant, doc_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stored_files_for: content stored before is found, new content inserted (its ids from the
    INSERT), and content a concurrent intake stored after the lookup - the INSERT skips it on the
    unique constraint - ends up as that intake's row."""
    import hashlib

    from documents import services

    old, new, raced = b"stored before", b"new content", b"stored meanwhile"
    digest = {content: hashlib.sha256(content).hexdigest() for content in (old, new, raced)}
    before = services.stored_file_for(tenant=acme, payload=old)
    theirs: list[StoredFile] = []
    written = services._stored_file_written

    def concurrent(*, tenant: Tenant, payload: bytes, digest: str) -> StoredFile:
        if payload == raced and not theirs:  # another intake stores it between the lookup and the INSERT
            row = written(tenant=tenant, payload=payload, digest=digest)
            row.save()
            theirs.append(row)
        return written(tenant=tenant, payload=payload, digest=digest)

    monkeypatch.setattr(services, "_stored_file_written", concurrent)
    found = services.stored_files_for(tenant=acme, payloads={digest[c]: c for c in (old, new, raced)})

    rows = {row.sha256: row for row in StoredFile.objects.for_tenant(acme)}
    assert set(rows) == set(found) == set(digest.values())
    assert {d: row.pk for d, row in found.items()} == {d: row.pk for d, row in rows.items()}
    assert found[digest[old]].pk == before.pk and found[digest[raced]].pk == theirs[0].pk
    assert (rows[digest[new]].size, rows[digest[new]].file.name) == (len(new), found[digest[new]].file.name)
    assert rows[digest[new]].created_at is not None


def test_signature_logos_and_inline_images_are_skipped(
    inbox: Mailbox, django_capture_on_commit_callbacks: Any
) -> None:
    png = bytes.fromhex("89504e470d0a1a0a") + b"\x00" * 300
    raw = mail("Docs", attachments=[("image001.png", "image/png", png), ("photo_damage.png", "image/png", png)],
               inline_images=[("logo.png", png)])
    message = receive(inbox, raw, django_capture_on_commit_callbacks)
    assert [d.filename for d in docs(message)] == ["photo_damage.png"]


def test_it_is_safe_to_run_twice(inbox: Mailbox, acme: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    from documents import services
    from documents.tasks import document_process_task

    target = shipment(acme, 105677)
    message = receive(inbox, corpus("079.eml"), django_capture_on_commit_callbacks)
    [document] = docs(message)
    import classifier

    verdict = classifier.classify(bytes(message.raw or b""), shipment_prefix=acme.ref_prefix)
    again = services.documents_record_from_message(message=message, attachments=verdict.attachments)
    assert again.created == []
    assert document_process_task(document.pk) == "processed"  # a redelivered task finds it done
    assert Activity.objects.for_tenant(acme).filter(shipment=target, kind="document").count() == 1
    assert document_process_task(10**9) == "gone"


def test_a_failed_attachment_never_fails_the_message(
    inbox: Mailbox, bob: Staff, django_capture_on_commit_callbacks: Any
) -> None:
    raw = mail("Just junk", attachments=[("junk.pdf", "application/pdf", b"not a pdf at all")])
    message = receive(inbox, raw, django_capture_on_commit_callbacks)
    [document] = docs(message)
    assert message.status == InboundMessage.Status.PROCESSED and message.error == ""
    assert document.status == "failed" and "PDF header" in document.error


def test_a_batch_of_documents_is_read_and_filed_as_each_document_alone_is(
    inbox: Mailbox, acme: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from documents import services
    from mailboxes.intake import messages_process
    from tests.documents.support import store
    from tms.db import rows_update

    labels = corpus_labels()
    with_files = sorted(name for name, row in labels.items() if row["attachments"])
    for name in with_files:
        for ref in labels[name]["shipment_refs"]:
            shipment(acme, int(ref.split("-")[1]))
    ids = [store(inbox, corpus(name)).pk for name in with_files]
    with django_capture_on_commit_callbacks(execute=False):  # recorded, left pending
        messages_process(message_ids=ids)
    pending = list(Document.objects.for_tenant(acme).order_by("pk"))
    assert len(pending) > 10 and {d.status for d in pending} == {"pending"}
    before = Activity.objects.for_tenant(acme).count()

    def outcome() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        documents = Document.objects.for_tenant(acme).order_by("pk").values_list(
            "pk", "kind", "status", "error", "extracted_text", "shipment", "match_state", "matched_via", "candidates")
        timeline = Activity.objects.for_tenant(acme).filter(kind="document").order_by("pk").values_list(
            "shipment", "actor", "text")
        return list(documents), list(timeline)

    with CaptureQueriesContext(connection) as queries:
        assert services.documents_process(document_ids=[d.pk for d in pending]) == []
    together = outcome()
    Activity.objects.for_tenant(acme).filter(kind="document").delete()
    rows_update(objects=pending, field_names=services._OUTCOME_FIELDS)  # pending again, as recorded
    for document in pending:
        services.document_process(document_id=document.pk)

    assert outcome() == together
    assert {status for _, _, status, *_ in together[0]} == {"processed"}
    assert len(together[1]) == Activity.objects.for_tenant(acme).count() - before > 5
    # One SELECT to read, then in one transaction: the locking SELECT, the shipments for all the
    # documents, the timeline entries in one INSERT and the outcomes in one UPDATE (of arrays).
    statements = [q["sql"].split(" times: ")[-1].split()[0] for q in queries.captured_queries]  # executemany: "N times: "
    assert statements == ["SELECT", "SAVEPOINT", "SELECT", "SELECT", "INSERT", "UPDATE", "RELEASE"]


def test_the_read_ahead_is_for_messages_with_attachments_when_the_processor_runs_here(
    doc_settings: Any, acme: Tenant
) -> None:
    import classifier
    from documents import intake
    from tms.celery import app

    plain = classifier.classify(mail("No files here"), shipment_prefix=acme.ref_prefix)
    raw = mail("Docs", attachments=[("BOL_SHP105999.pdf", "application/pdf", make_pdf("BILL OF LADING"))])
    with_file = classifier.classify(raw, shipment_prefix=acme.ref_prefix)
    # app.conf follows the settings (doc_settings: eager); set on app.conf, a value would stay.
    assert app.conf.task_always_eager
    assert intake.prepare(mail("No files here"), plain) is None
    ahead = intake.prepare(raw, with_file)
    assert ahead is not None
    [text] = ahead["texts"].values()
    assert "BILL OF LADING" in text.text
    doc_settings.CELERY_TASK_ALWAYS_EAGER = False  # a Celery worker elsewhere reads the file: nothing ahead
    assert intake.prepare(raw, with_file) is None


def read_ahead(tenant: Tenant, ids: list[int]) -> Any:
    """What the intake workers compute for these messages (mailboxes/prepare.py), computed here:
    the classification and the handlers' companions, the documents' text included."""
    from mailboxes.classification import tenant_rules
    from mailboxes.intake import intake_preparers
    from mailboxes.prepare import _prepare

    raws = dict(InboundMessage.objects.for_tenant(tenant).filter(pk__in=ids).values_list("pk", "raw"))
    ready = dict(_prepare([(pk, bytes(raw)) for pk, raw in raws.items()], tenant.ref_prefix, tenant_rules(tenant),
                          intake_preparers()))
    assert any(p.extras.get("documents.intake.prepare") for p in ready.values())
    return ready.get


def filed(tenant: Tenant) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every outcome column of the tenant's documents and their timeline entries, comparable
    across tenants (message uids and shipment numbers, not ids)."""
    rows = Document.objects.for_tenant(tenant).order_by("source_message__uid", "position").values_list(
        "source_message__uid", "position", "filename", "kind", "status", "error", "extracted_text", "stored__sha256",
        "hints", "candidates", "shipment__number", "match_state", "matched_via", "matched_by",
        "processed_at", "matched_at")
    documents = [(*row[:-2], row[-2] is not None, row[-1] is not None) for row in rows]
    timeline = Activity.objects.for_tenant(tenant).filter(kind="document").order_by("shipment__number", "text")
    return documents, list(timeline.values_list("shipment__number", "actor", "text"))


UNREADABLE = mail("Docs for SHP-105999", attachments=[  # one message, encrypted once
    ("POD_SHP105999.pdf", "application/pdf", broken_pdf()),
    ("locked.pdf", "application/pdf", encrypted_pdf("BILL OF LADING SHP-105999")),
    ("huge.csv", "text/csv", b"x" * (3 * 1024 * 1024)),
])


def store_files_batch(mailbox: Mailbox) -> list[int]:
    """The corpus messages with attachments (some of them make the shipment their files belong
    to) and the shipments the others' files name, then files that cannot be read and one too
    large to keep, stored with the same uids for every tenant."""
    from tests.documents.support import store

    labels = corpus_labels()
    names = sorted(name for name, row in labels.items() if row["attachments"])
    for name in names:
        for ref in labels[name]["shipment_refs"]:
            shipment(mailbox.tenant, int(ref.split("-")[1]))
    rows = [store(mailbox, corpus(name)) for name in names] + [store(mailbox, UNREADABLE)]
    for uid, row in enumerate(rows, start=1):
        row.uid = uid
        row.save(update_fields=["uid"])
    return [row.pk for row in rows]


def test_a_batch_read_ahead_files_its_documents_as_the_processor_does(
    inbox: Mailbox, acme: Tenant, globex: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    from mailboxes.intake import messages_process

    ahead = store_files_batch(inbox)
    processed = store_files_batch(make_mailbox(make_staff(globex, "dispatch@globex.test"), "dispatch@globex.test"))
    with django_capture_on_commit_callbacks(execute=True) as queued:
        messages_process(message_ids=ahead, prepared=read_ahead(acme, ahead))
    assert queued == []  # finished in the batch: no processor queued
    with django_capture_on_commit_callbacks(execute=True) as queued:
        messages_process(message_ids=processed)  # nothing read ahead: pending, then the processor
    assert len(queued) == 1

    documents, timeline = filed(acme)
    assert (documents, timeline) == filed(globex)
    assert len(documents) > 10 and {row[4] for row in documents} == {"processed", "failed"}
    assert len(timeline) > 5 and any(row[11] == "matched" for row in documents)


def test_a_batch_that_fails_at_its_end_leaves_no_document_finished_twice(
    inbox: Mailbox, acme: Tenant, globex: Tenant, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from documents import services
    from mailboxes.intake import messages_process

    ahead = store_files_batch(inbox)
    processed = store_files_batch(make_mailbox(make_staff(globex, "dispatch@globex.test"), "dispatch@globex.test"))
    real, failed = services.rows_insert, list[int]()

    def timeline_fails_once(objects: Any, **options: Any) -> Any:
        if objects and isinstance(objects[0], Activity) and not failed:
            failed.append(len(objects))  # the documents are inserted, finished, in the transaction
            raise RuntimeError("the database went away")
        return real(objects, **options)

    monkeypatch.setattr(services, "rows_insert", timeline_fails_once)
    with django_capture_on_commit_callbacks(execute=True):
        messages_process(message_ids=ahead, prepared=read_ahead(acme, ahead))  # then one message at a time
    with django_capture_on_commit_callbacks(execute=True):
        messages_process(message_ids=processed)

    assert failed and filed(acme) == filed(globex)
    assert {m.status for m in InboundMessage.objects.for_tenant(acme)} == {InboundMessage.Status.PROCESSED}


def test_a_document_finished_in_its_batch_matches_a_shipment_an_earlier_message_made(
    inbox: Mailbox, acme: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    from mailboxes.intake import messages_process
    from shipments.models import Shipment
    from shipments.services import shipment_create, shipment_number_format
    from tests.documents.support import store

    shipment_create(tenant=acme)  # the counter exists: the batch numbers its new shipments itself
    number = shipment_number_format(tenant=acme, sequence=2)
    messages = [
        # A file first: the documents' batch write is set up before the shipments' one.
        mail("Rates", sender="rates@broker.test", attachments=[
            ("fuel_table.pdf", "application/pdf", make_pdf("FUEL SURCHARGE TABLE"))]),
        corpus("002.eml"),  # a pickup request: the batch makes the tenant's second shipment
        # Its POD, naming it in the text alone: a ref in the message or in a file name would
        # make the shipments handler insert the batch's shipments there and then.
        mail("Paperwork", sender="driver@carrier.test", attachments=[
            ("scan_0042.pdf", "application/pdf", make_pdf(f"PROOF OF DELIVERY\nShipment {number}", compress=True))]),
    ]
    ids = [store(inbox, raw).pk for raw in messages]
    with django_capture_on_commit_callbacks(execute=True) as queued:
        messages_process(message_ids=ids, prepared=read_ahead(acme, ids))

    assert queued == []
    made = Shipment.objects.for_tenant(acme).get(number=number)
    assert made.source_message_id == ids[1]
    pod = Document.objects.for_tenant(acme).get(source_message_id=ids[2])
    assert (pod.status, pod.kind, pod.shipment, pod.match_state) == ("processed", "pod", made, "matched")
    assert pod.matched_via == f"document text: {number}" and "PROOF OF DELIVERY" in pod.extracted_text
    activity = Activity.objects.for_tenant(acme).get(shipment=made, kind=Activity.Kind.DOCUMENT)
    assert activity.text == f"Proof of delivery: scan_0042.pdf (matched by document text: {number})"
