"""The project package. Its Celery app (tms/celery.py) is loaded when first needed, not with the
package: `tms.celery_app`, `celery -A tms` (Celery finds tms.celery), every task module (each
imports it before declaring a task, so a task is never sent through Celery's unconfigured default
app) and the web process (tms/wsgi.py) load it. A one-shot command that sends no task, such as
`manage.py mailbox poll --once` in the common case, never imports Celery: ~85 ms of its start-up
(bench/README.md, "Ingest")."""

from typing import Any

__all__ = ["celery_app"]


def __getattr__(name: str) -> Any:
    if name == "celery_app":
        from .celery import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
