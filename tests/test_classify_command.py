"""`manage.py classify` (INTERFACES.md): the corpus schema, one line per file, never failing on a bad file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from mailboxes.classification import classify_for_tenant
from tms.accounts.models import Tenant

CORPUS = Path(__file__).resolve().parent / "corpus" / "messages"

QUOTE_WITHOUT_DATE = b"""From: Shipper <ship@example.com>
To: dispatch@acme.test
Subject: Rate request Dallas to Atlanta
Date: Mon, 16 Nov 2026 09:00:00 -0600
Message-ID: <q1@example.com>

Hi, can you quote a dry van from Dallas, TX 75201 to Atlanta, GA 30303? 12 pallets, 18,000 lbs.
"""


def classify(*args: str) -> list[dict]:  # type: ignore[type-arg]
    out = io.StringIO()
    call_command("classify", *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_it_prints_one_schema_object_per_file_in_order(tmp_path: Path) -> None:
    files = [str(CORPUS / "017.eml"), str(CORPUS / "002.eml")]
    rows = classify(*files, "--json")
    assert [row["file"] for row in rows] == ["017.eml", "002.eml"]
    for row in rows:
        assert set(row) >= {"file", "category", "shipment_refs", "fields", "attachments"}
        assert row["category"] in {"quote", "pickup", "operations", "other"}


def test_it_never_fails_on_a_bad_or_missing_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.eml"
    junk.write_bytes(b"\x00\xff\xfe not mail at all \r\n\r\n--")
    rows = classify(str(junk), str(tmp_path / "missing.eml"), "--json")
    assert [row["file"] for row in rows] == ["junk.eml", "missing.eml"]
    assert rows[1]["category"] == "other" and "error" in rows[1]
    assert rows[0]["category"] == "other"


@pytest.mark.django_db
def test_it_applies_the_tenants_prefix_and_rules(tmp_path: Path) -> None:
    tenant = Tenant.objects.create(slug="strict", name="Strict", shipment_prefix="ACM-")
    mail = tmp_path / "quote.eml"
    mail.write_bytes(QUOTE_WITHOUT_DATE + b"\nSee also ACM-123456 and SHP-654321.\n")
    (row,) = classify(str(mail), "--json", "--tenant", "strict")
    assert row["category"] == "quote"
    assert row["shipment_refs"] == ["ACM-123456"]
    tenant.required_fields = ["pickup_date"]
    tenant.save()
    (row,) = classify(str(mail), "--json", "--tenant", "strict")
    assert row["category"] == "operations"  # not enough detail for this tenant; it cites a shipment


def test_it_uses_the_schema_rules_without_a_tenant() -> None:
    verdict = classify_for_tenant(QUOTE_WITHOUT_DATE, None)
    assert verdict.category == "quote"
