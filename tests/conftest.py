"""Test configuration: real servers (tests/testbed) and a real PostgreSQL for Django.

Tests run on PostgreSQL, never SQLite: a throwaway cluster is started once per test session on a
free loopback port (or TEST_DATABASE_URL names one that is already running).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import dj_database_url
import pytest
from django.conf import settings
from django.db import connections

from tms.settings import postgres_options

pytest_plugins = ["tests.testbed.fixtures", "tests.fixtures", "tests.reliability.secrets_plugin"]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    # The test bed's own cluster (the `postgres_server` fixture), so that tests/reliability can restart
    # the database Django uses; it is stopped at pytest_unconfigure, after the test database is dropped.
    from tests.testbed.fixtures import start_postgres_for_session

    yield start_postgres_for_session()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(postgres_url: str) -> None:
    """Point Django at the session's PostgreSQL before pytest-django creates the test database."""
    parsed = dj_database_url.parse(postgres_url, conn_max_age=0)
    default: dict[str, Any] = settings.DATABASES["default"]  # type: ignore[assignment]
    for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT"):
        default[key] = parsed.get(key, "")
    # The SQLite pragmas do not apply; PostgreSQL's options as production has them (parameters bound
    # on the server, JIT off: tms/settings.py, postgres_options).
    default["OPTIONS"] = postgres_options(parsed.get("OPTIONS") or {})
    default["CONN_MAX_AGE"] = 0
    default["TEST"]["NAME"] = "test_tms"
    # A connection object made before this point (by an import) would keep SQLite's backend class.
    with contextlib.suppress(AttributeError):
        del connections["default"]


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    """PBKDF2's deliberate slowness protects real passwords; in tests it only costs minutes."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _celery_eager_from_settings() -> Iterator[None]:
    """`mailbox poll` makes the tasks it sends run in its process (tms.tasking.run_tasks_here sets
    CELERY_TASK_ALWAYS_EAGER); run in a test, that would stay for every later test, whatever their
    settings say (the intake reads documents ahead and finishes them in the batch when it is set).
    The setting's value goes back after each test, and a value set on the Celery app itself goes."""
    from django.conf import settings

    from tms.celery import app

    before = settings.CELERY_TASK_ALWAYS_EAGER
    yield
    settings.CELERY_TASK_ALWAYS_EAGER = before
    with contextlib.suppress(KeyError):  # not set on the app: it follows the settings already
        del app.conf["task_always_eager"]
