"""`manage.py mailbox add`: connect an IMAP/SMTP mailbox for a staff member; prints its integer id.

The credentials must log in first (IMAP when reading, SMTP always). Without --authorized the address
is mailed the authorization link, as in the web UI; --authorized records that the operator vouched for
ownership (audited) and makes the mailbox active at once.
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailboxes.models import Mailbox, Provider, Security
from mailboxes.providers import ProviderError
from tms.accounts.management.commands.tenant import validation_message
from tms.accounts.models import Staff


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--staff", required=True, metavar="EMAIL", help="the owner's e-mail address")
    parser.add_argument("--provider", choices=[Provider.IMAP.value], default=Provider.IMAP.value,
                        help="imap (Google and Microsoft connect through their sign-in in the web UI)")
    parser.add_argument("--email", default="", help="the mailbox's address (default: --username)")
    parser.add_argument("--imap-host", default="")
    parser.add_argument("--imap-port", type=int, default=993)
    parser.add_argument("--imap-security", choices=Security.values, default=Security.SSL.value)
    parser.add_argument("--smtp-host", required=True)
    parser.add_argument("--smtp-port", type=int, default=587)
    parser.add_argument("--smtp-security", choices=Security.values, default=Security.STARTTLS.value)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    parser.add_argument("--permission", choices=Mailbox.Permission.values,
                        default=Mailbox.Permission.SEND_AND_READ.value)
    parser.add_argument("--post-processing", choices=Mailbox.PostProcessing.values,
                        default=Mailbox.PostProcessing.NOTHING.value)
    parser.add_argument("--display-name", default="")
    parser.add_argument("--from-address", default="")
    parser.add_argument("--authorized", action="store_true",
                        help="the operator vouches for ownership: skip the emailed link (audited)")


def _password(options: dict[str, Any]) -> str:
    if options["password_stdin"]:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Mailbox password: ")
    else:
        raise CommandError("give the password on standard input with --password-stdin")
    if not password:
        raise CommandError("no password given")
    return password


def run(command: BaseCommand, options: dict[str, Any]) -> None:
    from mailboxes import services  # here, not above: every action imports this module (mailbox.py), poll too

    staff = Staff.unscoped.select_related("tenant").filter(email__iexact=options["staff"].strip()).first()
    if staff is None:
        raise CommandError(f"no staff member with e-mail {options['staff']!r}")
    email = (options["email"] or options["username"]).strip()
    if "@" not in email:
        raise CommandError("--username is not an e-mail address: give the mailbox's address with --email")
    password = _password(options)
    try:
        mailbox = services.mailbox_connect_imap(
            staff=staff, email_address=email, imap_host=options["imap_host"], imap_port=options["imap_port"],
            imap_security=options["imap_security"], smtp_host=options["smtp_host"],
            smtp_port=options["smtp_port"], smtp_security=options["smtp_security"], username=options["username"],
            password=password, permission=options["permission"], post_processing=options["post_processing"],
            display_name=options["display_name"], from_address=options["from_address"],
            authorized=options["authorized"],
        )
    except ValidationError as exc:
        raise CommandError(validation_message(exc)) from None
    except ProviderError as exc:
        # Saved as pending, but the authorization e-mail did not go out.
        command.stdout.write(str(Mailbox.unscoped.get(staff=staff, email_address__iexact=email).pk))
        raise CommandError(str(exc)) from None
    command.stdout.write(str(mailbox.pk))
