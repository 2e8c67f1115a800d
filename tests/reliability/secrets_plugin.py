"""pytest plugin: no test password or token ever lands in clear text in the database, the logs or a response.

Registered from tests/conftest.py (pytest_plugins), so it watches the whole suite, not only this folder.

What it watches for (the secrets the test bed hands out):
- every password in the test bed's user table (Dovecot and aiosmtpd share it: DEFAULT_USERS plus each
  add_user()), and the staff password of tests/fixtures.py;
- every token the OAuth server issues: those the tests fetch (OAuthServer.token_for / refresh / mint) and
  those the app fetches itself from the token endpoint (seen in the responses requests receives).

Where it looks:
- the database: after each test that uses it, before pytest-django rolls the test back or flushes it
  (a scan at session end would find an empty database), one query over every text, varchar, json and
  bytea column of every table;
- the logs: a handler on the root logger formats each record the way the app's console handler does
  (tms.logging's context and redaction filters, JSON formatter) and searches the output;
- the responses: every response Django's handler returns (test client, WSGI, schemathesis), body and headers.

A finding fails the test during which it happened (an error at its teardown) and the session; the
terminal summary prints the counts.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

MIN_LENGTH = 8          # shorter strings would match by accident; every test bed secret is longer


@dataclass
class Watch:
    secrets: set[str] = field(default_factory=set)
    findings: list[str] = field(default_factory=list)
    db_scans: int = 0
    db_skipped: int = 0
    log_records: int = 0
    responses: int = 0
    columns: list[tuple[str, str, str]] | None = None

    def add(self, value: Any) -> None:
        if isinstance(value, str) and len(value) >= MIN_LENGTH:
            self.secrets.add(value)

    def current(self) -> list[str]:
        """The secrets known now: the recorded tokens plus the test bed's live user table."""
        from tests.testbed import fixtures as testbed_fixtures

        tb = testbed_fixtures._session.get("testbed")
        if tb is not None:
            for password in list(tb.users.values()):
                self.add(password)
        return sorted(self.secrets)

    def search(self, where: str, text: str) -> None:
        for secret in self.current():
            if secret in text:
                self.findings.append(f"{where}: contains the secret {secret[:4]}...{secret[-2:]} "
                                     f"({len(secret)} chars)")


WATCH = Watch()


# ----------------------------------------------------------------------------- recording secrets


def _record_tokens(body: Any) -> None:
    if isinstance(body, dict):
        for key in ("access_token", "refresh_token", "id_token"):
            WATCH.add(body.get(key))


def _install_recorders(mp: pytest.MonkeyPatch) -> None:
    import requests

    from tests.fixtures import PASSWORD
    from tests.testbed.oauth import OAuthServer

    WATCH.add(PASSWORD)

    def wrap(name: str) -> None:
        original = getattr(OAuthServer, name)

        def recorded(self: OAuthServer, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            if isinstance(result, str):
                WATCH.add(result)
            else:
                _record_tokens(getattr(result, "raw", None))
                for key in ("access_token", "refresh_token", "id_token"):
                    WATCH.add(getattr(result, key, None))
            return result

        mp.setattr(OAuthServer, name, recorded)

    for name in ("token_for", "refresh", "mint"):
        wrap(name)

    # Tokens the app fetches itself (google-auth-oauthlib, msal and our own code all use requests).
    original_send = requests.Session.send

    def send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        response = original_send(self, request, **kwargs)
        with contextlib.suppress(Exception):
            if "token" in str(request.url).rsplit("/", 1)[-1] and "json" in response.headers.get("content-type", ""):
                _record_tokens(json.loads(response.content))
        return response

    mp.setattr(requests.Session, "send", send)


# ----------------------------------------------------------------------------- logs and responses


class SecretLogHandler(logging.Handler):
    """Formats each record as the app's console handler would, then searches the line."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        from tms.logging import ContextFilter, JsonFormatter, RedactFilter

        self.addFilter(ContextFilter())
        self.addFilter(RedactFilter())
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a broken record is not our business here
            return
        WATCH.log_records += 1
        WATCH.search(f"log record of {record.name} ({record.levelname})", line)


def _install_response_hook(mp: pytest.MonkeyPatch) -> None:
    from django.core.handlers.base import BaseHandler

    original = BaseHandler.get_response

    def get_response(self: BaseHandler, request: Any) -> Any:
        response = original(self, request)
        WATCH.responses += 1
        with contextlib.suppress(Exception):
            headers = "\n".join(f"{k}: {v}" for k, v in response.items())
            body = b"" if getattr(response, "streaming", False) else bytes(getattr(response, "content", b""))
            WATCH.search(f"response to {request.method} {request.path} ({response.status_code})",
                         headers + "\n" + body.decode("utf-8", "replace"))
        return response

    mp.setattr(BaseHandler, "get_response", get_response)


# ----------------------------------------------------------------------------- the database


_TEXT_TYPES = ("text", "character varying", "jsonb", "json", "bytea")


def _columns(cursor: Any) -> list[tuple[str, str, str]]:
    cursor.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.data_type = ANY(%s) "
        "AND c.table_name <> 'django_migrations' ORDER BY 1, 2",
        [list(_TEXT_TYPES)],
    )
    return [(str(t), str(c), str(d)) for t, c, d in cursor.fetchall()]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def scan_database(where: str) -> None:
    """One query: which (table, column) holds any watched secret, as text or as UTF-8 bytes."""
    from django.db import connection, transaction

    secrets = WATCH.current()
    if not secrets:
        return
    try:
        with transaction.atomic(), connection.cursor() as cursor:   # a savepoint: a failure here stays here
            if WATCH.columns is None:
                WATCH.columns = _columns(cursor)
            parts = []
            for table, column, kind in WATCH.columns:
                value = f"t.{_quote(column)}"
                match = (f"position(convert_to(sec.s, 'UTF8') in {value}) > 0" if kind == "bytea"
                         else f"strpos({value}::text, sec.s) > 0")
                label = f"{table}.{column}".replace("'", "")
                parts.append(f"(SELECT '{label}'::text, sec.s FROM {_quote(table)} t, sec WHERE {match} LIMIT 1)")
            if not parts:
                return
            sql = "WITH sec(s) AS (SELECT unnest(%s::text[])) " + " UNION ALL ".join(parts)
            cursor.execute(sql, [secrets])
            hits = cursor.fetchall()
    except Exception:  # the test left its transaction broken, or the database is gone: nothing to scan
        WATCH.db_skipped += 1
        return
    WATCH.db_scans += 1
    for column, secret in hits:
        WATCH.findings.append(f"database column {column} after {where}: holds the secret "
                              f"{secret[:4]}...{secret[-2:]} ({len(secret)} chars) in clear text")


# ----------------------------------------------------------------------------- hooks


_HANDLER = SecretLogHandler()


@pytest.fixture(scope="session", autouse=True)
def _secrets_watch() -> Iterator[Watch]:
    handler = _HANDLER
    root = logging.getLogger()
    root.addHandler(handler)
    with pytest.MonkeyPatch.context() as mp:
        _install_recorders(mp)
        _install_response_hook(mp)
        try:
            yield WATCH
        finally:
            root.removeHandler(handler)


@pytest.fixture(autouse=True)
def _secrets_scan(request: pytest.FixtureRequest, _secrets_watch: Watch) -> Iterator[None]:
    """Scan the test's database before its rollback or flush; fail the test when it leaked a secret."""
    uses_db = ("_django_db_helper" in request.fixturenames
               or request.node.get_closest_marker("django_db") is not None)
    if uses_db:
        # Set up (or reuse) the database fixture now, so that it is torn down after this one.
        request.getfixturevalue("_django_db_helper")
    # Code under test may reconfigure logging (dictConfig replaces the root handlers): watch again.
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    before = len(WATCH.findings)
    yield
    if uses_db:
        scan_database(request.node.nodeid)
    new = WATCH.findings[before:]
    if new:
        pytest.fail("secrets in clear text:\n" + "\n".join(new[:20]), pytrace=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    w = WATCH
    terminalreporter.write_line(
        f"secrets: {len(w.secrets)} test passwords/tokens watched; {w.db_scans} database scans "
        f"({w.db_skipped} skipped), {w.log_records} log records, {w.responses} responses; "
        f"{len(w.findings)} found in clear text"
    )
    for finding in w.findings[:20]:
        terminalreporter.write_line(f"  {finding}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if WATCH.findings and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
