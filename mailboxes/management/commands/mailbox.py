"""`manage.py mailbox <action>`: the operator's interface (see README and INTERFACES).

Each action lives in its own module, mailboxes/cli/<action>.py, exposing
`add_arguments(parser)` and `run(command, options)`; this file only dispatches.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

ACTIONS = {
    "add": "connect a mailbox (IMAP/SMTP with a password); prints its id",
    "list": "list mailboxes",
    "check": "log in to IMAP (when reading) and SMTP; exit 1 naming the failing stage",
    "poll": "fetch, store, classify, act and post-process, once",
    "send": "send a message through the mailbox",
    "idle": "hold IMAP IDLE on every read-enabled mailbox and process new mail as it arrives",
}


class Command(BaseCommand):
    help = "Manage staff mailboxes."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for action, text in ACTIONS.items():
            try:
                module = import_module(f"mailboxes.cli.{action}")
            except ModuleNotFoundError:
                continue
            module.add_arguments(sub.add_parser(action, help=text, description=text))

    def handle(self, *args: Any, **options: Any) -> None:
        import_module(f"mailboxes.cli.{options['action']}").run(self, options)
