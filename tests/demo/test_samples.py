"""The demo's sample mail says what the demo promises: which messages make shipments, which cite
the seeded shipment numbers, which carry a BOL/POD with a real text layer, which are left alone."""

from __future__ import annotations

import datetime as dt
import email
from email.message import Message
from email.utils import parsedate_to_datetime

import pytest

import classifier
from demo.samples import sample_files, sample_messages
from demo.seed import SHIPMENTS
from documents.extract import extract_text

EXPECTED = {
    "01-quote-reefer.eml": ("quote", []),
    "02-quote-ltl.eml": ("quote", []),
    "03-pickup-flatbed.eml": ("pickup", []),
    "04-pickup-tender.eml": ("pickup", []),
    "05-ops-status.eml": ("operations", ["SHP-000101"]),
    "06-ops-bol.eml": ("operations", ["SHP-000101"]),
    "07-ops-pod.eml": ("operations", ["SHP-000102"]),
    "08-ops-appointment.eml": ("operations", ["SHP-000103"]),
    "09-reply-in-thread.eml": ("other", []),  # filed on the reefer quote's shipment by its In-Reply-To
    "10-auto-reply.eml": ("other", []),
    "11-newsletter.eml": ("other", []),
    "12-other-facilities.eml": ("other", []),
}


def test_it_ships_the_sample_mail_the_demo_describes() -> None:
    assert [p.name for p in sample_files()] == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_it_classifies_each_sample_as_intended(name: str) -> None:
    raw = next(raw for (raw, _), path in zip(sample_messages(), sample_files(), strict=True) if path.name == name)
    result = classifier.classify(raw, shipment_prefix="SHP")
    category, refs = EXPECTED[name]
    assert (result.category, list(result.shipment_refs)) == (category, refs), result.reason


def test_it_cites_only_shipments_the_seed_creates() -> None:
    seeded = {f"SHP-{s.sequence:06d}" for s in SHIPMENTS}
    cited = {ref for _, refs in EXPECTED.values() for ref in refs}
    assert cited <= seeded


def _pdfs(message: Message) -> list[tuple[str, bytes]]:
    out = []
    for part in message.walk():
        if part.get_content_type() == "application/pdf":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out.append((part.get_filename() or "", payload))
    return out


def test_it_attaches_real_pdfs_with_a_text_layer() -> None:
    found = {}
    for raw, _ in sample_messages():
        for filename, payload in _pdfs(email.message_from_bytes(raw)):
            found[filename] = extract_text(payload=payload, filename=filename, content_type="application/pdf").text
    assert set(found) == {"BOL_5521907.pdf", "POD_SHP-000102.pdf"}
    assert "5521907" in found["BOL_5521907.pdf"] and "SHP-" not in found["BOL_5521907.pdf"]  # matched by BOL no.
    assert "PRO RT-33817" in found["POD_SHP-000102.pdf"]


def test_it_dates_the_samples_in_the_last_hours_in_order() -> None:
    now = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
    loaded = sample_messages(now=now)
    dates = [parsedate_to_datetime(email.message_from_bytes(raw)["Date"]) for raw, _ in loaded]
    assert dates == sorted(dates)
    assert all(now - dt.timedelta(hours=3) < d < now for d in dates)
    assert all(raw.count(b"\nDate:") + raw.startswith(b"Date:") == 1 for raw, _ in loaded)
    assert all(b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"") for raw, _ in loaded)
