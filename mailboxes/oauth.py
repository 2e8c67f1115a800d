"""OAuth 2 for Google (google-auth-oauthlib) and Microsoft 365 (msal).

The authorization-code flow with PKCE: `authorization_start` returns the URL to send the browser to
and the state the callback needs (kept in the session, never in a cookie of its own);
`authorization_finish` redeems the code and says which account signed in; `token_refresh` turns a
refresh token into a fresh access token (and, with Microsoft, a new refresh token: always keep the
newest, Microsoft retires the old one).

Endpoints come from settings (GOOGLE_AUTH_URI, GOOGLE_TOKEN_URI, MICROSOFT_AUTHORITY) so that tests
point them at a local OAuth server. HTTPS is verified with the system CAs plus MAILBOX_CA_FILE; the
HTTP session ignores REQUESTS_CA_BUNDLE and friends from the environment, which would otherwise
override what we verify with. Nothing here touches the database.
"""

from __future__ import annotations

import ssl
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone
from requests.adapters import HTTPAdapter

GOOGLE = "google"
MICROSOFT = "microsoft"
PROVIDERS = (GOOGLE, MICROSOFT)

# Google: full IMAP/SMTP access is the https://mail.google.com/ scope; openid + email identify the
# account so that we can refuse the wrong one.
GOOGLE_SCOPES = ["https://mail.google.com/", "openid", "https://www.googleapis.com/auth/userinfo.email"]
# Microsoft: msal adds offline_access, openid and profile itself (and refuses them if given).
MICROSOFT_SCOPES = ["https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send"]

HTTP_TIMEOUT = 20


class OAuthError(Exception):
    """The provider refused. `invalid_grant`: the grant is revoked or expired, the user must sign in again."""

    def __init__(self, message: str, *, invalid_grant: bool = False, temporary: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.invalid_grant = invalid_grant
        self.temporary = temporary

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class AuthStart:
    url: str
    state: str
    flow: dict[str, Any]  # JSON-serialisable; the callback needs it (PKCE verifier, msal's flow)


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str  # empty when the provider did not send a new one: keep the old one then
    expires_at: datetime
    scopes: str
    email: str = ""  # the signed-in account (authorization only)


# ----------------------------------------------------------------------------- HTTP


@lru_cache(maxsize=4)
def _http_ssl_context(ca_file: str) -> ssl.SSLContext:
    # Our own context: urllib3 sets attributes on the context it is given, so it must not be the
    # one tms.net shares with the IMAP and SMTP connections.
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class _VerifyingAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = _http_ssl_context(settings.MAILBOX_CA_FILE)
        super().init_poolmanager(*args, **kwargs)


def configure_session(session: requests.Session) -> requests.Session:
    """Verify with the system CAs plus MAILBOX_CA_FILE, whatever REQUESTS_CA_BUNDLE says."""
    session.trust_env = False
    session.verify = True
    session.mount("https://", _VerifyingAdapter())
    return session


def http_session() -> requests.Session:
    return configure_session(requests.Session())


def _expires_at(expires_in: Any) -> datetime:
    try:
        seconds = int(expires_in)
    except (TypeError, ValueError):
        seconds = 3600
    return timezone.now() + timedelta(seconds=max(seconds, 0))


def _scopes_text(scope: Any) -> str:
    if isinstance(scope, list | tuple | set):
        return " ".join(str(s) for s in scope)
    return str(scope or "")


# ----------------------------------------------------------------------------- Google


def _google_config(redirect_uri: str) -> dict[str, Any]:
    return {
        "web": {
            "client_id": settings.GOOGLE_CLIENT_ID,
            "client_secret": settings.GOOGLE_CLIENT_SECRET,
            "auth_uri": settings.GOOGLE_AUTH_URI,
            "token_uri": settings.GOOGLE_TOKEN_URI,
            "redirect_uris": [redirect_uri],
        }
    }


def _google_flow(redirect_uri: str, **kwargs: Any) -> Any:
    from google_auth_oauthlib.flow import Flow

    flow = Flow.from_client_config(_google_config(redirect_uri), scopes=GOOGLE_SCOPES, redirect_uri=redirect_uri,
                                   **kwargs)
    configure_session(flow.oauth2session)
    return flow


def _google_start(login_hint: str, redirect_uri: str) -> AuthStart:
    flow = _google_flow(redirect_uri, autogenerate_code_verifier=True)
    # offline + consent: Google returns a refresh token only then (and again on every consent).
    url, state = flow.authorization_url(access_type="offline", prompt="consent", login_hint=login_hint,
                                        include_granted_scopes="false")
    return AuthStart(url=url, state=state, flow={"code_verifier": flow.code_verifier, "state": state})


def _google_finish(saved: dict[str, Any], params: dict[str, str], redirect_uri: str) -> TokenSet:
    from oauthlib.oauth2 import OAuth2Error

    flow = _google_flow(redirect_uri, state=saved["state"], code_verifier=saved["code_verifier"],
                        autogenerate_code_verifier=False)
    try:
        token = flow.fetch_token(code=params["code"], timeout=HTTP_TIMEOUT)
    except Warning as exc:
        # oauthlib raises "Scope has changed" when the granted scopes differ from the requested
        # ones (Google may add openid/profile). The token is fine; what was granted is checked below.
        token = getattr(exc, "token", None)
        if not token:
            raise OAuthError(f"Google sign-in failed: {exc}") from None
    except OAuth2Error as exc:
        raise OAuthError(f"Google refused the sign-in: {exc.error}", invalid_grant=exc.error == "invalid_grant") \
            from None
    except requests.RequestException as exc:
        raise OAuthError(f"Google could not be reached: {exc.__class__.__name__}", temporary=True) from None
    email = _email_from_id_token(token.get("id_token", ""), audience=settings.GOOGLE_CLIENT_ID)
    refresh_token = token.get("refresh_token") or ""
    if not refresh_token:
        raise OAuthError("Google sent no refresh token; please sign in again and allow offline access.")
    return TokenSet(access_token=token["access_token"], refresh_token=refresh_token,
                    expires_at=_expires_at(token.get("expires_in")), scopes=_scopes_text(token.get("scope")),
                    email=email)


def _email_from_id_token(id_token: str, *, audience: str) -> str:
    """The e-mail claim of an ID token received straight from the token endpoint over verified TLS
    (OpenID Connect Core 3.1.3.7 lets TLS stand in for the signature there); the audience is checked."""
    from google.auth import jwt as google_jwt

    if not id_token:
        raise OAuthError("the provider sent no ID token, so the account cannot be identified")
    try:
        claims = google_jwt.decode(id_token, verify=False)
    except ValueError:
        raise OAuthError("the provider's ID token could not be read") from None
    aud = claims.get("aud")
    if audience and aud != audience and not (isinstance(aud, list) and audience in aud):
        raise OAuthError("the ID token was not issued to this application")
    email = claims.get("email") or claims.get("preferred_username") or ""
    return str(email)


def _google_refresh(refresh_token: str) -> TokenSet:
    from google.auth.exceptions import RefreshError, TransportError
    from google.auth.transport.requests import Request
    from google.oauth2.credentials import Credentials

    credentials = Credentials(None, refresh_token=refresh_token, token_uri=settings.GOOGLE_TOKEN_URI,
                              client_id=settings.GOOGLE_CLIENT_ID, client_secret=settings.GOOGLE_CLIENT_SECRET)
    with http_session() as session:
        try:
            credentials.refresh(Request(session=session))
        except RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
            error = str(data.get("error") or "")
            invalid = error == "invalid_grant" or "invalid_grant" in str(exc.args[0] if exc.args else "")
            temporary = bool(getattr(exc, "retryable", False)) and not invalid
            raise OAuthError(f"Google token refresh refused: {error or 'error'}", invalid_grant=invalid,
                             temporary=temporary) from None
        except TransportError as exc:
            raise OAuthError(f"Google could not be reached: {exc.__class__.__name__}", temporary=True) from None
    expiry = credentials.expiry
    expires_at = (timezone.make_aware(expiry, UTC) if expiry and timezone.is_naive(expiry)
                  else expiry or _expires_at(3600))
    return TokenSet(access_token=str(credentials.token), refresh_token=credentials.refresh_token or "",
                    expires_at=expires_at, scopes=_scopes_text(credentials.granted_scopes or ""))


# ----------------------------------------------------------------------------- Microsoft


def _msal_app() -> Any:
    import msal

    return msal.ConfidentialClientApplication(
        settings.MICROSOFT_CLIENT_ID,
        client_credential=settings.MICROSOFT_CLIENT_SECRET,
        authority=settings.MICROSOFT_AUTHORITY,
        # The authority comes from settings, not from users: no need to ask Microsoft to vouch for it
        # (and a test authority could not be vouched for).
        instance_discovery=False,
        http_client=http_session(),
        timeout=HTTP_TIMEOUT,
    )


def _microsoft_start(login_hint: str, redirect_uri: str) -> AuthStart:
    with warnings.catch_warnings():
        # msal recommends response_mode=form_post; the query mode works with a GET callback, which
        # keeps the session cookie (SameSite=Lax is not sent on a cross-site POST).
        warnings.filterwarnings("ignore", message=".*form_post.*")
        flow = _msal_app().initiate_auth_code_flow(MICROSOFT_SCOPES, redirect_uri=redirect_uri,
                                                   login_hint=login_hint, prompt="select_account")
    if "auth_uri" not in flow:
        raise OAuthError(f"Microsoft sign-in could not start: {flow.get('error', 'error')}")
    return AuthStart(url=flow["auth_uri"], state=flow["state"], flow=dict(flow))


def _msal_error(result: dict[str, Any], what: str) -> OAuthError:
    error = str(result.get("error") or "error")
    invalid = error in {"invalid_grant", "interaction_required"}
    temporary = error in {"temporarily_unavailable", "server_error"}
    return OAuthError(f"Microsoft {what}: {error}", invalid_grant=invalid, temporary=temporary)


def _microsoft_finish(saved: dict[str, Any], params: dict[str, str]) -> TokenSet:
    try:
        result = _msal_app().acquire_token_by_auth_code_flow(saved, params, scopes=MICROSOFT_SCOPES)
    except ValueError as exc:  # msal: state mismatch and the like
        raise OAuthError(f"Microsoft sign-in failed: {exc}") from None
    except requests.RequestException as exc:
        raise OAuthError(f"Microsoft could not be reached: {exc.__class__.__name__}", temporary=True) from None
    if "access_token" not in result:
        raise _msal_error(result, "refused the sign-in")
    claims = result.get("id_token_claims") or {}
    email = str(claims.get("email") or claims.get("preferred_username") or "")
    if not email:
        raise OAuthError("Microsoft did not say which account signed in")
    if not result.get("refresh_token"):
        raise OAuthError("Microsoft sent no refresh token (offline_access was not granted)")
    return TokenSet(access_token=result["access_token"], refresh_token=result["refresh_token"],
                    expires_at=_expires_at(result.get("expires_in")), scopes=_scopes_text(result.get("scope")),
                    email=email)


def _microsoft_refresh(refresh_token: str) -> TokenSet:
    try:
        result = _msal_app().acquire_token_by_refresh_token(refresh_token, scopes=MICROSOFT_SCOPES)
    except requests.RequestException as exc:
        raise OAuthError(f"Microsoft could not be reached: {exc.__class__.__name__}", temporary=True) from None
    if "access_token" not in result:
        raise _msal_error(result, "token refresh refused")
    return TokenSet(access_token=result["access_token"], refresh_token=result.get("refresh_token") or "",
                    expires_at=_expires_at(result.get("expires_in")), scopes=_scopes_text(result.get("scope")))


# ----------------------------------------------------------------------------- entry points


def _check(provider: str) -> None:
    if provider not in PROVIDERS:
        raise OAuthError(f"{provider!r} does not sign in with OAuth")


def is_configured(provider: str) -> bool:
    if provider == GOOGLE:
        return bool(settings.GOOGLE_CLIENT_ID and settings.GOOGLE_CLIENT_SECRET)
    if provider == MICROSOFT:
        return bool(settings.MICROSOFT_CLIENT_ID and settings.MICROSOFT_CLIENT_SECRET)
    return False


def authorization_start(*, provider: str, login_hint: str, redirect_uri: str) -> AuthStart:
    _check(provider)
    if not is_configured(provider):
        raise OAuthError(f"Signing in with {provider.title()} is not configured on this server.")
    try:
        if provider == GOOGLE:
            return _google_start(login_hint, redirect_uri)
        return _microsoft_start(login_hint, redirect_uri)
    except requests.RequestException as exc:  # msal fetches the authority's discovery document
        raise OAuthError(f"{provider.title()} could not be reached: {exc.__class__.__name__}",
                         temporary=True) from None


def authorization_finish(*, provider: str, flow: dict[str, Any], params: dict[str, str],
                         redirect_uri: str) -> TokenSet:
    """Redeem the authorization code. The caller has already matched params['state'] to flow."""
    _check(provider)
    if params.get("error"):
        raise OAuthError(f"Sign-in was not completed: {params.get('error_description') or params['error']}")
    if not params.get("code"):
        raise OAuthError("The provider sent no authorization code.")
    if provider == GOOGLE:
        return _google_finish(flow, params, redirect_uri)
    return _microsoft_finish(flow, params)


def token_refresh(*, provider: str, refresh_token: str) -> TokenSet:
    _check(provider)
    if not refresh_token:
        raise OAuthError("no refresh token stored", invalid_grant=True)
    if provider == GOOGLE:
        return _google_refresh(refresh_token)
    return _microsoft_refresh(refresh_token)
