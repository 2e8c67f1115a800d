from __future__ import annotations

from django.test import Client


def test_it_reports_database_and_broker_ok(db: None) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_it_reports_a_broker_that_does_not_answer(db: None, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tms.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] == "error" and response.json()["database"] == "ok"
