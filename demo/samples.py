"""The demo's sample freight mail (demo/mail/*.eml) and loading it into the local IMAP server.

The files are ordinary RFC 5322 messages written for the demo: quote and pickup requests, mail
citing the seeded shipment numbers (SHP-000101..103, demo/seed.py), a signed BOL and a POD as
PDF attachments with a text layer, a follow-up in the thread of a quote request, an auto-reply, a
newsletter and unrelated office mail. They are loaded with IMAP APPEND (the protocol a mail client
uses), with their Date headers moved to the last few hours so that "Thursday" or "tomorrow" in
them means the coming days, and the first poll (which reaches back MAILBOX_INITIAL_WINDOW_DAYS)
finds them.
"""

from __future__ import annotations

import datetime as dt
import re
from contextlib import suppress
from email.utils import format_datetime
from pathlib import Path

from imapclient import IMAPClient

SAMPLE_DIR = Path(__file__).resolve().parent / "mail"
FOLDERS = ("Sent", "Archive")  # found by name (RFC 6154 fallback names) by sending.py and intake.py
_DATE = re.compile(rb"^Date:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*", re.IGNORECASE | re.MULTILINE)
MINUTES_APART = 9


def sample_files() -> list[Path]:
    return sorted(SAMPLE_DIR.glob("*.eml"))


def sample_messages(*, now: dt.datetime | None = None) -> list[tuple[bytes, dt.datetime]]:
    """(raw bytes with CRLF line ends and a fresh Date, that date) per sample, oldest first."""
    now = now or dt.datetime.now(dt.UTC)
    files = sample_files()
    out = []
    for index, path in enumerate(files):
        when = (now - dt.timedelta(minutes=MINUTES_APART * (len(files) - index))).replace(microsecond=0)
        raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        head, sep, body = raw.partition(b"\r\n\r\n")
        date_line = f"Date: {format_datetime(when)}".encode()
        head = _DATE.sub(date_line, head, count=1) if _DATE.search(head) else head + b"\r\n" + date_line
        out.append((head + sep + body, when))
    return out


def samples_load(*, host: str, port: int, username: str, password: str) -> int:
    """APPEND every sample to INBOX (and make the Sent and Archive folders); returns how many."""
    messages = sample_messages()
    client = IMAPClient(host, port=port, ssl=False, timeout=20)
    try:
        client.login(username, password)
        for folder in FOLDERS:
            if not client.folder_exists(folder):
                client.create_folder(folder)
                client.subscribe_folder(folder)
        for raw, when in messages:
            client.append("INBOX", raw, msg_time=when)
    finally:
        with suppress(Exception):
            client.logout()
    return len(messages)
