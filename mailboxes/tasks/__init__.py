"""Celery tasks of the mailboxes app, one module per topic (autodiscovered as mailboxes.tasks)."""

# The project's configured Celery app before any task is declared (tms/__init__.py loads it lazily).
import tms.celery  # noqa: F401

from . import poll, send

__all__ = ["poll", "send"]
