"""All the servers of the test bed in one work directory, each started when first asked for."""

from __future__ import annotations

import atexit
import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from ._proc import Server, make_workdir, remove_tree
from .browser import ChromiumBrowser
from .certs import Certs
from .dovecot import DEFAULT_USERS, Dovecot
from .oauth import OAuthServer
from .postfix import Postfix
from .postgres import Postgres
from .redis import Redis
from .smtp import SmtpServers


class Testbed:
    """Lazily started servers sharing one work directory (default: a fresh /tmp/tb-XXXX).

        tb = Testbed()
        tb.dovecot.imaps_port     # starts the OAuth mock, aiosmtpd (its sink) and Dovecot
        tb.stop()                 # stops what was started, in reverse order; removes the work directory

    certs is made on first use; oauth, smtp, dovecot, postfix, redis, postgres and browser are started on
    first use (postfix after dovecot and smtp, which it needs). keep=True (or TESTBED_KEEP=1) keeps the
    work directory (configs, logs, Maildirs) after stop().
    """

    __test__ = False      # not a test class, whatever pytest thinks of the name

    def __init__(self, workdir: Path | None = None, keep: bool | None = None, oauth_mode: str = "post") -> None:
        self.workdir = Path(workdir) if workdir else make_workdir()
        self._owns_workdir = workdir is None
        self.keep = os.environ.get("TESTBED_KEEP") == "1" if keep is None else keep
        self.oauth_mode = oauth_mode
        # one user table for Dovecot (passwords and mailboxes) and aiosmtpd (PLAIN/LOGIN)
        self.users: dict[str, str] = dict(DEFAULT_USERS)
        self._certs: Certs | None = None
        self._servers: dict[str, Server] = {}
        self._order: list[str] = []
        # a script that forgets stop() (or dies of an exception) leaves no server behind
        atexit.register(self._stop_at_exit)

    # ---- the servers ----
    @property
    def certs(self) -> Certs:
        if self._certs is None:
            self._certs = Certs(self.workdir).create()
        return self._certs

    def _started(self, name: str) -> Server:
        server = self._servers[name]
        if not server.running:
            server.start()
            if name not in self._order:
                self._order.append(name)
        return server

    @property
    def oauth(self) -> OAuthServer:
        if "oauth" not in self._servers:
            self._servers["oauth"] = OAuthServer(self.workdir, self.certs)
        server = self._started("oauth")
        assert isinstance(server, OAuthServer)
        return server

    @property
    def smtp(self) -> SmtpServers:
        if "smtp" not in self._servers:
            self._servers["smtp"] = SmtpServers(self.workdir, self.certs, self.oauth, users=self.users)
        server = self._started("smtp")
        assert isinstance(server, SmtpServers)
        return server

    @property
    def dovecot(self) -> Dovecot:
        if "dovecot" not in self._servers:
            self._servers["dovecot"] = Dovecot(self.workdir, self.certs, self.oauth,
                                               relay_port=self.smtp.sink_port, users=self.users,
                                               oauth_mode=self.oauth_mode)
        server = self._started("dovecot")
        assert isinstance(server, Dovecot)
        return server

    @property
    def postfix(self) -> Postfix:
        if "postfix" not in self._servers:
            self._servers["postfix"] = Postfix(self.workdir, self.certs.cert, self.certs.key,
                                               dovecot_auth_port=self.dovecot.auth_port,
                                               relay_port=self.smtp.sink_port)
        server = self._started("postfix")
        assert isinstance(server, Postfix)
        return server

    @property
    def redis(self) -> Redis:
        if "redis" not in self._servers:
            self._servers["redis"] = Redis(self.workdir)
        server = self._started("redis")
        assert isinstance(server, Redis)
        return server

    @property
    def postgres(self) -> Postgres:
        if "postgres" not in self._servers:
            self._servers["postgres"] = Postgres(self.workdir)
        server = self._started("postgres")
        assert isinstance(server, Postgres)
        return server

    @property
    def browser(self) -> ChromiumBrowser:
        if "browser" not in self._servers:
            self._servers["browser"] = ChromiumBrowser(self.workdir)
        server = self._started("browser")
        assert isinstance(server, ChromiumBrowser)
        return server

    def start(self, *names: str) -> Self:
        """Start the named servers now (oauth smtp dovecot postfix redis postgres browser)."""
        for name in names:
            getattr(self, name)
        return self

    # ---- what clients need to know ----
    def env(self) -> dict[str, str]:
        """Environment for code under test: the CA bundle and OAuthlib's switches for http://127.0.0.1."""
        return {"REQUESTS_CA_BUNDLE": str(self.certs.bundle), "SSL_CERT_FILE": str(self.certs.bundle),
                "OAUTHLIB_INSECURE_TRANSPORT": "1", "OAUTHLIB_RELAX_TOKEN_SCOPE": "1"}

    def describe(self) -> dict[str, str]:
        """What is running, as TESTBED_* variables (printed by `python -m tests.testbed`)."""
        out = {"TESTBED_DIR": str(self.workdir), "TESTBED_CA": str(self.certs.ca),
               "TESTBED_CA_BUNDLE": str(self.certs.bundle)}
        s = self._servers
        if isinstance(o := s.get("oauth"), OAuthServer) and o.running:
            out |= {"TESTBED_OAUTH_ISSUER": o.issuer, "TESTBED_OAUTH_MS_AUTHORITY": o.ms_authority}
        if isinstance(m := s.get("smtp"), SmtpServers) and m.running:
            out |= {f"TESTBED_SMTP_{k.upper()}_PORT": str(v) for k, v in m.ports.items()}
        if isinstance(d := s.get("dovecot"), Dovecot) and d.running:
            out |= {f"TESTBED_DOVECOT_{k.upper()}_PORT": str(v) for k, v in d.ports.items()}
        if isinstance(p := s.get("postfix"), Postfix) and p.running:
            out |= {f"TESTBED_POSTFIX_{k.upper()}_PORT": str(v) for k, v in p.ports.items()}
        if isinstance(r := s.get("redis"), Redis) and r.running:
            out["TESTBED_REDIS_URL"] = r.url
        if isinstance(g := s.get("postgres"), Postgres) and g.running:
            out["TESTBED_POSTGRES_URL"] = g.url
        return out

    # ---- stopping ----
    def stop_server(self, name: str) -> None:
        server = self._servers.get(name)
        if server is not None:
            server.stop()

    def stop(self) -> None:
        """Stop every server started, last first; remove the work directory unless keep."""
        errors: list[BaseException] = []
        for name in reversed(self._order):
            try:
                self._servers[name].stop()
            except Exception as exc:       # stop the others all the same
                errors.append(exc)
        self._order.clear()
        if self._owns_workdir and not self.keep:
            remove_tree(self.workdir)
        if errors:
            raise errors[0]

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
