from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from mailboxes.models import Mailbox
from tms.accounts.models import Staff
from tms.crypto import DecryptionError

SECRET = "hunter2-imap-password"


def make_mailbox(staff: Staff) -> Mailbox:
    return Mailbox.objects.for_tenant(staff.tenant).create(
        staff=staff, provider="imap", email_address=staff.email, secret=SECRET
    )


def raw_secret(mailbox: Mailbox) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM mailboxes_mailbox WHERE id = %s", [mailbox.pk])
        return str(cursor.fetchone()[0])


def test_it_stores_ciphertext_and_reads_back_the_plain_text(bob: Staff) -> None:
    mailbox = make_mailbox(bob)
    stored = raw_secret(mailbox)
    assert SECRET not in stored and stored.startswith("gAAAA")
    assert Mailbox.unscoped.get(pk=mailbox.pk).secret == SECRET


def test_it_refuses_to_filter_on_an_encrypted_column(bob: Staff) -> None:
    with pytest.raises(TypeError):
        Mailbox.unscoped.filter(secret=SECRET)


def test_it_rotates_every_secret_to_the_first_key(bob: Staff, settings) -> None:  # type: ignore[no-untyped-def]
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    mailbox = make_mailbox(bob)
    before = raw_secret(mailbox)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    out = io.StringIO()
    call_command("rotate_keys", stdout=out)
    assert "1 row(s)" in out.getvalue()
    after = raw_secret(mailbox)
    assert after != before
    assert Fernet(new_key.encode()).decrypt(after.encode()).decode() == SECRET
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key can now be dropped
    assert Mailbox.unscoped.get(pk=mailbox.pk).secret == SECRET


def test_it_raises_instead_of_returning_ciphertext_with_a_wrong_key(bob: Staff, settings) -> None:  # type: ignore[no-untyped-def]
    mailbox = make_mailbox(bob)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(DecryptionError):
        Mailbox.unscoped.get(pk=mailbox.pk)
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_keys", stdout=io.StringIO())
