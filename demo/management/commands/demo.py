"""`manage.py demo`: seed the demo company, then run web, worker and beat until Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo.seed import LOGINS, seed

HOST, PORT = "127.0.0.1", 8000


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


class Command(BaseCommand):
    help = "Run the demo: web on http://127.0.0.1:8000, a Celery worker and beat, and demo logins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=PORT)
        parser.add_argument("--seed-only", action="store_true", help="create the demo data and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = seed()
        if options["seed_only"]:
            self.stdout.write(f"demo tenant {tenant.slug!r} ready")
            return
        port = options["port"]
        if port_taken(port):
            raise CommandError(f"port {port} on {HOST} is in use: is the demo already running?")
        python = sys.executable
        commands = {
            "web": [python, "manage.py", "runserver", f"{HOST}:{port}", "--noreload"],
            "worker": [python, "-m", "celery", "-A", "tms", "worker", "-l", "info", "--concurrency", "2"],
            "beat": [python, "-m", "celery", "-A", "tms", "beat", "-l", "info",
                     "-s", settings.CELERY_BEAT_SCHEDULE_FILENAME],
        }
        procs: dict[str, subprocess.Popen[bytes]] = {}
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            for name, argv in commands.items():
                procs[name] = subprocess.Popen(argv, start_new_session=True)  # noqa: S603
            self.print_banner(port)
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"demo: {name} exited with {proc.returncode}; stopping the rest")
                        stopping = True
                time.sleep(0.5)
        finally:
            self.stdout.write("demo: stopping ...")
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + 15
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            self.stdout.write("demo: stopped")

    def print_banner(self, port: int) -> None:
        lines = [
            "",
            f"  TMS demo running: http://{HOST}:{port}/",
            "  Logins:",
            *(f"    {login.email:<24} {login.password:<15} ({login.role})" for login in LOGINS),
            "  Platform admin (Django admin): create one with `.venv/bin/python manage.py createsuperuser`",
            "  Ctrl-C stops everything.",
            "",
        ]
        self.stdout.write("\n".join(lines))
