"""`manage.py mailbox send ID --to ADDR [--to ADDR ...] --subject TEXT (--body TEXT | --body-file FILE)`.

Sends through the mailbox, now, with the same service the workers use (policy, throttle, Sent
copy), and waits for the outcome: exit 0 and "sent <Message-ID>" on stdout when the server took it;
exit 1 with the server's words on stderr when it failed. A message still held by the throttle or a
temporary failure after --wait seconds stays queued for the workers (exit 1, saying so).
--tenant SLUG refuses a mailbox of another company.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from mailboxes import selectors


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("id", metavar="ID", help="the mailbox's id or public UUID")
    parser.add_argument("--to", action="append", required=True, metavar="ADDR", help="a recipient (repeatable)")
    parser.add_argument("--cc", action="append", default=[], metavar="ADDR")
    parser.add_argument("--bcc", action="append", default=[], metavar="ADDR")
    parser.add_argument("--subject", required=True)
    body = parser.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="the plain-text body")
    body.add_argument("--body-file", metavar="FILE", help="read the plain-text body from FILE ('-': stdin)")
    parser.add_argument("--tenant", metavar="SLUG", help="refuse unless the mailbox belongs to this company")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for throttles and retries")


def _body(options: dict[str, Any]) -> str:
    if options.get("body") is not None:
        return str(options["body"])
    path = options["body_file"]
    if path == "-":
        import sys

        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None


def run(command: BaseCommand, options: dict[str, Any]) -> None:
    from mailboxes import sending  # here, not above: every action imports this module (mailbox.py), poll too

    mailbox = selectors.mailbox_by_ref(options["id"])
    if mailbox is None:
        raise CommandError(f"no mailbox with id {options['id']}")
    if options.get("tenant") and mailbox.tenant.slug != options["tenant"]:
        raise CommandError(f"mailbox {options['id']} belongs to another company")
    body = _body(options)
    try:
        outbound = sending.message_queue(
            tenant=mailbox.tenant, staff=mailbox.staff, mailbox=mailbox, to=options["to"], cc=options["cc"],
            bcc=options["bcc"], subject=options["subject"], body_text=body, enqueue=False,
        )
    except sending.SendRefused as exc:
        raise CommandError(f"refused: {exc}") from None
    result = sending.message_send_now(outbound=outbound, max_wait=max(options["wait"], 0.0))
    if result.status == "sent":
        command.stdout.write(f"sent {outbound.message_id}")
        if result.error:
            command.stderr.write(f"note: {result.error}")
        return
    if result.status == "queued":
        outbound_id, countdown = outbound.pk, result.retry_in
        transaction.on_commit(lambda: sending.outbound_enqueue(outbound_id, countdown))
        raise CommandError(
            f"not sent yet, left queued for the workers (message {outbound.pk}): {result.error or 'throttled'}"
        )
    raise CommandError(f"failed: {result.error}")
