"""The test bed's servers answer and behave as real servers do: logins are checked, TLS is verified,
mail arrives, refusals are refusals. No Django database needed."""

from __future__ import annotations

import asyncio
import http.server
import os
import smtplib
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import psycopg
import pytest
import redis
import requests
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.testbed import (
    Certs,
    Dovecot,
    OAuthError,
    OAuthServer,
    Postfix,
    Postgres,
    Redis,
    SmtpServers,
    Testbed,
    make_message,
)

ALICE, ALICE_PW = "alice@example.test", "alice-pass"
BOB = "bob@example.test"
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


def subject() -> str:
    return f"testbed {uuid.uuid4().hex[:10]}"


def message(subj: str, sender: str = ALICE, to: str = BOB) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, subj
    m.set_content("hello from the test bed\n")
    return m


# ---- TLS and environment ----

def test_it_verifies_the_servers_certificate_with_the_test_ca_only(certs: Certs, dovecot: Dovecot) -> None:
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=certs.client_context(), timeout=10) as c:
        assert b"IMAP4REV1" in c.capabilities()
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=ssl.create_default_context(cafile=SYSTEM_CAS),
                   timeout=10)


def test_it_points_the_session_environment_at_the_bundle(certs: Certs, oauth_server: OAuthServer) -> None:
    assert os.environ["REQUESTS_CA_BUNDLE"] == os.environ["SSL_CERT_FILE"] == str(certs.bundle)
    assert os.environ["OAUTHLIB_INSECURE_TRANSPORT"] == os.environ["OAUTHLIB_RELAX_TOKEN_SCOPE"] == "1"
    assert certs.ca.read_bytes() in certs.bundle.read_bytes()
    # requests without verify= trusts the mock through REQUESTS_CA_BUNDLE
    doc = requests.get(f"{oauth_server.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == oauth_server.issuer
    assert doc["token_endpoint"] == oauth_server.token_url
    # so does ssl.create_default_context() through SSL_CERT_FILE
    ctx = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", oauth_server.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version()


# ---- IMAP ----

def test_it_logs_in_to_imap_with_a_password_and_refuses_a_wrong_one(certs: Certs, dovecot: Dovecot) -> None:
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=certs.client_context(), timeout=10) as c:
        assert c.login(ALICE, ALICE_PW)
        assert c.select_folder("INBOX")[b"UIDVALIDITY"] > 0
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=certs.client_context(), timeout=10) as c, \
            pytest.raises(LoginError):
        c.login(ALICE, "wrong-password")


def test_it_speaks_starttls_on_the_plain_imap_port(certs: Certs, dovecot: Dovecot) -> None:
    with IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False, timeout=10) as c:
        c.starttls(certs.client_context())
        c.login(BOB, "bob-pass")
        caps = set(c.capabilities())
    assert {b"IDLE", b"MOVE", b"UIDPLUS", b"SPECIAL-USE", b"CONDSTORE", b"QRESYNC"} <= caps


def test_it_logs_in_to_imap_with_an_oauth_token_and_refuses_garbage(
        certs: Certs, dovecot: Dovecot, oauth_server: OAuthServer) -> None:
    tokens = oauth_server.token_for(ALICE)
    assert tokens.claims["email"] == ALICE and tokens.claims["iss"] == oauth_server.issuer
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=certs.client_context(), timeout=10) as c:
        c.oauth2_login(ALICE, tokens.access_token)
        assert c.select_folder("INBOX", readonly=True)
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=certs.client_context(), timeout=10) as c, \
            pytest.raises(LoginError):
        c.oauth2_login(ALICE, "not-a-jwt")


def test_it_appends_and_fetches_by_uid(certs: Certs, dovecot: Dovecot) -> None:
    subj = subject()
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=certs.client_context(), timeout=10) as c:
        c.login(ALICE, ALICE_PW)
        folders = {f[2]: f[0] for f in c.list_folders()}
        assert {"INBOX", "Sent", "Drafts", "Trash", "Archive"} <= set(folders)
        assert c.find_special_folder(b"\\Sent") == "Sent"
        c.append("INBOX", make_message(BOB, ALICE, subj))
        c.select_folder("INBOX")
        uids = c.search(["SUBJECT", subj])
        assert len(uids) == 1
        data = c.fetch(uids, ["RFC822", "FLAGS"])[uids[0]]
    assert subj.encode() in data[b"RFC822"]
    assert dovecot.message_count(ALICE) >= 1


def test_it_adds_a_user_that_can_log_in_at_once(certs: Certs, dovecot: Dovecot) -> None:
    user = f"u{uuid.uuid4().hex[:8]}@example.test"
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=certs.client_context(), timeout=10) as c, \
            pytest.raises(LoginError):
        c.login(user, "secret-1")
    dovecot.add_user(user, "secret-1")
    uid = dovecot.append(user, make_message(ALICE, user, "welcome"))
    assert uid >= 1
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=certs.client_context(), timeout=10) as c:
        c.login(user, "secret-1")
        assert c.select_folder("INBOX")[b"EXISTS"] == 1
    assert dovecot.maildir(user).is_dir()
    dovecot.add_user(user, "secret-2")       # a changed password counts from the next login
    with IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl_context=certs.client_context(), timeout=10) as c:
        c.login(user, "secret-2")


# ---- SMTP: aiosmtpd ----

def test_it_accepts_plain_auth_over_starttls_and_implicit_tls(certs: Certs, smtp_server: SmtpServers) -> None:
    s1, s2 = subject(), subject()
    with smtplib.SMTP("127.0.0.1", smtp_server.submission_port, timeout=10) as c:
        c.starttls(context=certs.client_context())
        c.login(ALICE, ALICE_PW)
        c.send_message(message(s1))
    with smtplib.SMTP_SSL("127.0.0.1", smtp_server.submissions_port, context=certs.client_context(),
                          timeout=10) as c:
        c.login(ALICE, ALICE_PW)
        c.send_message(message(s2))
    got = smtp_server.wait_for(lambda m: m.subject == s1)
    assert (got.server, got.auth_user, got.rcpt_tos) == ("submission", ALICE, (BOB,))
    assert smtp_server.wait_for(lambda m: m.subject == s2).server == "submissions"


def test_it_refuses_a_wrong_password_and_mail_without_auth(certs: Certs, smtp_server: SmtpServers) -> None:
    with smtplib.SMTP("127.0.0.1", smtp_server.submission_port, timeout=10) as c:
        c.starttls(context=certs.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login(ALICE, "wrong")
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            c.send_message(message(subject()))
        assert exc.value.smtp_code == 530


def test_it_accepts_xoauth2_and_refuses_a_bad_token(
        certs: Certs, smtp_server: SmtpServers, oauth_server: OAuthServer) -> None:
    token = oauth_server.token_for(ALICE).access_token
    subj = subject()

    async def send(tok: str, port: int, **tls: object) -> None:
        async def gen() -> str:
            return tok
        await aiosmtplib.send(message(subj), hostname="127.0.0.1", port=port, tls_context=certs.client_context(),
                              username=ALICE, oauth_token_generator=gen, timeout=10, **tls)  # type: ignore[arg-type]

    asyncio.run(send(token, smtp_server.submission_port, start_tls=True))
    assert smtp_server.wait_for(lambda m: m.subject == subj).auth_user == ALICE
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as exc:
        asyncio.run(send("garbage", smtp_server.submissions_port, use_tls=True))
    assert exc.value.code == 535


def test_it_injects_smtp_faults_and_recovers(smtp_server: SmtpServers) -> None:
    subj = subject()

    async def send() -> None:
        await aiosmtplib.send(message(subj), hostname="127.0.0.1", port=smtp_server.sink_port, timeout=10)

    smtp_server.fail_next("RCPT", 451, server="sink")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as rcpt:
        asyncio.run(send())
    assert rcpt.value.recipients[0].code == 451
    smtp_server.fail_next("DATA", 554)
    with pytest.raises(aiosmtplib.SMTPDataError) as data:
        asyncio.run(send())
    assert data.value.code == 554
    smtp_server.drop_next("DATA")
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        asyncio.run(send())
    assert not [m for m in smtp_server.messages if m.subject == subj]
    asyncio.run(send())          # the faults are used up
    assert smtp_server.wait_for(lambda m: m.subject == subj).server == "sink"


# ---- SMTP: Dovecot submission and Postfix, relaying to the sink ----

def test_it_relays_dovecot_submission_to_the_sink(certs: Certs, dovecot: Dovecot, smtp_server: SmtpServers) -> None:
    subj = subject()
    with smtplib.SMTP_SSL("127.0.0.1", dovecot.submissions_port, context=certs.client_context(), timeout=10) as c:
        c.login(ALICE, ALICE_PW)
        c.send_message(message(subj))
    assert smtp_server.wait_for(lambda m: m.subject == subj).server == "sink"


def test_it_sends_through_postfix_with_dovecot_sasl(
        certs: Certs, postfix: Postfix, smtp_server: SmtpServers, oauth_server: OAuthServer) -> None:
    token = oauth_server.token_for(ALICE).access_token
    s1, s2 = subject(), subject()

    async def send() -> None:
        async def gen() -> str:
            return token
        # XOAUTH2 with the JWT in the initial response, as Gmail and Outlook take it
        await aiosmtplib.send(message(s1), hostname="127.0.0.1", port=postfix.port, start_tls=True,
                              tls_context=certs.client_context(), username=ALICE, oauth_token_generator=gen,
                              timeout=10)
        await aiosmtplib.send(message(s2), hostname="127.0.0.1", port=postfix.tls_port, use_tls=True,
                              tls_context=certs.client_context(), username=ALICE, password=ALICE_PW, timeout=10)
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await aiosmtplib.send(message(subject()), hostname="127.0.0.1", port=postfix.tls_port, use_tls=True,
                                  tls_context=certs.client_context(), username=ALICE, password="wrong", timeout=10)

    asyncio.run(send())
    assert smtp_server.wait_for(lambda m: m.subject == s1).server == "sink"
    assert smtp_server.wait_for(lambda m: m.subject == s2).server == "sink"


# ---- OAuth ----

def test_it_issues_refreshes_and_revokes_tokens(oauth_server: OAuthServer) -> None:
    first = oauth_server.token_for(BOB)
    assert first.refresh_token and first.id_token
    again = oauth_server.refresh(first.refresh_token)
    assert again.claims["email"] == BOB
    oauth_server.revoke(first.refresh_token)
    with pytest.raises(OAuthError) as exc:
        oauth_server.refresh(first.refresh_token)
    assert exc.value.error == "invalid_grant"
    oauth_server.fail_token_requests(1, status=503)
    try:
        with pytest.raises(OAuthError) as failed:
            oauth_server.refresh(again.refresh_token)
        assert failed.value.status == 503
        assert oauth_server.refresh(again.refresh_token).claims["email"] == BOB
    finally:
        oauth_server.reset()


# ---- Redis and PostgreSQL ----

def test_it_runs_redis_and_survives_a_restart(redis_server: Redis) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    client.set("testbed", "ok")
    assert client.get("testbed") == b"ok"
    redis_server.restart()
    assert redis.Redis.from_url(redis_server.url, socket_timeout=5).ping()


def test_it_runs_postgres_and_survives_a_restart(postgres_server: Postgres) -> None:
    assert postgres_server.url.startswith("postgres://postgres@127.0.0.1:")
    with psycopg.connect(postgres_server.url, connect_timeout=5) as conn:
        assert conn.execute("select current_setting('fsync')").fetchone() == ("off",)
    postgres_server.restart()
    with psycopg.connect(postgres_server.url, connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


# ---- Browser ----

PAGE = b"""<!doctype html><title>test bed</title>
<button onclick="document.getElementById('s').textContent = 'clicked'">Press</button><p id="s">idle</p>"""


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "index.html").write_bytes(PAGE)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_it_drives_chromium(page: object, static_site: str) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    assert os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] == "true"      # while the browser runs
    page.goto(static_site)
    page.get_by_role("button", name="Press").click()
    page.wait_for_selector("text=clicked", timeout=5000)
    assert page.inner_text("#s") == "clicked"


def test_it_stops_the_browser_before_a_test_that_does_not_use_it(testbed: Testbed) -> None:
    # runs after test_it_drives_chromium: asyncio.run() works again, and the ORM switch is off
    async def answer() -> int:
        return 42

    assert asyncio.run(answer()) == 42
    browser = testbed._servers.get("browser")
    assert browser is None or not browser.running
    assert os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE") != "true"
