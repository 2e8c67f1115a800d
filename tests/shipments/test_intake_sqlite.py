"""The demo runs on the embedded SQLite default: a batch intake (bulk shipments, the counter raised
with one UPDATE) must work there too, not only on PostgreSQL. Run in a child process with nothing
but VAR_DIR set, as `scripts/run.sh` runs the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json
from django.conf import settings
from mailboxes.intake import messages_process
from shipments.models import Shipment, ShipmentCounter
from tests.factories import make_mailbox, make_staff, make_tenant
from tests.shipments.test_intake_batch import store_corpus

settings.MAILBOX_INTAKE_HANDLERS = ["shipments.intake.handle", "documents.intake.handle"]
tenant = make_tenant()
mailbox = make_mailbox(make_staff(tenant, "alice@acme.example"), "alice@acme.example")
outcomes = messages_process(message_ids=store_corpus(mailbox, count=40))
shipments = Shipment.objects.for_tenant(tenant)
print(json.dumps({
    "failed": sorted(k for k, v in outcomes.items() if v is None or v.status not in ("processed", "ignored")),
    "shipments": shipments.count(),
    "numbers": sorted(shipments.values_list("number", flat=True)),
    "counter": ShipmentCounter.objects.get(tenant=tenant).last_value,
}))
"""


def test_a_batch_intake_makes_shipments_on_the_embedded_sqlite_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "DATABASE_URL", "SECRET_KEY", "FIELD_ENCRYPTION", "DEBUG", "ALLOWED"))}
    env.update(VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="tms.settings", MAILBOX_INTAKE_PROCESSES="0")
    manage = [sys.executable, str(ROOT / "manage.py")]
    migrated = subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    assert (tmp_path / "var" / "tms.sqlite3").exists()  # the embedded default, not PostgreSQL

    ran = subprocess.run([*manage, "shell", "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=False)

    assert ran.returncode == 0, ran.stderr[-3000:]
    found = json.loads(ran.stdout.strip().splitlines()[-1])
    assert found["failed"] == []
    # A batch that fails falls back to one message at a time and still ends well: the log says so.
    assert "intake batch of" not in ran.stderr and "intake failed" not in ran.stderr, ran.stderr[-3000:]
    assert found["shipments"] > 1  # a batch of several: the bulk path, not one shipment_create
    assert found["counter"] == found["shipments"]
    assert found["numbers"] == [f"SHP-{n:06d}" for n in range(1, found["shipments"] + 1)]
