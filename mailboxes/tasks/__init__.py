"""Celery tasks of the mailboxes app, one module per topic (autodiscovered as mailboxes.tasks)."""

from . import poll, send

__all__ = ["poll", "send"]
