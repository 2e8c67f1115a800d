"""`manage.py mailbox idle`: hold IMAP IDLE on every read-enabled mailbox until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from mailboxes.idle import IdleSupervisor


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--max-connections", type=int, default=None,
                        help="at most this many IDLE connections (default: MAILBOX_IDLE_MAX_CONNECTIONS)")
    parser.add_argument("--refresh", type=float, default=None, metavar="SECONDS",
                        help="re-read the list of mailboxes this often (default: MAILBOX_IDLE_REFRESH_SECONDS)")


def run(command: BaseCommand, options: dict[str, Any]) -> None:
    supervisor = IdleSupervisor(max_connections=options["max_connections"], refresh_seconds=options["refresh"])

    def stop(signum: int, frame: FrameType | None) -> None:
        supervisor.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    command.stderr.write("mailbox idle: watching read-enabled mailboxes; stop with Ctrl-C or SIGTERM")
    supervisor.run()
    command.stderr.write("mailbox idle: stopped")
