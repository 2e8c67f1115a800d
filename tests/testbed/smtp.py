"""aiosmtpd servers in background threads of this process: real SMTP, real TLS, real SASL.

  submission   STARTTLS required before AUTH; AUTH PLAIN LOGIN XOAUTH2; auth required
  submissions  implicit TLS, the same AUTH
  sink         no auth, no TLS: Dovecot submission and Postfix relay here

Every accepted message is kept (messages, a list of Received with the raw bytes) and written to the Maildir
WORKDIR/smtp/out; wait_for() waits for one. Faults can be injected: fail_next() answers the next N
MAIL / RCPT / DATA / AUTH commands with a chosen 4xx or 5xx reply, drop_next() closes the connection there.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import email
import email.message
import email.policy
import json
import logging
import mailbox
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ._proc import HOST, Server, free_port, subdir
from .certs import Certs
from .dovecot import DEFAULT_USERS
from .oauth import OAuthServer

ServerName = Literal["submission", "submissions", "sink"]


class _QuietAiosmtpd(logging.Filter):
    """aiosmtpd 1.4.6 logs a warning on every AUTH: it sets its own deprecated Session.login_data."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietAiosmtpd())

Stage = Literal["MAIL", "RCPT", "DATA", "AUTH"]


@dataclass(frozen=True)
class Received:
    """One accepted message. server: which of the three took it; auth_user: the SASL identity or None."""

    server: str
    auth_user: str | None
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    received_at: float = field(default_factory=time.time)

    def message(self) -> email.message.EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        return msg

    @property
    def subject(self) -> str:
        return " ".join(str(self.message()["Subject"] or "").split())     # unfolded

    @property
    def message_id(self) -> str:
        return str(self.message()["Message-ID"] or "").strip()


@dataclass
class Fault:
    stage: Stage
    remaining: int
    reply: str | None                   # None: drop the connection
    servers: frozenset[str] | None      # None: any of the three


class _Store:
    """What the servers accepted and the faults to inject, shared with the server threads."""

    def __init__(self, maildir: Path) -> None:
        self.cond = threading.Condition()
        self.messages: list[Received] = []
        self.faults: list[Fault] = []
        self.maildir = mailbox.Maildir(maildir, create=True)

    def add(self, rec: Received) -> None:
        with self.cond:
            self.messages.append(rec)
            self.maildir.add(rec.data)
            self.cond.notify_all()

    def take_fault(self, stage: Stage, server: str) -> Fault | None:
        with self.cond:
            for fault in self.faults:
                if fault.stage == stage and (fault.servers is None or server in fault.servers):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return fault
        return None


def _abort(server: SMTP) -> None:
    """Close the connection at once: after abort() nothing more is written, not even a pending reply."""
    transport = server.transport
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    elif transport is not None:
        transport.close()


class _TestbedSMTP(SMTP):
    """aiosmtpd's SMTP with long AUTH lines and fault injection.

    Line limits: aiosmtpd reads lines with a 1001-byte StreamReader limit and checks commands against 512
    bytes, so "AUTH XOAUTH2 <base64>" (about 1.3 KB with the mock's JWTs, more with Microsoft's tokens) would
    get "500 Command line too long". RFC 4954 allows 12288-octet AUTH lines: raise both limits for AUTH and
    keep 1001 bytes for DATA lines (RFC 5321).
    """

    line_length_limit = 12290          # read by SMTP.__init__ when it builds the StreamReader

    def __init__(self, *args: Any, store: _Store, server_name: str, implicit_tls: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if implicit_tls:
            # aiosmtpd does not notice implicit TLS (Controller ssl_context=): with auth_require_tls it would
            # hide AUTH on the SMTPS port and answer 538. Turned off here rather than through the argument,
            # which warns on every connection; the connection is TLS anyway.
            self._auth_require_tls = False
        self.line_length_limit = 1001
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit, {"AUTH": 12288})
        self.store = store
        self.server_name = server_name

    async def _fault(self, stage: Stage) -> bool:
        """Apply an injected fault for this command; True when it was answered (or the connection dropped)."""
        fault = self.store.take_fault(stage, self.server_name)
        if fault is None:
            return False
        if fault.reply is None:
            _abort(self)           # nothing more is written; the client sees the connection close
        else:
            await self.push(fault.reply)
        return True

    async def smtp_MAIL(self, arg: str) -> None:
        if not await self._fault("MAIL"):
            await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        if not await self._fault("RCPT"):
            await super().smtp_RCPT(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        if not await self._fault("AUTH"):
            await super().smtp_AUTH(arg)


class _Handler:
    def __init__(self, name: str, store: _Store, users: dict[str, str], verify_bearer: Callable[[str], dict[str, Any]]
                 ) -> None:
        self.name = name
        self.store = store
        self.users = users
        self.verify_bearer = verify_bearer
        self.last_xoauth2_error = ""       # why the last XOAUTH2 login was refused

    async def handle_DATA(self, server: _TestbedSMTP, session: Session, envelope: Envelope) -> str:
        # DATA faults answer after the message was sent: the client cannot tell whether it was taken
        fault = self.store.take_fault("DATA", self.name)
        if fault is not None:
            if fault.reply is None:
                _abort(server)
                return "421 4.4.2 connection dropped by the test bed"     # never written: the transport is gone
            return fault.reply
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        self.store.add(Received(server=self.name, auth_user=session.auth_data if session.authenticated else None,
                                mail_from=str(envelope.mail_from), rcpt_tos=tuple(envelope.rcpt_tos), data=content))
        return "250 2.0.0 OK queued"

    # A SASL mechanism of our own: aiosmtpd picks up handler methods named auth_<MECHANISM>.
    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        try:
            blob = base64.b64decode(args[1], validate=True) if len(args) == 2 else await server.challenge_auth("")
            if not isinstance(blob, bytes):
                raise ValueError("no response")
            parts = dict(p.split("=", 1) for p in blob.decode().split("\x01") if p)
            user, token = parts["user"], parts["auth"].removeprefix("Bearer ")
            claims = self.verify_bearer(token)
            if claims.get("email") != user:
                raise ValueError("user does not match the token's email")
            return AuthResult(success=True, auth_data=user)
        except Exception as exc:      # a malformed response, PyJWT's errors, the JWKS fetch: all refuse
            self.last_xoauth2_error = f"{type(exc).__name__}: {exc}"
        # As Gmail does: 334 + base64 JSON error, the client answers with an empty line, then 535.
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer",
                                                "scope": "https://mail.google.com/"}))
        return AuthResult(success=False, handled=False)

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if user in self.users and self.users[user] == password:
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)


class _Controller(Controller):
    def __init__(self, handler: _Handler, port: int, store: _Store, *, starttls: Any = None,
                 implicit_tls: Any = None, auth: bool = True) -> None:
        self.starttls_ctx = starttls
        self.auth = auth
        self.store = store
        super().__init__(handler, hostname=HOST, port=port, ssl_context=implicit_tls)

    def factory(self) -> SMTP:
        handler = self.handler
        assert isinstance(handler, _Handler)
        kwargs: dict[str, Any] = {"hostname": "mx.example.test", "store": self.store, "server_name": handler.name}
        if self.auth:
            starttls = self.starttls_ctx is not None
            kwargs.update(tls_context=self.starttls_ctx, require_starttls=starttls, auth_required=True,
                          implicit_tls=self.ssl_context is not None, authenticator=handler.authenticate)
        # The sink keeps aiosmtpd's auth_require_tls=True: without TLS it then advertises no AUTH, so Dovecot
        # submission does not add an AUTH= parameter to MAIL FROM, which aiosmtpd would refuse with 555.
        return _TestbedSMTP(handler, **kwargs)


class SmtpServers(Server):
    """The three aiosmtpd servers on free ports of 127.0.0.1: submission_port (STARTTLS), submissions_port
    (implicit TLS), sink_port (no auth). users: dict email -> password for PLAIN/LOGIN (shared, mutable).
    XOAUTH2 tokens are JWTs checked against the OAuth server's JWKS (signature, iss, exp), and the SASL user
    must equal the token's email claim; without an OAuth server XOAUTH2 is always refused."""

    name = "smtp"

    def __init__(self, workdir: Path, certs: Certs, oauth: OAuthServer | None = None,
                 users: dict[str, str] | None = None) -> None:
        self.certs = certs
        self.oauth = oauth
        self.dir = Path(workdir) / "smtp"
        self.maildir = self.dir / "out"
        self.users: dict[str, str] = dict(DEFAULT_USERS) if users is None else users      # read live
        self.submission_port = free_port()
        self.submissions_port = free_port()
        self.sink_port = free_port()
        self.host = HOST
        self._store: _Store | None = None
        self._controllers: list[_Controller] = []
        self._jwks: dict[str, Any] = {}

    @property
    def ports(self) -> dict[str, int]:
        return {"submission": self.submission_port, "submissions": self.submissions_port, "sink": self.sink_port}

    @property
    def running(self) -> bool:
        return bool(self._controllers)

    def add_user(self, email: str, password: str) -> None:
        self.users[email] = password

    # ---- XOAUTH2 ----
    def _verify_bearer(self, token: str) -> dict[str, Any]:
        import jwt

        if self.oauth is None:
            raise ValueError("no OAuth server configured")
        kid = str(jwt.get_unverified_header(token).get("kid", ""))
        if kid not in self._jwks:       # fetched on first use and when the key is unknown
            with requests.Session() as s:
                s.trust_env = False
                jwks = s.get(self.oauth.jwks_url, verify=str(self.certs.ca), timeout=5).json()
            self._jwks = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}
        return dict(jwt.decode(token, self._jwks[kid], algorithms=["RS256"], issuer=self.oauth.issuer,
                               options={"verify_aud": False}))

    # ---- process ----
    def start(self) -> Self:
        if self.running:
            return self
        self.certs.create()
        subdir(self.dir.parent, self.dir.name)
        if self._store is None:
            self._store = _Store(self.maildir)
        store = self._store

        def handler(name: str) -> _Handler:
            return _Handler(name, store, self.users, self._verify_bearer)

        self._controllers = [
            _Controller(handler("submission"), self.submission_port, store, starttls=self.certs.server_context()),
            _Controller(handler("submissions"), self.submissions_port, store,
                        implicit_tls=self.certs.server_context()),
            _Controller(handler("sink"), self.sink_port, store, auth=False),
        ]
        started: list[_Controller] = []
        try:
            for c in self._controllers:
                c.start()
                started.append(c)
        except BaseException:
            for c in started:
                c.stop()
            self._controllers = []
            raise
        return self

    def stop(self) -> None:
        for c in self._controllers:
            c.stop()
        self._controllers = []

    # ---- what arrived ----
    @property
    def messages(self) -> list[Received]:
        store = self._require()
        with store.cond:
            return list(store.messages)

    def clear(self) -> None:
        """Forget the accepted messages (the Maildir keeps them) and the pending faults."""
        store = self._require()
        with store.cond:
            store.messages.clear()
            store.faults.clear()

    def wait_for(self, predicate: Callable[[Received], bool] = lambda _m: True, timeout: float = 10.0) -> Received:
        """The first accepted message (since start or clear()) that predicate accepts; waits up to timeout
        seconds, then raises TimeoutError. Example: wait_for(lambda m: m.subject == "hello")."""
        store = self._require()
        deadline = time.monotonic() + timeout
        with store.cond:
            while True:
                for m in store.messages:
                    if predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching message after {timeout} s; got {len(store.messages)}: "
                                       f"{[m.subject for m in store.messages][-5:]}")
                store.cond.wait(left)

    # ---- faults ----
    def fail_next(self, stage: Stage, code: int = 451, text: str | None = None, count: int = 1,
                  server: ServerName | tuple[ServerName, ...] | None = None) -> None:
        """Answer the next count MAIL / RCPT / AUTH commands, or the next count DATA transactions (after the
        body), with code, on any server or the ones named. 4xx: temporary; 5xx: permanent."""
        if not 400 <= code < 600:
            raise ValueError("code must be 4xx or 5xx")
        if text is None:
            text = ("4.3.0 temporary failure" if code < 500 else "5.7.1 rejected") + " (injected by the test bed)"
        self._add_fault(Fault(stage, count, f"{code} {text}", _servers(server)))

    def drop_next(self, stage: Stage, count: int = 1,
                  server: ServerName | tuple[ServerName, ...] | None = None) -> None:
        """Close the connection, without a reply, at the next count MAIL / RCPT / AUTH commands or after the
        next count DATA bodies."""
        self._add_fault(Fault(stage, count, None, _servers(server)))

    def clear_faults(self) -> None:
        store = self._require()
        with store.cond:
            store.faults.clear()

    def _add_fault(self, fault: Fault) -> None:
        store = self._require()
        with store.cond:
            store.faults.append(fault)

    def _require(self) -> _Store:
        if self._store is None:
            raise RuntimeError("SmtpServers not started")
        return self._store


def _servers(server: str | tuple[str, ...] | None) -> frozenset[str] | None:
    if server is None:
        return None
    return frozenset((server,) if isinstance(server, str) else server)
