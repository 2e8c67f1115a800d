"""`manage.py mailbox add | list | check` as INTERFACES.md fixes them."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from mailboxes.models import Mailbox, MailboxEvent
from tests.factories import make_mailbox
from tests.mailboxes.conftest import Servers, unique_address
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db


def run(*args: str, stdin: str = "", monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    call_command("mailbox", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def add_args(servers: Servers, email: str, *extra: str) -> list[str]:
    return ["add", "--staff", "BOB@acme.test", "--provider", "imap",
            "--imap-host", "127.0.0.1", "--imap-port", str(servers.dovecot.imaps_port), "--imap-security", "ssl",
            "--smtp-host", "127.0.0.1", "--smtp-port", str(servers.dovecot.submission_port),
            "--smtp-security", "starttls", "--username", email, "--password-stdin",
            "--permission", "send_and_read", "--post-processing", "mark_read", *extra]


def test_it_adds_an_authorized_mailbox_and_prints_its_id(
    mail_settings: Servers, bob: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = unique_address("cli")
    mail_settings.dovecot.add_user(email, "cli-pass-1")
    out, _ = run(*add_args(mail_settings, email, "--authorized"), stdin="cli-pass-1\n", monkeypatch=monkeypatch)
    mailbox = Mailbox.unscoped.get(pk=int(out.strip()))
    assert (mailbox.staff, mailbox.email_address, mailbox.status) == (bob, email, "active")
    assert mailbox.secret == "cli-pass-1" and mailbox.post_processing == "mark_read"
    vouched = MailboxEvent.unscoped.get(mailbox=mailbox, kind="authorized")
    assert "operator" in vouched.detail
    assert not [m for m in mail_settings.smtp.messages if email in m.rcpt_tos]  # no link mailed

    out, _ = run("check", str(mailbox.pk))
    assert out.startswith("ok")
    out, _ = run("check", str(mailbox.public_id))
    assert out.startswith("ok")


def test_it_mails_the_link_without_authorized(
    mail_settings: Servers, bob: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = unique_address("cli")
    mail_settings.dovecot.add_user(email, "cli-pass-2")
    out, _ = run(*add_args(mail_settings, email), stdin="cli-pass-2\n", monkeypatch=monkeypatch)
    assert Mailbox.unscoped.get(pk=int(out)).status == "pending_authorization"
    mail_settings.smtp.wait_for(lambda m: email in m.rcpt_tos)


def test_it_refuses_bad_credentials_with_one_line_and_saves_nothing(
    mail_settings: Servers, bob: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = unique_address("cli")
    mail_settings.dovecot.add_user(email, "cli-pass-3")
    with pytest.raises(CommandError) as refused:
        run(*add_args(mail_settings, email, "--authorized"), stdin="wrong\n", monkeypatch=monkeypatch)
    assert "authentication" in str(refused.value) and "\n" not in str(refused.value)
    assert not Mailbox.unscoped.filter(email_address=email).exists()
    with pytest.raises(CommandError, match="no staff member"):
        run("add", "--staff", "nobody@acme.test", "--smtp-host", "x", "--username", "a@b.test", "--password-stdin",
            stdin="x\n", monkeypatch=monkeypatch)


def test_it_check_exits_1_naming_the_failing_stage(mail_settings: Servers, bob: Staff) -> None:
    email = unique_address("cli")
    mail_settings.dovecot.add_user(email, "cli-pass-4")
    mailbox = make_mailbox(bob, email, secret="wrong", imap_port=mail_settings.dovecot.imaps_port,
                           smtp_port=mail_settings.dovecot.submission_port)
    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("mailbox", "check", str(mailbox.pk), stdout=out)
    assert failed.value.returncode == 1
    assert out.getvalue().strip() == "authentication" and "authentication" in str(failed.value)
    with pytest.raises(CommandError, match="no mailbox"):
        run("check", "999999")


def test_it_lists_mailboxes_as_text_and_json_without_secrets(alice: Staff, charlie: Staff) -> None:
    mine = make_mailbox(alice, "a-list@example.test", secret="list-secret")
    make_mailbox(charlie, "c-list@example.test", secret="list-secret", status="needs_reauthorization")
    out, _ = run("list")
    assert "a-list@example.test" in out and "c-list@example.test" in out and "Needs re-authorization" in out
    out, _ = run("list", "--tenant", "acme", "--json")
    rows: list[dict[str, Any]] = json.loads(out)
    assert [r["email"] for r in rows] == ["a-list@example.test"]
    assert rows[0]["id"] == mine.pk and rows[0]["status"] == "active" and rows[0]["tenant"] == "acme"
    assert "list-secret" not in out
    with pytest.raises(CommandError, match="no tenant"):
        run("list", "--tenant", "nope")
