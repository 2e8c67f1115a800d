"""`manage.py demo`: the whole product on one machine with nothing installed but Python.

Seeds the demo company, starts local IMAP and SMTP servers holding sample freight mail, connects
the dispatcher's mailbox to them, and runs web, a Celery worker and beat until Ctrl-C
(demo/supervisor.py). Running it again reuses what is there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.seed import LOGINS, MAILBOX_OWNER, seed
from demo.supervisor import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_PORTS,
    HOST,
    MAILBOX_PASSWORD,
    DemoError,
    DemoOptions,
    demo_run,
)
from mailboxes.models import Mailbox


class Command(BaseCommand):
    help = ("Run the demo: web on http://127.0.0.1:8000, a Celery worker and beat, local IMAP/SMTP servers "
            "with sample freight mail, and demo logins. Ctrl-C stops everything.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=DEFAULT_PORTS["web"], help="web port (default 8000)")
        parser.add_argument("--imap-port", type=int, default=DEFAULT_PORTS["imap"],
                            help=f"local IMAP server port (default {DEFAULT_PORTS['imap']})")
        parser.add_argument("--smtp-port", type=int, default=DEFAULT_PORTS["smtp"],
                            help=f"local SMTP server port (default {DEFAULT_PORTS['smtp']})")
        parser.add_argument("--poll-interval", type=int, default=None, metavar="SECONDS",
                            help=f"how often the demo mailbox is read (default: MAILBOX_POLL_INTERVAL if set, "
                                 f"else {DEFAULT_POLL_INTERVAL})")
        parser.add_argument("--seed-only", action="store_true", help="create the demo data and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = seed()
        if options["seed_only"]:
            self.stdout.write(f"demo tenant {tenant.slug!r} ready")
            return
        for name in ("port", "imap_port", "smtp_port"):
            if not 1 <= options[name] <= 65535:
                raise CommandError(f"--{name.replace('_', '-')}: not a port: {options[name]}")
        interval = options["poll_interval"] or (
            int(os.environ["MAILBOX_POLL_INTERVAL"]) if os.environ.get("MAILBOX_POLL_INTERVAL", "").strip()
            else DEFAULT_POLL_INTERVAL
        )
        demo_options = DemoOptions(
            web_port=options["port"], imap_port=options["imap_port"], smtp_port=options["smtp_port"],
            poll_interval=max(1, interval), var_dir=Path(settings.VAR_DIR),
        )
        try:
            demo_run(tenant=tenant, options=demo_options, out=self.stdout, banner=self.print_banner)
        except DemoError as exc:
            raise CommandError(str(exc)) from None

    def print_banner(self, options: DemoOptions, mailbox: Mailbox) -> None:
        lines = [
            "",
            f"  TMS demo running: http://{HOST}:{options.web_port}/",
            "  Logins:",
            *(f"    {login.email:<24} {login.password:<15} ({login.role})" for login in LOGINS),
            f"  {MAILBOX_OWNER}'s mailbox is connected to the local mail servers (read every "
            f"{options.poll_interval} s; processed mail is moved to Archive):",
            f"    IMAP {HOST}:{options.imap_port}  SMTP {HOST}:{options.smtp_port}  "
            f"login {mailbox.username} / {MAILBOX_PASSWORD}  (no TLS, loopback only)",
            f"    mail store {options.mail_dir}; what the SMTP server accepts: {options.outbox_dir}",
            "  Shipments from the sample mail appear within a minute: log in as the dispatcher.",
            "  Platform admin (Django admin): create one with `.venv/bin/python manage.py createsuperuser`",
            "  Ctrl-C stops everything.",
            "",
        ]
        self.stdout.write("\n".join(lines))
