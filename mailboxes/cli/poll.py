"""`manage.py mailbox poll [ID ...] --once [--json]`: one pass, synchronously, as the workers do.

Follow-up tasks queued by intake (documents) run in this process too, so when the command
returns, the pass is complete.

Without ids: every active read-enabled mailbox. Exits 0 when the pass ran; a mailbox that could
not be polled is reported on stderr (its counters are zero) and does not stop the others.
Without --once the pass repeats every MAILBOX_POLL_INTERVAL seconds until interrupted.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailboxes import reading
from mailboxes.models import Mailbox
from tms.tasking import run_tasks_here


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("ids", nargs="*", type=int, metavar="ID", help="mailbox ids (default: all active readers)")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--json", action="store_true", help="one JSON object per mailbox on stdout")


def run(command: BaseCommand, options: dict[str, Any]) -> None:
    ids: list[int] = list(dict.fromkeys(options["ids"]))
    if ids:
        found = set(Mailbox.unscoped.filter(pk__in=ids).values_list("pk", flat=True))
        missing = [str(i) for i in ids if i not in found]
        if missing:
            raise CommandError(f"no mailbox with id {', '.join(missing)}")
    # The pass is synchronous all the way: what intake hands to Celery after commit (document
    # processing, notifications) runs here, in this process, before the command returns.
    run_tasks_here()
    while True:
        _pass(command, ids, as_json=options["json"])
        if options["once"]:
            return
        try:
            time.sleep(settings.MAILBOX_POLL_INTERVAL)
        except KeyboardInterrupt:
            return


def _pass(command: BaseCommand, ids: list[int], *, as_json: bool) -> None:
    for mailbox_id in ids or reading.mailboxes_readable_ids():
        result = reading.mailbox_poll(mailbox_id=mailbox_id, explicit=bool(ids))
        if result.skipped:
            command.stderr.write(f"mailbox {mailbox_id}: not polled ({result.skipped})")
        elif result.error:
            command.stderr.write(f"mailbox {mailbox_id}: {result.error}")
        if as_json:
            command.stdout.write(json.dumps(result.as_json()))
        else:
            counts = result.as_json()
            command.stdout.write(
                f"mailbox {mailbox_id}: fetched {counts['fetched']}, new {counts['new']}, "
                f"duplicates {counts['duplicates']}, quote {counts['quote']}, pickup {counts['pickup']}, "
                f"operations {counts['operations']}, other {counts['other']}, failed {counts['failed']}, "
                f"quarantined {counts['quarantined']}, post-processed {counts['post_processed']}"
            )
