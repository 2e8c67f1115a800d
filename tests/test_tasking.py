"""Celery is loaded when first needed (tms/__init__.py, tms/tasking.py): a one-shot poll that sends
no task never imports it, and whatever sends a task has the project's configured app first.

Each check runs in a fresh interpreter: this test process has Celery loaded long ago."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(tmp_path: Path, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CELERY_"))}
    env.update({"VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "tms.settings"})
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()\n" + code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_poll_command_and_the_intake_load_without_celery(tmp_path: Path) -> None:
    out = run_python(tmp_path, (
        "import sys\n"
        "from django.core.management import load_command_class\n"
        "load_command_class('mailboxes', 'mailbox').create_parser('manage.py', 'mailbox')\n"
        "import mailboxes.cli.poll, mailboxes.reading, mailboxes.prepare, documents.intake, shipments.intake\n"
        "from tms.tasking import run_tasks_here, tasks_run_here\n"
        "before = tasks_run_here(); run_tasks_here()\n"
        "print(before, tasks_run_here(), sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu')))\n"))
    assert out == "False True []"


def test_a_task_module_brings_the_configured_app_and_it_follows_the_switch(tmp_path: Path) -> None:
    out = run_python(tmp_path, (
        "from tms.tasking import run_tasks_here, tasks_run_here\n"
        "from documents.tasks import document_process_task\n"
        "from celery import current_app\n"
        "print(current_app.main, document_process_task.app.main, tasks_run_here(), end=' ')\n"
        "run_tasks_here()\n"
        "print(current_app.conf.task_always_eager, tasks_run_here())\n"))
    assert out == "tms tms False True True"


def test_the_package_still_offers_its_celery_app(tmp_path: Path) -> None:
    out = run_python(tmp_path, "import tms, tms.celery\nprint(tms.celery_app is tms.celery.app, tms.celery_app.main)")
    assert out == "True tms"
