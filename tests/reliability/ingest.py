"""An ingest to prove once-only: messages APPENDed to Dovecot mailboxes, then the accounting of what the
database and the server hold afterwards (lost, duplicated, post-processed)."""

from __future__ import annotations

import email
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db.models import Count
from imapclient import IMAPClient

from mailboxes.models import InboundMessage, Mailbox
from tests.mailboxes.reading_support import PASSWORD
from tests.reliability.support import ingest_message


def imap(dovecot: Any, address: str) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl=True,
                        ssl_context=dovecot.certs.client_context(), timeout=30)
    client.login(address, PASSWORD)
    return client


def append_many(dovecot: Any, address: str, start: int, count: int) -> list[str]:
    """APPEND count generated messages over one connection; their Message-IDs."""
    ids = []
    with imap(dovecot, address) as client:
        for n in range(start, start + count):
            message_id, raw = ingest_message(n)
            client.append("INBOX", raw)
            ids.append(message_id)
    return ids


def folder_ids(dovecot: Any, address: str, folder: str) -> list[str]:
    with imap(dovecot, address) as client:
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        out = []
        for start in range(0, len(uids), 500):
            data = client.fetch(uids[start:start + 500], ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            for item in data.values():
                header = email.message_from_bytes(item[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"])
                out.append(str(header["Message-ID"] or "").strip())
        return out


@dataclass
class Accounting:
    messages: int
    lost: int
    not_done: int
    duplicate_rows: int
    duplicate_shipments: int
    duplicate_activities: int
    inbox_left: int
    archived: int
    archived_twice: int
    archived_not_processed: int
    post_processed: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.not_done or self.duplicate_rows or self.duplicate_shipments
                    or self.duplicate_activities or self.inbox_left or self.archived_twice
                    or self.archived_not_processed) and self.archived == self.messages == self.post_processed

    def line(self, name: str) -> str:
        return (f"{name}: {self.messages} messages, {self.lost} lost, {self.duplicate_shipments} duplicate shipments, "
                f"{self.duplicate_activities} duplicate activities, {self.duplicate_rows} duplicate stored rows, "
                f"{self.not_done} not processed, post-processed {self.post_processed}/{self.messages} "
                f"(INBOX {self.inbox_left} left, Archive {self.archived}, {self.archived_twice} archived twice)")


def account(dovecot: Any, boxes: list[Mailbox], appended: list[str]) -> Accounting:
    from shipments.models import Activity, Shipment

    rows = InboundMessage.unscoped.filter(mailbox__in=boxes)
    stored = Counter(rows.values_list("message_id", flat=True))
    done = dict(rows.filter(status__in=["processed", "ignored"]).values_list("message_id", "post_processed_at"))
    wanted = set(appended)
    archived = Counter(mid for box in boxes for mid in folder_ids(dovecot, box.email_address, "Archive"))
    inbox = sum(len(folder_ids(dovecot, box.email_address, "INBOX")) for box in boxes)
    dup_shipments = (Shipment.unscoped.filter(source_message__mailbox__in=boxes).values("source_message")
                     .annotate(n=Count("id")).filter(n__gt=1).count())
    dup_activities = (Activity.unscoped.filter(inbound_message__mailbox__in=boxes)
                      .values("shipment", "inbound_message").annotate(n=Count("id")).filter(n__gt=1).count())
    return Accounting(
        messages=len(wanted),
        lost=len(wanted - set(stored)),
        not_done=len(wanted - set(done)),
        duplicate_rows=sum(1 for n in stored.values() if n > 1),
        duplicate_shipments=dup_shipments,
        duplicate_activities=dup_activities,
        inbox_left=inbox,
        archived=len(set(archived) & wanted),
        archived_twice=sum(1 for n in archived.values() if n > 1),
        archived_not_processed=len(set(archived) - set(done)),
        post_processed=sum(1 for mid in wanted if done.get(mid) is not None),
    )
