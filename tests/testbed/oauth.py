"""The OAuth 2 / OIDC mock: oauth/mock-server.mjs (oauth2-mock-server 8.2.3 plus a wrapper) run by node.

Its npm packages are installed by scripts/install-system.sh into TESTBED_CACHE/oauth/node_modules
(default ~/.cache/tms-testbed). Node resolves ESM imports next to the script and ignores NODE_PATH, so the
launcher copies the .mjs into the work directory next to a node_modules symlink, and runs `node` itself
(never npx: killing npx's pid would leave node running).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

import requests

from ._proc import HOST, ProcessServer, TestbedError, cache_dir, free_port, spawn, subdir, wait_until
from .certs import Certs

HERE = Path(__file__).resolve().parent
READY = re.compile(r"ready: issuer (https?://\S+)")
DEFAULT_REDIRECT = "http://127.0.0.1:8000/oauth/callback"     # nothing listens: the code is read off the 302
GOOGLE_SCOPES = ("https://mail.google.com/", "openid", "https://www.googleapis.com/auth/userinfo.email")
MICROSOFT_SCOPES = ("https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send",
                    "offline_access")


class OAuthError(Exception):
    """The token endpoint refused: error is the OAuth error code (invalid_grant, temporarily_unavailable)."""

    def __init__(self, status: int, error: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {error}: {body.get('error_description', '')}")
        self.status = status
        self.error = error
        self.body = body


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    id_token: str
    expires_in: int
    scope: str
    raw: dict[str, Any] = field(repr=False)

    @property
    def claims(self) -> dict[str, Any]:
        """The access token's claims, unverified (iss, email, scope, exp...)."""
        import jwt

        return dict(jwt.decode(self.access_token, options={"verify_signature": False}))


class OAuthServer(ProcessServer):
    """The mock on https://127.0.0.1:port with the test certificate (MSAL refuses http:// authorities).

    Google-shaped: issuer, authorize_url ({issuer}/authorize), token_url ({issuer}/token).
    Microsoft-shaped: ms_authority ({issuer}/common, for msal's authority= with instance_discovery=False or
    oidc_authority=), with /{tenant}/oauth2/v2.0/{authorize,token} and the discovery documents.
    Tokens are JWTs signed with a key kept in WORKDIR/oauth/signing-key.json (so it survives restart());
    the `email` claim is the login_hint given to /authorize. Issued refresh tokens live in memory: a
    restart() makes them all invalid_grant, as a revoked grant would be.
    """

    name = "oauth"

    def __init__(self, workdir: Path, certs: Certs, port: int | None = None, node: str | None = None) -> None:
        self.certs = certs
        self.dir = Path(workdir) / "oauth"
        self.log = self.dir / "mock.log"
        self.key_file = self.dir / "signing-key.json"
        self.port = port or free_port()
        self.node = node or shutil.which("node") or "/usr/bin/node"
        self.issuer = f"https://{HOST}:{self.port}"

    # ---- endpoints ----
    @property
    def authorize_url(self) -> str:
        return f"{self.issuer}/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def introspect_url(self) -> str:
        return f"{self.issuer}/introspect"

    @property
    def userinfo_url(self) -> str:
        return f"{self.issuer}/userinfo"

    @property
    def revoke_url(self) -> str:
        return f"{self.issuer}/revoke"

    @property
    def ms_authority(self) -> str:
        return f"{self.issuer}/common"

    def google_client_config(self, client_id: str = "google-client-id", client_secret: str = "google-secret",
                             redirect_uri: str = DEFAULT_REDIRECT) -> dict[str, Any]:
        """A client config for google_auth_oauthlib.flow.Flow.from_client_config()."""
        return {"web": {"client_id": client_id, "client_secret": client_secret, "auth_uri": self.authorize_url,
                        "token_uri": self.token_url, "redirect_uris": [redirect_uri]}}

    # ---- process ----
    def start(self) -> Self:
        if self.running:
            return self
        modules = cache_dir() / "oauth" / "node_modules"
        if not (modules / "oauth2-mock-server" / "package.json").exists():
            raise TestbedError(f"no {modules}/oauth2-mock-server: run scripts/install-system.sh")
        self.certs.create()
        subdir(self.dir.parent, self.dir.name)
        script = self.dir / "mock-server.mjs"
        shutil.copyfile(HERE / "oauth" / "mock-server.mjs", script)
        link = self.dir / "node_modules"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(modules)
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = spawn([self.node, script, "--host", HOST, "--port", str(self.port), "--cert", self.certs.cert,
                           "--key", self.certs.key, "--jwk", self.key_file], self.log)

        def ready() -> bool:
            with open(self.log, "rb") as f:
                f.seek(offset)
                m = READY.search(f.read().decode(errors="replace"))
            if m:
                self.issuer = m.group(1)
            return m is not None

        wait_until("oauth mock", ready, 20, self.proc, self.log)
        return self

    # ---- flows ----
    def _session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False          # a REQUESTS_CA_BUNDLE in the environment would override verify=
        s.verify = str(self.certs.ca)
        return s

    def authorize(self, email: str, scopes: tuple[str, ...] | list[str] = GOOGLE_SCOPES,
                  client_id: str = "tms-test-client", redirect_uri: str = DEFAULT_REDIRECT,
                  state: str = "state") -> str:
        """What the browser does: GET /authorize with login_hint; returns the code from the 302's Location."""
        with self._session() as s:
            r = s.get(self.authorize_url, allow_redirects=False, timeout=10, params={
                "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                "scope": " ".join(scopes), "state": state, "login_hint": email})
        if r.status_code != 302:
            raise TestbedError(f"/authorize answered {r.status_code}: {r.text[:200]}")
        query = parse_qs(urlparse(r.headers["Location"]).query)
        return query["code"][0]

    def _token(self, form: dict[str, str]) -> Tokens:
        with self._session() as s:
            r = s.post(self.token_url, data=form, timeout=10)
        body = r.json()
        if r.status_code != 200:
            raise OAuthError(r.status_code, body.get("error", "?"), body)
        return Tokens(access_token=body["access_token"], refresh_token=body.get("refresh_token", ""),
                      id_token=body.get("id_token", ""), expires_in=int(body.get("expires_in", 0)),
                      scope=body.get("scope", ""), raw=body)

    def token_for(self, email: str, scopes: tuple[str, ...] | list[str] = GOOGLE_SCOPES,
                  client_id: str = "tms-test-client", client_secret: str = "tms-test-secret",
                  redirect_uri: str = DEFAULT_REDIRECT) -> Tokens:
        """Drive the authorization-code flow for email: access, refresh and id token."""
        code = self.authorize(email, scopes, client_id, redirect_uri)
        return self._token({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                            "client_id": client_id, "client_secret": client_secret})

    def refresh(self, refresh_token: str, client_id: str = "tms-test-client",
                client_secret: str = "tms-test-secret") -> Tokens:
        """Redeem a refresh token; OAuthError(error="invalid_grant") when revoked or unknown."""
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token,
                            "client_id": client_id, "client_secret": client_secret})

    # ---- test control (the wrapper's POST /testbed/control, and RFC 7009 /revoke) ----
    def control(self, **changes: Any) -> dict[str, Any]:
        with self._session() as s:
            r = s.post(f"{self.issuer}/testbed/control", data=json.dumps(changes), timeout=10,
                       headers={"content-type": "application/json"})
        r.raise_for_status()
        return dict(r.json())

    def state(self) -> dict[str, Any]:
        """{"token_requests": {grant_type: count}, "refresh_tokens": n, "access_ttl", "rotate_refresh",
        "fail_token"}"""
        return self.control()

    def revoke(self, refresh_token: str) -> None:
        """Revoke one refresh token (RFC 7009): it gets invalid_grant from now on."""
        with self._session() as s:
            s.post(self.revoke_url, data={"token": refresh_token}, timeout=10).raise_for_status()

    def revoke_user(self, email: str) -> None:
        """Every refresh token issued for email gets invalid_grant (the user revoked the app's access)."""
        self.control(revoke_user=email)

    def revoke_all(self) -> None:
        self.control(revoke_all=True)

    def set_access_ttl(self, seconds: int | None) -> None:
        """Access tokens issued from now on expire after seconds (None: the default 3600)."""
        self.control(access_ttl=seconds)

    def set_rotate_refresh(self, on: bool = True) -> None:
        """On: each refresh grant returns a new refresh token and the old one stops working."""
        self.control(rotate_refresh=on)

    def fail_token_requests(self, count: int = 1, status: int = 503,
                            error: str = "temporarily_unavailable") -> None:
        """The next count token requests (any grant) answer status with {"error": error}; count=0 clears."""
        self.control(fail_token={"count": count, "status": status, "error": error})

    def reset(self) -> None:
        """Back to normal behaviour (issued tokens stay valid) and the counters to zero."""
        self.control(access_ttl=None, rotate_refresh=False, fail_token=None, reset_counters=True)

    def mint(self, email: str, **claims: Any) -> str:
        """A token signed with the mock's own key, with claims changed at will: exp in the past (expired),
        iss="https://issuer.invalid" (wrong issuer)... Unlike the mock's tokens, nothing is stored."""
        import jwt

        jwk = json.loads(self.key_file.read_text())
        now = int(time.time())
        payload = {"iss": self.issuer, "iat": now, "nbf": now - 10, "exp": now + 3600, "sub": email,
                   "email": email, "preferred_username": email, "scope": " ".join(GOOGLE_SCOPES), **claims}
        return jwt.encode(payload, jwt.PyJWK(jwk).key, algorithm="RS256", headers={"kid": jwk["kid"]})
