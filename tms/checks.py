"""System checks of the environment the app runs in (registered in AccountsConfig.ready)."""

from __future__ import annotations

import sqlite3
from typing import Any

from django.core.checks import CheckMessage, Error
from django.db import connections

# INSERT/UPDATE ... RETURNING (mailboxes/reading.py's stored-message insert, the shipment counter,
# bulk inserts that return their ids) needs SQLite 3.35; Django 5.2 itself accepts 3.31.
SQLITE_MINIMUM = (3, 35, 0)


def sqlite_version_errors(*, vendor: str, version: tuple[int, ...]) -> list[CheckMessage]:
    """An error when the database is SQLite older than SQLITE_MINIMUM."""
    if vendor != "sqlite" or tuple(version) >= SQLITE_MINIMUM:
        return []
    found = ".".join(str(part) for part in version)
    needed = ".".join(str(part) for part in SQLITE_MINIMUM)
    return [Error(
        f"SQLite {found} is too old: the app needs SQLite {needed} or later (it uses INSERT/UPDATE ... "
        "RETURNING).",
        hint="Use a Python built with a newer SQLite, or set DATABASE_URL to a PostgreSQL database.",
        id="tms.E001",
    )]


def sqlite_version_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The default database, when it is SQLite, is recent enough (reads the library's version; no
    connection is opened)."""
    return sqlite_version_errors(vendor=connections["default"].vendor, version=sqlite3.sqlite_version_info)
