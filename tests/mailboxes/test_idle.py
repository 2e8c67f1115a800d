"""`manage.py mailbox idle` as a real process against Dovecot: mail is processed within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from mailboxes.models import FolderCursor, InboundMessage, Mailbox
from tests.mailboxes.reading_support import (  # noqa: F401 - fixtures
    SUBJECT_HANDLER,
    append,
    make_reader,
    message,
    reading_settings,
    subjects,
)
from tms.accounts.models import Staff

ROOT = Path(__file__).resolve().parents[2]


def wait_for(what: str, check: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes], log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        assert proc.poll() is None, f"mailbox idle exited early:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s:\n{log.read_text()[-3000:]}")


def idle_env(dovecot: Any) -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": django_settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(django_settings.FIELD_ENCRYPTION_KEYS),
        "MAILBOX_ALLOW_PRIVATE_HOSTS": "1",
        "MAILBOX_CA_FILE": str(dovecot.certs.ca),
        "MAILBOX_INTAKE_HANDLERS": SUBJECT_HANDLER,
        "MAILBOX_IDLE_REFRESH_SECONDS": "1",
        "REDIS_URL": "",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("reading_settings")
def test_it_processes_new_mail_within_seconds_and_picks_up_new_mailboxes(
    bob: Staff, dovecot: Any, tmp_path: Path
) -> None:
    first = make_reader(bob, dovecot, post_processing=Mailbox.PostProcessing.ARCHIVE)
    log = tmp_path / "idle.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "manage.py", "mailbox", "idle"], cwd=ROOT, env=idle_env(dovecot),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        # Its catch-up poll at connect leaves a cursor: from then on it is in IDLE.
        wait_for("first IDLE", lambda: FolderCursor.objects.filter(mailbox=first).exists(), 30, proc, log)
        time.sleep(0.5)
        append(dovecot, first.email_address, message("quote while idle"))
        elapsed = wait_for("processing", lambda: InboundMessage.unscoped.filter(
            mailbox=first, status=InboundMessage.Status.PROCESSED, post_processed_at__isnull=False).exists(),
            10, proc, log)
        assert elapsed < 5
        assert subjects(dovecot, first.email_address, "Archive") == ["quote while idle"]

        second = make_reader(bob, dovecot)  # connected while the process runs
        wait_for("second IDLE", lambda: FolderCursor.objects.filter(mailbox=second).exists(), 20, proc, log)
        time.sleep(0.5)
        append(dovecot, second.email_address, message("pickup for the newcomer"))
        wait_for("second mailbox", lambda: InboundMessage.unscoped.filter(mailbox=second).exists(), 10, proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, log.read_text()[-3000:]
    assert "stopped" in log.read_text()
    assert InboundMessage.unscoped.filter(mailbox=first).count() == 1
