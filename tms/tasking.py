"""Whether a Celery task runs in this process the moment it is sent (Celery's task_always_eager),
asked and set without importing Celery (tms/__init__.py): the app's configuration follows the
settings (CELERY_* names), so the setting is the switch."""

from __future__ import annotations

import sys

from django.conf import settings


def tasks_run_here() -> bool:
    """True when a task sent now runs at once, in this process."""
    loaded = sys.modules.get("tms.celery")
    if loaded is not None:
        return bool(loaded.app.conf.task_always_eager)
    return bool(getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False))


def run_tasks_here() -> None:
    """From now on, a task sent by this process runs at once, in it (`mailbox poll`: when the
    command returns, what its pass queued is done too)."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
