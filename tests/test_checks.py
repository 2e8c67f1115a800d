"""The system check that refuses an SQLite too old for the app's INSERT/UPDATE ... RETURNING."""

from __future__ import annotations

import sqlite3

import pytest
from django.core.checks import run_checks
from django.db import connections

from tms.checks import sqlite_version_errors


@pytest.mark.parametrize("version", [(3, 31, 1), (3, 34, 1)])
def test_it_refuses_sqlite_older_than_3_35(version: tuple[int, ...]) -> None:
    errors = sqlite_version_errors(vendor="sqlite", version=version)
    assert [e.id for e in errors] == ["tms.E001"]
    assert ".".join(map(str, version)) in errors[0].msg and "3.35.0 or later" in errors[0].msg


@pytest.mark.parametrize("version", [(3, 35, 0), (3, 45, 1), (4, 0, 0)])
def test_it_accepts_sqlite_3_35_and_later(version: tuple[int, ...]) -> None:
    assert sqlite_version_errors(vendor="sqlite", version=version) == []


def test_it_says_nothing_of_other_databases() -> None:
    assert sqlite_version_errors(vendor="postgresql", version=(3, 0, 0)) == []


def test_it_is_registered_and_reads_the_default_database(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "tms.E001" not in [e.id for e in run_checks()]
    monkeypatch.setattr(connections["default"], "vendor", "sqlite")
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    assert "tms.E001" in [e.id for e in run_checks()]
