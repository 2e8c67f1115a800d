from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailboxes.models import Mailbox
from tests.factories import make_mailbox
from tms.accounts.models import Staff


@pytest.fixture
def doc_settings(settings: Any, tmp_path: Path) -> Any:
    """Documents stored under this test's own media root; the processor runs eagerly on commit."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.MAILBOX_INTAKE_HANDLERS = ["shipments.intake.handle", "documents.intake.handle"]
    settings.DOCUMENT_MAX_BYTES = 2 * 1024 * 1024
    settings.DOCUMENT_MAX_DECOMPRESSED_BYTES = 4 * 1024 * 1024
    return settings


@pytest.fixture
def inbox(doc_settings: Any, bob: Staff) -> Mailbox:
    """Bob's connected mailbox at Acme (rows only: these tests hand messages to the intake directly)."""
    return make_mailbox(bob, "dispatch@acme.test")
