"""`manage.py mailbox poll --once --json` (INTERFACES.md), XOAUTH2 polling and a revoked grant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from mailboxes.models import InboundMessage, Mailbox
from mailboxes.reading import mailbox_poll
from tests.mailboxes.reading_support import (  # noqa: F401 - fixtures
    LOG,
    append,
    handler_log,
    make_reader,
    message,
    new_user,
    reading_settings,
    subjects,
)
from tms.accounts.models import Staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reading_settings", "handler_log")]

KEYS = {"mailbox", "fetched", "new", "duplicates", "quote", "pickup", "operations", "other", "failed",
        "quarantined", "post_processed"}


def poll(*args: str) -> tuple[list[dict[str, int]], str]:
    out, err = StringIO(), StringIO()
    call_command("mailbox", "poll", *args, "--once", "--json", stdout=out, stderr=err)
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()], err.getvalue()


def test_it_prints_one_json_object_per_mailbox(bob: Staff, dovecot: Any) -> None:
    first = make_reader(bob, dovecot, post_processing="archive")
    second = make_reader(bob, dovecot)
    append(dovecot, first.email_address, message("quote please"))
    append(dovecot, first.email_address, message("pickup tomorrow"))
    append(dovecot, first.email_address, message("hello there"))

    objects, err = poll(str(first.pk), str(second.pk))

    assert err == ""
    assert [set(o) for o in objects] == [KEYS, KEYS]
    assert objects[0] == {"mailbox": first.pk, "fetched": 3, "new": 3, "duplicates": 0, "quote": 1, "pickup": 1,
                          "operations": 0, "other": 1, "failed": 0, "quarantined": 0, "post_processed": 3}
    assert objects[1] == {"mailbox": second.pk, **{k: 0 for k in KEYS - {"mailbox"}}}
    assert subjects(dovecot, first.email_address, "Archive") == ["hello there", "pickup tomorrow", "quote please"]
    again, _ = poll(str(first.pk))
    assert again[0]["fetched"] == 0


@pytest.fixture
def failing_check() -> Any:
    """A registered system check that always fails, removed afterwards."""
    from django.core import checks

    def always_fails(**_: Any) -> list[checks.CheckMessage]:
        return [checks.Error("always fails", id="tests.E001")]

    checks.register(always_fails)
    yield
    checks.registry.registry.registered_checks.discard(always_fails)


@pytest.mark.usefixtures("failing_check")
def test_poll_starts_without_system_checks_and_the_other_actions_still_run_them(bob: Staff, dovecot: Any) -> None:
    from django.core.management.base import SystemCheckError

    mailbox = make_reader(bob, dovecot)
    append(dovecot, mailbox.email_address, message("quote please"))
    out = StringIO()
    call_command("mailbox", "poll", str(mailbox.pk), "--once", "--json", skip_checks=False, stdout=out)
    assert json.loads(out.getvalue())["new"] == 1
    with pytest.raises(SystemCheckError, match="always fails"):
        call_command("mailbox", "list", skip_checks=False, stdout=StringIO())
    call_command("mailbox", "--skip-checks", "list", stdout=StringIO())  # the CLI flag is still there


def test_it_refuses_an_unknown_mailbox_id_before_polling_anything(bob: Staff, dovecot: Any) -> None:
    mailbox = make_reader(bob, dovecot)
    append(dovecot, mailbox.email_address, message("quote untouched"))

    with pytest.raises(CommandError, match="no mailbox with id 999999"):
        poll(str(mailbox.pk), "999999")

    assert not InboundMessage.unscoped.filter(mailbox=mailbox).exists()


ROOT = Path(__file__).resolve().parent.parent.parent


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    """manage.py in a process of its own, on the test database (whose rows this test's
    transaction keeps to itself: the child sees the tables, not what the test made)."""
    db = connection.settings_dict
    url = f"postgresql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tms.settings", PYTHONPATH=str(ROOT), DATABASE_URL=url)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_from_the_command_line_it_reports_and_exits_as_before() -> None:
    done = _manage("mailbox", "poll", "999999", "--once")

    assert done.returncode == 1
    assert "CommandError: no mailbox with id 999999" in done.stderr


def test_poll_starts_without_the_other_actions_services() -> None:
    # Every action's module is imported to build the parser; what only `add`, `check` and `send`
    # use (the connect services with OAuth and requests, the outbound service) is imported when
    # they run: a `poll --once` starts ~0.1 s sooner.
    code = (
        "import sys, django; django.setup()\n"
        "from django.core.management import load_command_class\n"
        "load_command_class('mailboxes', 'mailbox').create_parser('manage.py', 'mailbox')\n"
        "print(*sorted({'mailboxes.services', 'mailboxes.oauth', 'mailboxes.sending', 'requests'} & set(sys.modules)))\n"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tms.settings", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=True)

    assert done.stdout.strip() == ""


def _google_mailbox(staff: Staff, dovecot: Any, oauth: Any, *, expired: bool = False) -> Mailbox:
    address = new_user(dovecot)  # a password too, so the test can APPEND as the user
    tokens = oauth.token_for(address)
    expires = timezone.now() + (timedelta(minutes=-5) if expired else timedelta(hours=1))
    return make_reader(
        staff, dovecot, address, provider="google", secret=tokens.refresh_token, access_token=tokens.access_token,
        access_token_expires_at=expires, imap_host="", smtp_host="", post_processing="mark_read",
    )


def test_it_polls_a_google_mailbox_with_xoauth2(bob: Staff, dovecot: Any, mail_settings: Any) -> None:
    mailbox = _google_mailbox(bob, dovecot, mail_settings.oauth, expired=True)  # refreshed first
    append(dovecot, mailbox.email_address, message("quote by oauth"))

    objects, err = poll(str(mailbox.pk))

    assert err == ""
    assert (objects[0]["new"], objects[0]["quote"], objects[0]["post_processed"]) == (1, 1, 1)
    mailbox.refresh_from_db()
    assert mailbox.status == Mailbox.Status.ACTIVE
    assert mailbox.access_token_expires_at is not None and mailbox.access_token_expires_at > timezone.now()
    assert "xoauth2" in (dovecot.log.read_text().lower())


def test_it_stops_reading_a_mailbox_whose_grant_was_revoked_and_polls_the_others(
    bob: Staff, dovecot: Any, mail_settings: Any
) -> None:
    revoked = _google_mailbox(bob, dovecot, mail_settings.oauth, expired=True)
    healthy = make_reader(bob, dovecot)
    append(dovecot, revoked.email_address, message("quote never read"))
    append(dovecot, healthy.email_address, message("pickup read anyway"))
    mail_settings.oauth.revoke_user(revoked.email_address)

    objects, err = poll()  # every active read-enabled mailbox

    by_id = {o["mailbox"]: o for o in objects}
    assert by_id[revoked.pk]["new"] == 0
    assert (by_id[healthy.pk]["new"], by_id[healthy.pk]["pickup"]) == (1, 1)
    assert f"mailbox {revoked.pk}:" in err
    revoked.refresh_from_db()
    assert revoked.status == Mailbox.Status.NEEDS_REAUTHORIZATION
    assert revoked.last_error and revoked.consecutive_failures == 1
    # Polling has stopped for it: neither the scheduler nor an explicit poll touches the server.
    assert mailbox_poll(mailbox_id=revoked.pk, explicit=True).skipped == "needs re-authorization"
    again, _ = poll()
    assert [o["mailbox"] for o in again] == [healthy.pk]
