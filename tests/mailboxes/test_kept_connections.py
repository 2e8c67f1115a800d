"""IMAP connections kept open across polls (mailboxes/sessions.py), against a real Dovecot."""

from __future__ import annotations

import imaplib
import socket
from collections import Counter
from typing import Any

import pytest

from mailboxes import sessions
from mailboxes.models import Mailbox
from mailboxes.reading import FolderReader, mailbox_poll
from tests.mailboxes.reading_support import (  # noqa: F401 - fixtures
    append,
    fresh_kept_connections,
    handler_log,
    make_reader,
    message,
    reading_settings,
    stored,
)
from tms.accounts.models import Staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reading_settings", "handler_log", "fresh_kept_connections")]


def kept_client(mailbox: Mailbox) -> Any:
    entry = sessions._entries().get(mailbox.pk)
    return entry.client if entry else None


def commands_of(mailbox_id: int) -> Counter[str]:
    """The IMAP commands one poll sends (imaplib's _command wrapped, the protocol untouched)."""
    seen: Counter[str] = Counter()
    original = imaplib.IMAP4._command  # type: ignore[attr-defined]

    def counting(self: Any, name: str, *args: Any) -> Any:
        seen[name] += 1
        return original(self, name, *args)

    imaplib.IMAP4._command = counting  # type: ignore[attr-defined]
    try:
        result = mailbox_poll(mailbox_id=mailbox_id)
    finally:
        imaplib.IMAP4._command = original  # type: ignore[attr-defined]
    assert result.error == "" and result.skipped == ""
    return seen


def test_it_keeps_the_connection_and_still_sees_mail_appended_meanwhile(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    append(dovecot, mailbox.email_address, message("quote first"))
    assert mailbox_poll(mailbox_id=mailbox.pk).new == 1
    client = kept_client(mailbox)
    assert client is not None

    idle = commands_of(mailbox.pk)
    assert "LOGIN" not in idle and "LOGOUT" not in idle
    # One round trip: SELECT is the health check too (no NOOP first).
    assert dict(idle) == {"SELECT": 1}

    append(dovecot, mailbox.email_address, message("pickup while connected"))
    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.error, result.new) == ("", 1)
    assert kept_client(mailbox) is client  # the same connection, and the new mail was seen
    assert [m.subject for m in stored(mailbox)] == ["quote first", "pickup while connected"]


def test_it_logs_in_again_after_the_mailbox_is_edited(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    assert mailbox_poll(mailbox_id=mailbox.pk).error == ""
    first = kept_client(mailbox)

    mailbox.display_name = "Renamed"  # any save changes updated_at
    mailbox.save()
    assert "LOGIN" in commands_of(mailbox.pk)

    assert kept_client(mailbox) not in (None, first)


def test_it_moves_the_mailbox_to_needs_reauthorization_when_a_new_password_is_refused(
    bob: Staff, dovecot: Any
) -> None:
    mailbox = make_reader(bob, dovecot)
    assert mailbox_poll(mailbox_id=mailbox.pk).error == ""
    assert kept_client(mailbox) is not None

    mailbox.secret = "not-the-password"
    mailbox.save()
    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert result.error
    mailbox.refresh_from_db()
    assert mailbox.status == Mailbox.Status.NEEDS_REAUTHORIZATION
    assert kept_client(mailbox) is None


def test_it_replaces_a_connection_that_died_while_kept(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    assert mailbox_poll(mailbox_id=mailbox.pk).error == ""
    dead = kept_client(mailbox)
    dead._imap.sock.shutdown(socket.SHUT_RDWR)  # the connection is gone: its SELECT fails, a new login follows

    append(dovecot, mailbox.email_address, message("quote after the drop"))
    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.error, result.new) == ("", 1)
    assert kept_client(mailbox) not in (None, dead)


def test_it_drops_the_connection_when_the_poll_fails(bob: Staff, dovecot: Any, monkeypatch: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    assert mailbox_poll(mailbox_id=mailbox.pk).error == ""
    client = kept_client(mailbox)

    def broken(self: FolderReader, info: Any = None) -> None:
        self.client.search(["ALL"])
        raise RuntimeError("half way")

    monkeypatch.setattr(FolderReader, "run", broken)
    assert mailbox_poll(mailbox_id=mailbox.pk).error == "internal error: RuntimeError"
    assert kept_client(mailbox) is None
    with pytest.raises(Exception):  # noqa: B017 - logged out: any command fails
        client.noop()

    monkeypatch.undo()
    assert mailbox_poll(mailbox_id=mailbox.pk).error == ""
    assert kept_client(mailbox) not in (None, client)


def test_it_logs_out_the_least_recently_used_over_the_limit(bob: Staff, dovecot: Any, settings: Any) -> None:
    settings.MAILBOX_IMAP_KEEP_CONNECTIONS = 2
    boxes = [make_reader(bob, dovecot) for _ in range(3)]
    for box in boxes[:2]:
        assert mailbox_poll(mailbox_id=box.pk).error == ""
    first = kept_client(boxes[0])
    assert mailbox_poll(mailbox_id=boxes[2].pk).error == ""

    assert sessions.kept_count() == 2
    assert kept_client(boxes[0]) is None
    with pytest.raises(Exception):  # noqa: B017 - logged out
        first.noop()
    assert kept_client(boxes[1]) is not None and kept_client(boxes[2]) is not None


def test_it_keeps_nothing_when_disabled(bob: Staff, dovecot: Any, settings: Any) -> None:
    settings.MAILBOX_IMAP_KEEP_CONNECTIONS = 0
    mailbox = make_reader(bob, dovecot)
    assert mailbox_poll(mailbox_id=mailbox.pk).error == ""
    assert sessions.kept_count() == 0
    assert "LOGIN" in commands_of(mailbox.pk)


def test_it_opens_a_new_connection_when_the_kept_one_is_too_old(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    assert mailbox_poll(mailbox_id=mailbox.pk).error == ""
    old = kept_client(mailbox)
    sessions._entries()[mailbox.pk].opened -= 3600

    assert "LOGIN" in commands_of(mailbox.pk)
    assert kept_client(mailbox) not in (None, old)


def test_it_does_not_use_connections_of_another_process(bob: Staff, dovecot: Any, monkeypatch: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    assert mailbox_poll(mailbox_id=mailbox.pk).error == ""
    inherited = kept_client(mailbox)
    real_pid = sessions.os.getpid()
    monkeypatch.setattr(sessions.os, "getpid", lambda: real_pid + 1)  # as after a fork

    assert sessions.kept_count() == 0
    assert "LOGIN" in commands_of(mailbox.pk)
    assert kept_client(mailbox) not in (None, inherited)
    inherited.logout()  # the parent's connection was left alone (not logged out by the child)


def test_it_drops_the_connection_of_a_mailbox_no_longer_polled(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    assert mailbox_poll(mailbox_id=mailbox.pk).error == ""
    Mailbox.unscoped.filter(pk=mailbox.pk).update(status=Mailbox.Status.DISABLED)

    assert mailbox_poll(mailbox_id=mailbox.pk).skipped
    assert kept_client(mailbox) is None
