"""Shared by the reading tests: a fresh Dovecot user and an active reading mailbox per test,
IMAP helpers that look at the server directly, and an intake handler that tests can steer."""

from __future__ import annotations

import email.utils
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from imapclient import IMAPClient

from mailboxes import sessions
from mailboxes.intake import IntakeContext, IntakeResult
from mailboxes.models import InboundMessage, Mailbox
from tms.accounts.models import Staff

PASSWORD = "reader-pass"
SUBJECT_HANDLER = "tests.mailboxes.reading_support.subject_handler"


class HandlerLog:
    """What subject_handler saw, and how it misbehaves: raise for some subjects, or block."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.raise_for: set[str] = set()
        self.block = threading.Event()
        self.blocked = threading.Event()
        self.block.set()

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


LOG = HandlerLog()


def subject_handler(message: InboundMessage, context: IntakeContext) -> IntakeResult:
    """Category from the subject's first word (quote/pickup/operations, else other)."""
    LOG.calls.append(message.subject)
    if not LOG.block.is_set():
        LOG.blocked.set()
        LOG.block.wait(30)
    if message.subject in LOG.raise_for:
        raise RuntimeError(f"handler cannot cope with {message.subject!r}")
    first = (message.subject.split() or ["other"])[0].lower()
    category = first if first in ("quote", "pickup", "operations") else "other"
    return IntakeResult(category=category, reason=f"subject says {category}", records={"test": 1})


@pytest.fixture
def handler_log(settings: Any) -> Iterator[HandlerLog]:
    settings.MAILBOX_INTAKE_HANDLERS = [SUBJECT_HANDLER]
    LOG.reset()
    yield LOG
    LOG.block.set()
    LOG.reset()


@pytest.fixture
def fresh_kept_connections() -> Iterator[None]:
    """No IMAP connection kept by this process from another test, before or after this one."""
    sessions.kept_close_all()
    yield
    sessions.kept_close_all()


@pytest.fixture
def reading_settings(settings: Any, dovecot: Any) -> Any:
    settings.MAILBOX_ALLOW_PRIVATE_HOSTS = True
    settings.MAILBOX_CA_FILE = str(dovecot.certs.ca)
    settings.REDIS_URL = ""
    return settings


def calls_in_this_process(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str,
                          record: Callable[..., Any] = lambda *args, **kwargs: 1) -> list[Any]:
    """What `record` makes of each call of owner.name made in this process; a forked worker (the
    intake pool's) counts in its own copy of the list."""
    calls: list[Any] = []
    real = getattr(owner, name)
    parent = os.getpid()

    def counting(*args: Any, **kwargs: Any) -> Any:
        if os.getpid() == parent:
            calls.append(record(*args, **kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


def new_user(dovecot: Any) -> str:
    address = f"r{uuid.uuid4().hex[:12]}@example.test"
    dovecot.add_user(address, PASSWORD)
    return address


def make_reader(staff: Staff, dovecot: Any, address: str | None = None, *,
                post_processing: str = Mailbox.PostProcessing.NOTHING, **extra: Any) -> Mailbox:
    address = address or new_user(dovecot)
    fields: dict[str, Any] = {
        "staff": staff, "provider": "imap", "email_address": address, "username": address, "secret": PASSWORD,
        "imap_host": "127.0.0.1", "imap_port": dovecot.imaps_port, "imap_security": "ssl",
        "smtp_host": "127.0.0.1", "smtp_port": dovecot.submissions_port, "smtp_security": "ssl",
        "permission": Mailbox.Permission.SEND_AND_READ, "post_processing": post_processing,
        "status": Mailbox.Status.ACTIVE,
    }
    fields.update(extra)
    return Mailbox.objects.for_tenant(staff.tenant).create(**fields)


def message(subject: str, *, sender: str = "customer@shipper.test", to: str = "dispatch@example.test",
            body: str = "Hello\n", headers: dict[str, str] | None = None, message_id: str | None = None) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, subject
    m["Date"] = email.utils.formatdate(localtime=True)
    if message_id != "":
        m["Message-ID"] = message_id or email.utils.make_msgid(domain="shipper.test")
    for name, value in (headers or {}).items():
        m[name] = value
    m.set_content(body)
    return bytes(m)


def imap(dovecot: Any, address: str) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl=True,
                        ssl_context=dovecot.certs.client_context(), timeout=10)
    client.login(address, PASSWORD)
    return client


def append(dovecot: Any, address: str, raw: bytes, *, folder: str = "INBOX", age: timedelta | None = None,
           flags: tuple[bytes, ...] = ()) -> int:
    """APPEND with an explicit INTERNALDATE (now - age); returns the new UID."""
    when = datetime.now().astimezone() - (age or timedelta(0))
    with imap(dovecot, address) as client:
        response = client.append(folder, raw, flags=flags, msg_time=when)
    text = response.decode() if isinstance(response, bytes) else str(response)
    return int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]"))


def folder_state(dovecot: Any, address: str, folder: str = "INBOX") -> dict[int, dict[str, Any]]:
    """UID -> {"flags": (...), "subject": ...} as the server sees it now (read-only)."""
    with imap(dovecot, address) as client:
        client.select_folder(folder, readonly=True)
        uids = client.search("ALL")
        data = client.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]) if uids else {}
    out = {}
    for uid, item in data.items():
        subject = item[b"BODY[HEADER.FIELDS (SUBJECT)]"].decode().strip().removeprefix("Subject: ")
        out[uid] = {"flags": item[b"FLAGS"], "subject": subject}
    return out


def subjects(dovecot: Any, address: str, folder: str = "INBOX") -> list[str]:
    return sorted(v["subject"] for v in folder_state(dovecot, address, folder).values())


def stored(mailbox: Mailbox) -> list[InboundMessage]:
    return list(InboundMessage.objects.for_tenant(mailbox.tenant).filter(mailbox=mailbox).order_by("uid"))
