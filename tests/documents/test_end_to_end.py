"""End to end against a real Dovecot: a message with a PDF is APPENDed, `manage.py mailbox poll
--once` reads it, and the document is stored, read and filed on its shipment."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest
from django.core.management import call_command

from documents import extract
from documents.models import Document
from mailboxes.models import InboundMessage
from tests.documents.pdfs import broken_pdf, make_pdf
from tests.documents.support import mail, shipment
from tests.mailboxes.reading_support import append, make_reader, reading_settings  # noqa: F401 - fixture
from tms.accounts.models import Staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reading_settings", "doc_settings")]


def test_a_polled_pdf_is_matched_to_its_shipment(
    bob: Staff, dovecot: Any, django_capture_on_commit_callbacks: Any
) -> None:
    target = shipment(bob.tenant, 104455, bol_number="7734120")
    mailbox = make_reader(bob, dovecot)
    pdf = make_pdf("BILL OF LADING   No. 7734120\nShipper: Apex Building Supply, Tulsa, OK", compress=True)
    append(dovecot, mailbox.email_address, mail("Paperwork", attachments=[
        ("scan_0001.pdf", "application/pdf", pdf), ("scan_0002.pdf", "application/pdf", broken_pdf()),
    ]))

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("mailbox", "poll", str(mailbox.pk), "--once", "--json", stdout=out)

    counts = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (counts["new"], counts["failed"]) == (1, 0)
    message = InboundMessage.objects.for_tenant(bob.tenant).get(mailbox=mailbox)
    assert message.status == InboundMessage.Status.PROCESSED
    good, broken = Document.objects.for_tenant(bob.tenant).filter(source_message=message).order_by("position")
    assert (good.kind, good.status, good.shipment, good.matched_via) == (
        "bol", "processed", target, "number in the document: BOL 7734120")
    assert good.stored is not None and good.stored.file.read() == pdf
    assert broken.status == "failed" and broken.error.startswith("malformed PDF")


def test_a_big_poll_reads_the_documents_in_the_intake_workers_with_the_same_outcome(
    bob: Staff, dovecot: Any, settings: Any, monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Enough messages for several intake batches: the pool classifies them and reads their PDFs
    # ahead (documents.intake.prepare); the processor takes that text instead of reading again.
    settings.MAILBOX_FETCH_BATCH, settings.MAILBOX_INTAKE_BATCH, settings.MAILBOX_INTAKE_PROCESSES = 4, 2, 1
    shipment(bob.tenant, 104455, bol_number="7734120")
    parent, reads = os.getpid(), []
    real = extract.extract_text

    def counting(**kwargs: Any) -> Any:
        if os.getpid() == parent:
            reads.append(kwargs["filename"])
        return real(**kwargs)

    monkeypatch.setattr(extract, "extract_text", counting)

    def poll(processes: int) -> list[tuple[str, str, str, str, str]]:
        settings.MAILBOX_INTAKE_PROCESSES = processes
        mailbox = make_reader(bob, dovecot)
        for index in range(7):
            append(dovecot, mailbox.email_address, mail(f"Paperwork {index}", attachments=[
                (f"bol_{index}.pdf", "application/pdf",
                 make_pdf(f"BILL OF LADING   No. 7734120\nLoad {index}", compress=True)),
                (f"scan_{index}.pdf", "application/pdf", broken_pdf()),
            ]))
        with django_capture_on_commit_callbacks(execute=True):
            call_command("mailbox", "poll", str(mailbox.pk), "--once", "--json", stdout=io.StringIO())
        documents = Document.objects.for_tenant(bob.tenant).filter(source_message__mailbox=mailbox)
        return sorted((d.filename, d.status, d.error, d.extracted_text, d.matched_via) for d in documents)

    ahead = poll(1)
    assert reads == []  # every document was read in a worker
    assert len(ahead) == 14 and {status for _, status, *_ in ahead} == {"processed", "failed"}
    assert poll(0) == ahead
    assert len(reads) == 14
