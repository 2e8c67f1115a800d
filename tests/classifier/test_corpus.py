"""The labelled corpus, scored by its own score.py: the bar the issue sets, and a record of the figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from classifier import classify

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    predictions = tmp_path_factory.mktemp("corpus") / "predictions.jsonl"
    with predictions.open("w", encoding="utf-8") as out:
        for path in sorted((CORPUS / "messages").glob("*.eml")):
            result = classify(path.read_bytes())
            out.write(json.dumps(result.to_schema_dict(file=path.name)) + "\n")
    run = subprocess.run(
        [sys.executable, str(CORPUS / "score.py"), str(CORPUS / "labels.jsonl"), str(predictions), "--json",
         "--errors"],
        capture_output=True, text=True, check=True, timeout=120)
    assert run.stdout, run.stderr
    return {"figures": json.loads(run.stdout), "errors": run.stderr}


def test_it_predicts_every_labelled_message(report: dict) -> None:
    messages = report["figures"]["messages"]
    assert messages["missing"] == 0
    assert messages["unlabelled_predictions"] == 0


def test_it_scores_at_least_095_overall(report: dict) -> None:
    assert report["figures"]["overall"] >= 0.95, report["errors"]


def test_it_scores_a_category_macro_f1_of_at_least_097(report: dict) -> None:
    assert report["figures"]["category"]["macro_f1"] >= 0.97, report["errors"]


def test_it_finds_every_shipment_ref_exactly(report: dict) -> None:
    assert report["figures"]["shipment_refs"]["accuracy"] == 1.0, report["errors"]


def test_it_judges_every_attachment_kind(report: dict) -> None:
    assert report["figures"]["attachments"]["accuracy"] >= 0.95, report["errors"]
