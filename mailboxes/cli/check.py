"""`manage.py mailbox check ID`: log in to IMAP (when reading) and SMTP.

ID is the integer id or the public UUID. Exit 0 when both log in; otherwise exit 1, with the failing
stage (dns, blocked, connect, tls, authentication, protocol) on stdout and the reason on stderr.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailboxes import selectors


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("id", metavar="ID", help="the mailbox's id or public UUID")


def run(command: BaseCommand, options: dict[str, Any]) -> None:
    from mailboxes import services  # here, not above: every action imports this module (mailbox.py), poll too

    mailbox = selectors.mailbox_by_ref(options["id"])
    if mailbox is None:
        raise CommandError(f"no mailbox with id {options['id']}")
    result = services.mailbox_check(mailbox)
    if result.ok:
        command.stdout.write(f"ok: imap {result.imap}, smtp {result.smtp}")
        return
    command.stdout.write(f"{result.stage}")
    raise CommandError(f"check failed at {result.stage}: {result.message}", returncode=1)
