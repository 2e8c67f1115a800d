"""`manage.py mailbox send` (INTERFACES.md)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.mailboxes.sending_support import (
    imap_mailbox,
    sent_folder_message_ids,
)
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db


def test_it_sends_and_prints_the_message_id(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any, tmp_path: Path
) -> None:
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    body = tmp_path / "body.txt"
    body.write_text("Truck at 9.\n")
    out = StringIO()
    call_command("mailbox", "send", str(mailbox.pk), "--to", "a@example.test", "--to", "b@example.test",
                 "--subject", "Pickup", "--body-file", str(body), stdout=out)

    status, message_id = out.getvalue().split()
    assert status == "sent"
    got = smtp_server.wait_for(lambda m: m.message_id == message_id)
    assert set(got.rcpt_tos) == {"a@example.test", "b@example.test"} and b"Truck at 9." in got.data
    assert message_id in sent_folder_message_ids(dovecot, mailbox.email_address)


def test_it_exits_non_zero_with_the_servers_words_when_refused(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any
) -> None:
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    smtp_server.fail_next("RCPT", 550, "5.1.1 no such user here", server="submission")
    with pytest.raises(CommandError, match=r"5\.1\.1 no such user here") as caught:
        call_command("mailbox", "send", str(mailbox.public_id), "--to", "nobody@example.test", "--subject", "x",
                     "--body", "y")
    assert caught.value.returncode == 1


def test_it_refuses_header_injection_and_unknown_mailboxes(send_settings: Any, bob: Staff, dovecot: Any) -> None:
    mailbox = imap_mailbox(bob, dovecot, smtp_port=1)
    with pytest.raises(CommandError, match="line break"):
        call_command("mailbox", "send", str(mailbox.pk), "--to", "a@example.test", "--subject", "x\r\nBcc: y@z.test",
                     "--body", "b")
    with pytest.raises(CommandError, match="no mailbox"):
        call_command("mailbox", "send", "999999", "--to", "a@example.test", "--subject", "x", "--body", "b")


def test_an_outsider_company_cannot_send_through_the_mailbox(
    send_settings: Any, bob: Staff, charlie: Staff, dovecot: Any
) -> None:
    mailbox = imap_mailbox(bob, dovecot, smtp_port=1)
    with pytest.raises(CommandError, match="another company"):
        call_command("mailbox", "send", str(mailbox.pk), "--tenant", "globex", "--to", "a@example.test",
                     "--subject", "x", "--body", "b")
