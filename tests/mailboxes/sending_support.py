"""Shared by the sending tests: settings for the test bed, fresh users, mailboxes, a clock."""

from __future__ import annotations

import email
import email.policy
import time
import uuid
from typing import Any

import pytest
from imapclient import IMAPClient

from mailboxes.models import Mailbox
from tests.factories import make_mailbox
from tms.accounts.models import Staff

PASSWORD = "sender-pass"


class FakeClock:
    """Seconds like time.time, moved by the test: throttles and backoff without sleeping."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def send_settings(settings: Any, certs: Any) -> Any:
    settings.MAILBOX_ALLOW_PRIVATE_HOSTS = True
    settings.MAILBOX_CA_FILE = str(certs.ca)
    settings.REDIS_URL = ""
    settings.RELAY_SMTP_URL = ""
    settings.OUTBOUND_RETRY_SECONDS = 60
    settings.OUTBOUND_MAX_ATTEMPTS = 3
    settings.MAILBOX_MESSAGE_ID_DOMAIN = "tms.test.example"
    return settings


def new_address() -> str:
    return f"s{uuid.uuid4().hex[:12]}@example.test"


def imap_mailbox(staff: Staff, dovecot: Any, *, smtp_port: int, smtp_security: str = "starttls",
                 address: str | None = None, smtp_users: Any = None, **fields: Any) -> Mailbox:
    """An active IMAP/SMTP mailbox of a fresh Dovecot user; SMTP on the given port of 127.0.0.1
    (the user is added to smtp_users, e.g. the aiosmtpd servers, when given)."""
    address = address or new_address()
    dovecot.add_user(address, PASSWORD)
    if smtp_users is not None:
        smtp_users.add_user(address, PASSWORD)
    values: dict[str, Any] = {
        "imap_port": dovecot.imaps_port, "imap_security": "ssl", "smtp_port": smtp_port,
        "smtp_security": smtp_security, "secret": PASSWORD, "username": address,
    }
    values.update(fields)
    return make_mailbox(staff, address, **values)


def sent_folder_message_ids(dovecot: Any, address: str, folder: str = "Sent") -> list[str]:
    """The Message-IDs in the user's Sent folder, read over IMAP, with their \\Seen flags checked."""
    client = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl=True, ssl_context=dovecot.certs.client_context())
    try:
        client.login(address, PASSWORD)
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        found = []
        for _uid, data in client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]).items():
            msg = email.message_from_bytes(data[b"BODY[]"], policy=email.policy.default)
            assert b"\\Seen" in data[b"FLAGS"]
            found.append(str(msg["Message-ID"]).strip())
        return found
    finally:
        client.logout()


def sent_folder_raw(dovecot: Any, address: str, message_id: str) -> bytes:
    client = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl=True, ssl_context=dovecot.certs.client_context())
    try:
        client.login(address, PASSWORD)
        client.select_folder("Sent", readonly=True)
        uids = client.search(["HEADER", "Message-ID", message_id])
        assert len(uids) == 1
        raw: bytes = client.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]
        return raw
    finally:
        client.logout()
