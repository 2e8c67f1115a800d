"""`manage.py mailbox <action>`: the operator's interface (see README and INTERFACES).

Each action lives in its own module, mailboxes/cli/<action>.py, exposing
`add_arguments(parser)` and `run(command, options)`; this file only dispatches.
"""

from __future__ import annotations

import gc
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

# Actions that start without Django's system checks: `poll --once` is run from cron and
# scripts once per pass, and the checks (0.35 s on a quiet machine, seconds on a loaded one)
# were a fifth of a 1,000-message pass. They still run in `manage.py migrate` (every deploy and
# scripts/run.sh), `manage.py check --deploy` (tests/ops) and every other action here.
UNCHECKED = frozenset({"poll"})


class Command(BaseCommand):
    help = "Manage staff mailboxes."
    requires_system_checks: list[str] = []  # handle() runs them, for the actions that want them

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--skip-checks", action="store_true", help="skip the system checks")
        sub = parser.add_subparsers(dest="action", required=True)
        for action, text in ACTIONS.items():
            try:
                module = import_module(f"mailboxes.cli.{action}")
            except ModuleNotFoundError:
                continue
            module.add_arguments(sub.add_parser(action, help=text, description=text))

    def run_from_argv(self, argv: list[str]) -> None:
        """From manage.py (not call_command): the process exits when this returns."""
        try:
            super().run_from_argv(argv)
        finally:
            # Whatever is left is freed by the interpreter's exit, whose garbage collections would
            # walk every object of Django and the apps first: frozen, they are left alone, and a
            # `poll --once` ends ~0.15 s (CPU and wall) sooner. Objects are still released (and
            # connections closed) as before.
            gc.freeze()

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] not in UNCHECKED and not options.get("skip_checks"):
            self.check()
        import_module(f"mailboxes.cli.{options['action']}").run(self, options)
