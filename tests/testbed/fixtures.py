"""pytest plugin: the test bed's servers as session fixtures, each started on first use.

Load it from tests/conftest.py with `pytest_plugins = ["tests.testbed.fixtures"]`.

Session fixtures (started once per session, when a test first asks; stopped at the end of the session):
    testbed        the Testbed (work directory, lazily started servers)
    certs          Certs: .ca (test CA), .bundle (system CAs + test CA), .cert / .key (127.0.0.1, localhost)
    oauth_server   OAuthServer: .issuer, .authorize_url, .token_url, .ms_authority, .token_for(email)...
    smtp_server    SmtpServers (aiosmtpd): .submission_port, .submissions_port, .sink_port, .users,
                   .messages, .wait_for(pred), .fail_next(), .drop_next(), .clear()
    dovecot        Dovecot: .imap_port, .imaps_port, .submission_port, .submissions_port, .auth_port,
                   .users, .add_user(), .append(), .maildir()       (relays to smtp_server's sink)
    postfix        Postfix: .port (STARTTLS), .tls_port; SASL by dovecot, relays to smtp_server's sink
    redis_server   Redis: .url, .port, .restart()
    postgres_server  Postgres: .url, .port, .restart() (the one start_postgres_for_session() starts)
Function fixtures:
    browser        a Playwright Browser on Debian's Chromium. Not session-wide: it runs only while
                   consecutive tests use it (Playwright's sync API breaks asyncio.run() and Django's ORM in
                   the thread while it runs; see _start_browser); DJANGO_ALLOW_ASYNC_UNSAFE=true meanwhile
    page           a Playwright Page in a fresh context (ignore_https_errors=True), closed afterwards

For the whole session (autouse): REQUESTS_CA_BUNDLE and SSL_CERT_FILE name certs.bundle;
OAUTHLIB_INSECURE_TRANSPORT=1 and OAUTHLIB_RELAX_TOKEN_SCOPE=1.

PostgreSQL for Django: start_postgres_for_session() returns the URL of the session's throwaway cluster
(starting it on the first call), for a conftest's django_db_modify_db_settings; with TESTBED_POSTGRES_URL
set it starts nothing and returns that. The cluster lives until pytest_unconfigure, after pytest-django has
dropped its test database. TESTBED_KEEP=1 keeps the work directory (configs, logs, Maildirs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .certs import Certs
from .dovecot import Dovecot
from .oauth import OAuthServer
from .postfix import Postfix
from .postgres import Postgres
from .redis import Redis
from .smtp import SmtpServers
from .testbed import Testbed

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

_session: dict[str, Testbed] = {}      # "testbed": the Testbed of this pytest process


def session_testbed() -> Testbed:
    """The Testbed of this pytest process (one per xdist worker), made on first use."""
    if "testbed" not in _session:
        _session["testbed"] = Testbed()
    return _session["testbed"]


def start_postgres_for_session() -> str:
    """URL of a PostgreSQL for this test session: TESTBED_POSTGRES_URL if set, else the session's throwaway
    cluster (started now if need be: about 1 s), e.g. postgres://postgres@127.0.0.1:PORT/postgres."""
    url = os.environ.get("TESTBED_POSTGRES_URL")
    if url:
        return url
    return session_testbed().postgres.url


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop whatever is still running (PostgreSQL, most likely) and remove the work directory."""
    _stop_browser()
    tb = _session.pop("testbed", None)
    if tb is not None:
        tb.stop()


@pytest.fixture(scope="session")
def testbed() -> Testbed:
    return session_testbed()


@pytest.fixture(scope="session")
def certs(testbed: Testbed) -> Certs:
    return testbed.certs


@pytest.fixture(scope="session", autouse=True)
def testbed_env(certs: Certs) -> Iterator[None]:
    """The CA bundle with the test CA for requests and ssl.create_default_context(), and oauthlib's
    switches for http://127.0.0.1 redirect URIs and for the mock's scopes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", str(certs.bundle))
        mp.setenv("SSL_CERT_FILE", str(certs.bundle))
        mp.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
        mp.setenv("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
        yield


@pytest.fixture(scope="session")
def oauth_server(testbed: Testbed) -> Iterator[OAuthServer]:
    yield testbed.oauth
    testbed.stop_server("oauth")


@pytest.fixture(scope="session")
def smtp_server(testbed: Testbed, oauth_server: OAuthServer) -> Iterator[SmtpServers]:
    yield testbed.smtp
    testbed.stop_server("smtp")


@pytest.fixture(scope="session")
def dovecot(testbed: Testbed, oauth_server: OAuthServer, smtp_server: SmtpServers) -> Iterator[Dovecot]:
    yield testbed.dovecot
    testbed.stop_server("dovecot")


@pytest.fixture(scope="session")
def postfix(testbed: Testbed, dovecot: Dovecot, smtp_server: SmtpServers) -> Iterator[Postfix]:
    yield testbed.postfix
    testbed.stop_server("postfix")


@pytest.fixture(scope="session")
def redis_server(testbed: Testbed) -> Iterator[Redis]:
    yield testbed.redis
    testbed.stop_server("redis")


@pytest.fixture(scope="session")
def postgres_server(testbed: Testbed) -> Postgres:
    """Shared with start_postgres_for_session(); stopped at pytest_unconfigure, after Django's teardown."""
    return testbed.postgres


# ---- the browser ----
# Playwright's sync API leaves an asyncio loop marked as running in the thread that started it, for as long
# as it runs. Meanwhile asyncio.run() raises "cannot be called from a running event loop" (aiosmtplib in a
# test), and Django's ORM raises SynchronousOnlyOperation. So the browser runs only while consecutive tests
# use it: it starts for the first test that asks for `browser` or `page` and stops before the next test that
# does not; and while it runs, DJANGO_ALLOW_ASYNC_UNSAFE=true lets such tests use the ORM (Django's documented
# switch for this case).
BROWSER_FIXTURES = frozenset({"browser", "page"})
_UNSET = object()
_saved_env: dict[str, object] = {}


def _start_browser(tb: Testbed) -> Browser:
    if "DJANGO_ALLOW_ASYNC_UNSAFE" not in _saved_env:
        _saved_env["DJANGO_ALLOW_ASYNC_UNSAFE"] = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE", _UNSET)
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    return tb.browser.browser


def _stop_browser() -> None:
    tb = _session.get("testbed")
    if tb is not None:
        tb.stop_server("browser")
    for key, value in _saved_env.items():
        if value is _UNSET:
            os.environ.pop(key, None)
        else:
            os.environ[key] = str(value)
    _saved_env.clear()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _saved_env and not BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
        _stop_browser()


@pytest.fixture
def browser(testbed: Testbed) -> Browser:
    """A Playwright Browser on Debian's Chromium, shared by consecutive tests that use it (see above)."""
    return _start_browser(testbed)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1024, "height": 768})
    try:
        yield context.new_page()
    finally:
        context.close()
