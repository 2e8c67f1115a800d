"""Connecting mailboxes: the only code that creates, authorizes, checks, changes or removes them.

Every connection event goes to the audit log (MailboxEvent). Secrets (passwords, refresh and access
tokens) are stored encrypted and never logged.

Call the token functions outside a transaction where possible: a refreshed (and, with Microsoft,
rotated) refresh token must be committed even if the caller's work fails afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from email.utils import formataddr
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from tms.accounts.models import Staff
from tms.net import NetError, Stage, resolve

from . import metrics, oauth
from .connections import guard, imap_session, smtp_open
from .models import Mailbox, MailboxEvent, Provider, Security
from .providers import AuthorizationError, ProviderError, get_provider

logger = logging.getLogger(__name__)

AUTHORIZE_LINK_SALT = "mailboxes.authorize-link"
OAUTH_PROVIDERS = (Provider.GOOGLE, Provider.MICROSOFT)


class AuthorizationLinkError(Exception):
    """An authorization link that cannot be used: expired, used, replaced, or someone else's."""


@dataclass(frozen=True)
class CheckResult:
    """What a login check found. `stage` names what failed: dns, blocked, connect, tls,
    authentication or protocol (tms.net.Stage); None when everything logged in."""

    ok: bool
    imap: str  # "ok" | "failed" | "skipped" (send-only mailbox) | "not tried"
    smtp: str  # "ok" | "failed" | "not tried"
    stage: str | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "imap": self.imap, "smtp": self.smtp, "stage": self.stage, "message": self.message}


# ----------------------------------------------------------------------------- audit and mail


def mailbox_event_record(*, mailbox: Mailbox, kind: str, detail: str = "", actor: Staff | None = None
                         ) -> MailboxEvent:
    return MailboxEvent.objects.for_tenant(mailbox.tenant).create(
        mailbox=mailbox if mailbox.pk else None, email_address=mailbox.email_address, kind=kind,
        detail=detail[:2000], actor=actor,
    )


def _system_from() -> str:
    return formataddr((settings.RELAY_FROM_NAME, settings.RELAY_FROM_EMAIL))


def _send_system_mail(*, to: str, template: str, context: dict[str, Any]) -> None:
    """Mail from the system "Email Assistant", through django.core.mail (EMAIL_BACKEND, the relay)."""
    subject = " ".join(render_to_string(f"mailboxes/emails/{template}-subject.txt", context).split())
    body = render_to_string(f"mailboxes/emails/{template}-body.txt", context)
    EmailMessage(subject=subject, body=body, from_email=_system_from(), to=[to]).send()


# ----------------------------------------------------------------------------- validation and checks


def _validate_host(field: str, host: str, port: int) -> None:
    try:
        resolve(host, port)
    except NetError as exc:
        raise ValidationError({field: exc.message}) from None


def _validate_connection(mailbox: Mailbox, *, password_required: bool) -> None:  # noqa: PLR0912
    errors: dict[str, str] = {}
    try:
        validate_email(mailbox.email_address)
    except ValidationError:
        errors["email_address"] = "Enter a valid e-mail address."
    if mailbox.from_address:
        try:
            validate_email(mailbox.from_address)
        except ValidationError:
            errors["from_address"] = "Enter a valid e-mail address."
    if mailbox.permission not in Mailbox.Permission.values:
        errors["permission"] = f"must be one of {', '.join(Mailbox.Permission.values)}"
    if mailbox.post_processing not in Mailbox.PostProcessing.values:
        errors["post_processing"] = f"must be one of {', '.join(Mailbox.PostProcessing.values)}"
    if mailbox.provider == Provider.IMAP:
        for prefix in ("imap", "smtp"):
            host = (getattr(mailbox, f"{prefix}_host") or "").strip()
            port = getattr(mailbox, f"{prefix}_port")
            security = getattr(mailbox, f"{prefix}_security")
            if prefix == "imap" and not mailbox.reads and not host:
                continue  # a send-only mailbox needs no IMAP server
            if not host:
                errors[f"{prefix}_host"] = "This field is required."
            if not isinstance(port, int) or not 1 <= port <= 65535:
                errors[f"{prefix}_port"] = "Enter a port between 1 and 65535."
            if security not in Security.values:
                errors[f"{prefix}_security"] = f"must be one of {', '.join(Security.values)}"
            elif security == Security.NONE and not settings.MAILBOX_ALLOW_PRIVATE_HOSTS:
                errors[f"{prefix}_security"] = "Unencrypted connections are not allowed: choose SSL/TLS or STARTTLS."
        if password_required and not mailbox.secret:
            errors["password"] = "This field is required."  # noqa: S105
    if errors:
        raise ValidationError(errors)
    if mailbox.provider == Provider.IMAP:
        # A host that resolves to a private or loopback address is refused (SSRF), unless allowed.
        if mailbox.reads or mailbox.imap_host:
            _validate_host("imap_host", mailbox.imap_host, mailbox.imap_port)
        _validate_host("smtp_host", mailbox.smtp_host, mailbox.smtp_port)


def _smtp_login(mailbox: Mailbox) -> None:
    provider = get_provider(mailbox.provider)
    endpoint = provider.smtp_endpoint(mailbox)
    guard(endpoint)
    # Credentials first, outside the event loop: an OAuth token refresh touches the database.
    auth = provider.smtp_auth(mailbox)

    async def login() -> None:
        smtp = await smtp_open(endpoint, username=auth.username, password=auth.password,
                               access_token=auth.access_token)
        with suppress(Exception):
            await smtp.quit()

    asyncio.run(login())


def _verify_logins(mailbox: Mailbox) -> CheckResult:
    """Log in to IMAP (when the mailbox reads) and SMTP (always)."""
    imap = "skipped"
    if mailbox.reads:
        try:
            with imap_session(mailbox):
                pass
        except ProviderError as exc:
            return CheckResult(ok=False, imap="failed", smtp="not tried", stage=exc.stage, message=f"IMAP: {exc}")
        imap = "ok"
    try:
        _smtp_login(mailbox)
    except ProviderError as exc:
        return CheckResult(ok=False, imap=imap, smtp="failed", stage=exc.stage, message=f"SMTP: {exc}")
    what = "IMAP and SMTP" if mailbox.reads else "SMTP"
    return CheckResult(ok=True, imap=imap, smtp="ok", message=f"{what} logged in")


def mailbox_check(mailbox: Mailbox, *, actor: Staff | None = None) -> CheckResult:
    """Log in to IMAP (when reading) and SMTP; record the result and which stage failed."""
    result = _verify_logins(mailbox)
    now = timezone.now()
    mailbox.refresh_from_db(fields=["status"])  # a token refresh may have changed it
    if result.ok:
        mailbox.last_error = ""
        fields = ["last_error", "updated_at"]
        if mailbox.status == Mailbox.Status.ERROR:
            mailbox.status = Mailbox.Status.ACTIVE
            mailbox.consecutive_failures = 0
            fields += ["status", "consecutive_failures"]
        mailbox.save(update_fields=fields)
        mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.CHECK_OK, detail=result.message, actor=actor)
    else:
        mailbox.last_error = f"{result.stage}: {result.message}"[:2000]
        mailbox.last_error_at = now
        mailbox.save(update_fields=["last_error", "last_error_at", "updated_at"])
        mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.CHECK_FAILED,
                             detail=f"{result.stage}: {result.message}", actor=actor)
    logger.info("mailbox %s check: %s", mailbox.pk, "ok" if result.ok else f"failed at {result.stage}")
    return result


# ----------------------------------------------------------------------------- IMAP/SMTP with a password


def _make_default_if_first(mailbox: Mailbox) -> None:
    others = Mailbox.objects.for_tenant(mailbox.tenant).filter(staff_id=mailbox.staff_id, is_default=True)
    if not others.exclude(pk=mailbox.pk).exists() and not mailbox.is_default:
        Mailbox.objects.for_tenant(mailbox.tenant).filter(pk=mailbox.pk).update(is_default=True)
        mailbox.is_default = True


def mailbox_connect_imap(
    *,
    staff: Staff,
    email_address: str,
    imap_host: str,
    imap_port: int,
    imap_security: str,
    smtp_host: str,
    smtp_port: int,
    smtp_security: str,
    username: str,
    password: str,
    permission: str = Mailbox.Permission.SEND_AND_READ,
    post_processing: str = Mailbox.PostProcessing.NOTHING,
    display_name: str = "",
    from_address: str = "",
    authorized: bool = False,
    check: bool = True,
    actor: Staff | None = None,
) -> Mailbox:
    """Connect an IMAP/SMTP mailbox with a password ("Request Authorization Token").

    Validates the fields, refuses private hosts (unless allowed), checks that the credentials log in
    (IMAP when reading, SMTP always), saves the mailbox as pending authorization and mails the address a
    signed single-use link. `authorized=True` (an operator vouching for ownership) skips the link and is
    audited. Raises ValidationError with nothing saved when anything is wrong. Requesting again for a
    mailbox that is not active yet updates it and sends a new link (the old one stops working).
    """
    email_address = email_address.strip()
    existing = (Mailbox.objects.for_tenant(staff.tenant)
                .filter(staff=staff, email_address__iexact=email_address).first())
    if existing is not None and (existing.provider != Provider.IMAP or existing.status == Mailbox.Status.ACTIVE):
        raise ValidationError({"email_address": f"{email_address} is already connected "
                                                f"({existing.get_provider_display()}, "
                                                f"{existing.get_status_display()}); use Edit to change it."})
    mailbox = existing or Mailbox(tenant=staff.tenant, staff=staff, provider=Provider.IMAP)
    mailbox.email_address = email_address
    mailbox.imap_host, mailbox.imap_port, mailbox.imap_security = imap_host.strip(), imap_port, imap_security
    mailbox.smtp_host, mailbox.smtp_port, mailbox.smtp_security = smtp_host.strip(), smtp_port, smtp_security
    mailbox.username = username.strip() or email_address
    mailbox.secret = password
    mailbox.permission = permission
    mailbox.post_processing = post_processing
    mailbox.display_name = display_name.strip()
    mailbox.from_address = from_address.strip()
    mailbox.access_token = ""
    mailbox.access_token_expires_at = None
    _validate_connection(mailbox, password_required=True)
    if check:
        result = _verify_logins(mailbox)
        if not result.ok:
            raise ValidationError(f"The credentials did not work ({result.stage}): {result.message}")
    now = timezone.now()
    mailbox.status = Mailbox.Status.ACTIVE if authorized else Mailbox.Status.PENDING_AUTHORIZATION
    mailbox.authorized_at = now if authorized else None
    mailbox.last_error = ""
    mailbox.authorization_nonce = ""
    try:
        with transaction.atomic():
            mailbox.save()
            _make_default_if_first(mailbox)
            mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.CONNECTED, actor=actor,
                                 detail=f"IMAP/SMTP {mailbox.imap_host}/{mailbox.smtp_host} as {mailbox.username}")
            if authorized:
                mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.AUTHORIZED, actor=actor,
                                     detail="ownership vouched for by an operator; no authorization link sent")
    except IntegrityError:
        raise ValidationError({"email_address": f"{email_address} is already connected."}) from None
    if not authorized:
        mailbox_request_authorization(mailbox=mailbox, actor=actor)
    logger.info("mailbox %s connected (imap, %s)", mailbox.pk, mailbox.status)
    return mailbox


def authorization_link(mailbox: Mailbox) -> str:
    token = signing.dumps({"m": str(mailbox.public_id), "n": mailbox.authorization_nonce}, salt=AUTHORIZE_LINK_SALT)
    return settings.SITE_URL + reverse("mailbox-authorize", args=[token])


def mailbox_request_authorization(*, mailbox: Mailbox, actor: Staff | None = None) -> None:
    """Mail the address a signed link, valid MAILBOX_AUTHORIZATION_LINK_HOURS, that works once.

    A new request replaces the nonce, so older links stop working. Raises ProviderError (stage
    "protocol") when the mail could not be handed to the relay; the mailbox stays pending.
    """
    mailbox.authorization_nonce = secrets.token_urlsafe(24)
    mailbox.save(update_fields=["authorization_nonce", "updated_at"])
    context = {"mailbox": mailbox, "link": authorization_link(mailbox),
               "hours": settings.MAILBOX_AUTHORIZATION_LINK_HOURS, "staff": mailbox.staff}
    try:
        _send_system_mail(to=mailbox.email_address, template="authorize", context=context)
    except Exception as exc:
        logger.exception("mailbox %s: the authorization e-mail could not be sent", mailbox.pk)
        mailbox.last_error = f"The authorization e-mail could not be sent: {exc.__class__.__name__}"
        mailbox.last_error_at = timezone.now()
        mailbox.save(update_fields=["last_error", "last_error_at", "updated_at"])
        raise ProviderError("The authorization e-mail could not be sent; try Reconnect later.",
                            permanent=False, stage=Stage.PROTOCOL) from None
    mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.AUTHORIZATION_REQUESTED, actor=actor,
                         detail=f"link mailed to {mailbox.email_address}")


def mailbox_authorize_link(*, token: str, staff: Staff) -> Mailbox:
    """Open an emailed authorization link as `staff`: the mailbox becomes active.

    Expired, used, replaced, forged or someone else's: AuthorizationLinkError, and nothing changes.
    """
    max_age = timedelta(hours=settings.MAILBOX_AUTHORIZATION_LINK_HOURS)
    try:
        data = signing.loads(token, salt=AUTHORIZE_LINK_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise AuthorizationLinkError(
            "This authorization link has expired. Use Reconnect on your profile to get a new one.") from None
    except signing.BadSignature:
        raise AuthorizationLinkError("This authorization link is not valid.") from None
    if not isinstance(data, dict) or not data.get("m") or not data.get("n"):
        raise AuthorizationLinkError("This authorization link is not valid.")
    with transaction.atomic():
        mailbox = (Mailbox.unscoped.select_for_update().filter(public_id=data["m"]).first())
        if mailbox is None:
            raise AuthorizationLinkError("The mailbox of this link no longer exists.")
        if mailbox.staff_id != staff.pk:
            raise AuthorizationLinkError(
                "This authorization link belongs to another user's mailbox. Log in as its owner to use it.")
        if not mailbox.authorization_nonce or not constant_time_compare(mailbox.authorization_nonce, data["n"]):
            raise AuthorizationLinkError(
                "This authorization link has already been used or was replaced by a newer one.")
        mailbox.status = Mailbox.Status.ACTIVE
        mailbox.authorized_at = timezone.now()
        mailbox.authorization_nonce = ""
        mailbox.last_error = ""
        mailbox.consecutive_failures = 0
        mailbox.save(update_fields=["status", "authorized_at", "authorization_nonce", "last_error",
                                    "consecutive_failures", "updated_at"])
        mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.AUTHORIZED, actor=staff,
                             detail="authorization link opened by the owner")
    logger.info("mailbox %s authorized through the emailed link", mailbox.pk)
    return mailbox


# ----------------------------------------------------------------------------- OAuth (Google, Microsoft)


def oauth_redirect_uri() -> str:
    return settings.SITE_URL + reverse("mailbox-oauth-callback")


def mailbox_oauth_start(
    *,
    staff: Staff,
    provider: str,
    email_address: str = "",
    permission: str = Mailbox.Permission.SEND_AND_READ,
    post_processing: str = Mailbox.PostProcessing.NOTHING,
    mailbox: Mailbox | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """Begin "Sign in with Google/Microsoft". Returns (url, state, pending): the caller keeps `pending`
    in the session under `state`, and sends the browser to `url`. Nothing is saved yet."""
    if provider not in OAUTH_PROVIDERS:
        raise ValidationError({"provider": "Choose Google or Microsoft."})
    if mailbox is not None:
        if mailbox.staff_id != staff.pk or mailbox.provider != provider:
            raise ValidationError("This mailbox cannot be reconnected that way.")
        email_address = mailbox.email_address
        permission, post_processing = mailbox.permission, mailbox.post_processing
    email_address = email_address.strip()
    errors = {}
    try:
        validate_email(email_address)
    except ValidationError:
        errors["email_address"] = "Enter the e-mail address of the mailbox to connect."
    if permission not in Mailbox.Permission.values:
        errors["permission"] = "Choose the permissions."
    if post_processing not in Mailbox.PostProcessing.values:
        errors["post_processing"] = "Choose a post processing action."
    if errors:
        raise ValidationError(errors)
    if mailbox is None:
        existing = (Mailbox.objects.for_tenant(staff.tenant)
                    .filter(staff=staff, email_address__iexact=email_address).first())
        if existing is not None and existing.provider != provider:
            raise ValidationError({"email_address": f"{email_address} is already connected as "
                                                    f"{existing.get_provider_display()}."})
    try:
        start = oauth.authorization_start(provider=provider, login_hint=email_address,
                                          redirect_uri=oauth_redirect_uri())
    except oauth.OAuthError as exc:
        raise ValidationError(str(exc)) from None
    pending = {
        "provider": provider, "staff": str(staff.public_id), "email": email_address,
        "permission": permission, "post_processing": post_processing,
        "mailbox": str(mailbox.public_id) if mailbox else "", "flow": start.flow,
        "started": timezone.now().timestamp(),
    }
    return start.url, start.state, pending


def mailbox_oauth_complete(*, staff: Staff, pending: dict[str, Any], params: dict[str, str]) -> Mailbox:
    """Finish the sign-in: the account must be the mailbox's address, or nothing is saved.

    The caller has taken `pending` out of the session by the callback's state and checked that it
    belongs to `staff`. Tokens are stored encrypted; the mailbox becomes active.
    """
    if pending.get("staff") != str(staff.public_id):
        raise ValidationError("This sign-in was started by another user.")
    provider, expected = pending["provider"], pending["email"]
    try:
        tokens = oauth.authorization_finish(provider=provider, flow=pending["flow"], params=params,
                                            redirect_uri=oauth_redirect_uri())
    except oauth.OAuthError as exc:
        raise ValidationError(f"{exc} Nothing was saved.") from None
    if tokens.email.strip().lower() != expected.lower():
        raise ValidationError(
            f"You signed in as {tokens.email or 'an unknown account'}, but the mailbox being connected is "
            f"{expected}. Sign in with {expected} instead. Nothing was saved.")
    now = timezone.now()
    with transaction.atomic():
        scoped = Mailbox.objects.for_tenant(staff.tenant).filter(staff=staff)
        if pending.get("mailbox"):
            mailbox = scoped.select_for_update().filter(public_id=pending["mailbox"]).first()
            if mailbox is None:
                raise ValidationError("The mailbox being reconnected no longer exists. Nothing was saved.")
            created = False
        else:
            found = scoped.select_for_update().filter(email_address__iexact=expected).first()
            if found is not None and found.provider != provider:
                raise ValidationError(f"{expected} is already connected as {found.get_provider_display()}.")
            created = found is None
            mailbox = found or Mailbox(tenant=staff.tenant, staff=staff, provider=provider, email_address=expected)
            mailbox.permission = pending["permission"]
            mailbox.post_processing = pending["post_processing"]
        mailbox.username = tokens.email
        mailbox.secret = tokens.refresh_token
        mailbox.access_token = tokens.access_token
        mailbox.access_token_expires_at = tokens.expires_at
        mailbox.granted_scopes = tokens.scopes
        mailbox.status = Mailbox.Status.ACTIVE
        mailbox.authorized_at = now
        mailbox.authorization_nonce = ""
        mailbox.last_error = ""
        mailbox.consecutive_failures = 0
        mailbox.save()
        _make_default_if_first(mailbox)
        if created:
            mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.CONNECTED, actor=staff,
                                 detail=f"{mailbox.get_provider_display()} sign-in")
        mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.AUTHORIZED, actor=staff,
                             detail=f"OAuth grant for {tokens.email}; scopes: {tokens.scopes}")
    logger.info("mailbox %s authorized through %s", mailbox.pk, provider)
    return mailbox


def _token_fresh(mailbox: Mailbox) -> bool:
    margin = timedelta(seconds=settings.MAILBOX_TOKEN_REFRESH_MARGIN)
    return bool(mailbox.access_token and mailbox.access_token_expires_at
                and mailbox.access_token_expires_at - margin > timezone.now())


def mailbox_access_token(mailbox: Mailbox) -> str:
    """A valid OAuth access token for the mailbox, refreshed ahead of expiry.

    The refresh happens under a row lock, so concurrent workers refresh once; the newest refresh
    token is always kept (Microsoft rotates them). invalid_grant moves this mailbox (and only it) to
    needs re-authorization and raises AuthorizationError; other failures raise a temporary
    ProviderError.
    """
    if not get_provider(mailbox.provider).uses_oauth:
        raise ValueError(f"mailbox {mailbox.pk} does not use OAuth")
    if _token_fresh(mailbox):
        return mailbox.access_token
    if mailbox.status == Mailbox.Status.NEEDS_REAUTHORIZATION:
        raise AuthorizationError("the mailbox needs to be reconnected (its sign-in was revoked or expired)")
    failure: oauth.OAuthError | None = None
    with transaction.atomic():
        locked = Mailbox.unscoped.select_for_update().get(pk=mailbox.pk)
        if locked.status == Mailbox.Status.NEEDS_REAUTHORIZATION:
            mailbox.status = locked.status
            raise AuthorizationError("the mailbox needs to be reconnected (its sign-in was revoked or expired)")
        if not _token_fresh(locked):  # another worker may have refreshed it meanwhile
            try:
                tokens = oauth.token_refresh(provider=locked.provider, refresh_token=locked.secret)
            except oauth.OAuthError as exc:
                failure = exc
            else:
                locked.access_token = tokens.access_token
                locked.access_token_expires_at = tokens.expires_at
                if tokens.refresh_token:
                    locked.secret = tokens.refresh_token
                if tokens.scopes:
                    locked.granted_scopes = tokens.scopes
                locked.save(update_fields=["access_token", "access_token_expires_at", "secret",
                                           "granted_scopes", "updated_at"])
                logger.info("mailbox %s: access token refreshed%s", locked.pk,
                            " (new refresh token kept)" if tokens.refresh_token else "")
        for name in ("access_token", "access_token_expires_at", "secret", "granted_scopes"):
            setattr(mailbox, name, getattr(locked, name))
    if failure is not None:
        metrics.token_refresh_failed(provider=mailbox.provider, permanent=failure.invalid_grant)
        if failure.invalid_grant:
            mailbox_mark_needs_reauthorization(mailbox, f"Sign-in no longer valid: {failure}")
            raise AuthorizationError(f"token refresh refused: {failure}")
        raise ProviderError(f"token refresh failed: {failure}", permanent=False,
                            stage=Stage.CONNECT if failure.temporary else Stage.AUTH)
    return mailbox.access_token


def mailbox_mark_needs_reauthorization(mailbox: Mailbox, reason: str, *, actor: Staff | None = None) -> bool:
    """Move the mailbox to needs re-authorization: polling stops, the owner sees a banner and gets an
    e-mail. Affects no other mailbox. Returns False when it already was in that state (no new mail)."""
    now = timezone.now()
    with transaction.atomic():
        changed = (Mailbox.unscoped.filter(pk=mailbox.pk)
                   .exclude(status=Mailbox.Status.NEEDS_REAUTHORIZATION)
                   .update(status=Mailbox.Status.NEEDS_REAUTHORIZATION, last_error=reason[:2000],
                           last_error_at=now, access_token="", access_token_expires_at=None, next_poll_at=None,
                           updated_at=now))
        mailbox.status = Mailbox.Status.NEEDS_REAUTHORIZATION
        mailbox.last_error, mailbox.last_error_at = reason[:2000], now
        mailbox.access_token, mailbox.access_token_expires_at = "", None
        if not changed:
            return False
        mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.NEEDS_REAUTHORIZATION, detail=reason,
                             actor=actor)
        mailbox_id = mailbox.pk
        transaction.on_commit(lambda: _mail_needs_reauthorization(mailbox_id))
    logger.warning("mailbox %s needs re-authorization", mailbox.pk)
    return True


def _mail_needs_reauthorization(mailbox_id: int) -> None:
    mailbox = Mailbox.unscoped.select_related("staff").filter(pk=mailbox_id).first()
    if mailbox is None or not mailbox.staff.email:
        return
    context = {"mailbox": mailbox, "staff": mailbox.staff, "profile_url": settings.SITE_URL + reverse("profile")}
    try:
        _send_system_mail(to=mailbox.staff.email, template="needs-reauthorization", context=context)
    except Exception:
        logger.exception("mailbox %s: could not e-mail its owner about re-authorization", mailbox_id)


# ----------------------------------------------------------------------------- changes


_EDITABLE = ("permission", "post_processing", "display_name", "from_address")
_CONNECTION = ("imap_host", "imap_port", "imap_security", "smtp_host", "smtp_port", "smtp_security", "username")


def mailbox_update(*, mailbox: Mailbox, actor: Staff | None = None, password: str = "", **changes: Any) -> Mailbox:
    """Change a mailbox's settings. For IMAP/SMTP, new server details or a new password must log in
    first (nothing is saved otherwise); an authorized mailbox that logs in again becomes active."""
    allowed = set(_EDITABLE) | (set(_CONNECTION) if mailbox.provider == Provider.IMAP else set())
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationError(f"cannot change {', '.join(sorted(unknown))}")
    candidate = Mailbox.unscoped.get(pk=mailbox.pk)
    for name, value in changes.items():
        setattr(candidate, name, value.strip() if isinstance(value, str) else value)
    if password:
        candidate.secret = password
    connection_changed = bool(password) or any(getattr(candidate, n) != getattr(mailbox, n) for n in _CONNECTION)
    reads_changed = candidate.permission != mailbox.permission and candidate.reads
    _validate_connection(candidate, password_required=False)
    reactivate = False
    if candidate.provider == Provider.IMAP and (connection_changed or reads_changed):
        result = _verify_logins(candidate)
        if not result.ok:
            raise ValidationError(f"The new settings did not log in ({result.stage}): {result.message}")
        reactivate = candidate.authorized_at is not None and candidate.status in (
            Mailbox.Status.NEEDS_REAUTHORIZATION, Mailbox.Status.ERROR)
    if reactivate:
        candidate.status = Mailbox.Status.ACTIVE
        candidate.last_error = ""
        candidate.consecutive_failures = 0
    with transaction.atomic():
        candidate.save()
        changed = sorted(n for n in (*changes, *(["password"] if password else []))
                         if n == "password" or getattr(mailbox, n) != getattr(candidate, n))
        mailbox_event_record(mailbox=candidate, kind=MailboxEvent.Kind.UPDATED, actor=actor,
                             detail=f"changed: {', '.join(changed) or 'nothing'}")
    return candidate


def mailbox_make_default(*, mailbox: Mailbox, actor: Staff | None = None) -> Mailbox:
    with transaction.atomic():
        scoped = Mailbox.objects.for_tenant(mailbox.tenant).filter(staff_id=mailbox.staff_id)
        scoped.exclude(pk=mailbox.pk).filter(is_default=True).update(is_default=False)
        scoped.filter(pk=mailbox.pk).update(is_default=True)
        mailbox.is_default = True
        mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.UPDATED, detail="made default", actor=actor)
    return mailbox


def mailbox_disable(*, mailbox: Mailbox, actor: Staff | None = None) -> Mailbox:
    if mailbox.status != Mailbox.Status.DISABLED:
        mailbox.status = Mailbox.Status.DISABLED
        mailbox.next_poll_at = None
        mailbox.save(update_fields=["status", "next_poll_at", "updated_at"])
        mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.DISABLED, actor=actor)
    return mailbox


def mailbox_enable(*, mailbox: Mailbox, actor: Staff | None = None) -> Mailbox:
    if mailbox.status == Mailbox.Status.DISABLED:
        mailbox.status = (Mailbox.Status.ACTIVE if mailbox.authorized_at
                          else Mailbox.Status.PENDING_AUTHORIZATION)
        mailbox.save(update_fields=["status", "updated_at"])
        mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.ENABLED, actor=actor)
    return mailbox


def mailbox_remove(*, mailbox: Mailbox, actor: Staff | None = None) -> None:
    """Delete the mailbox and its secrets; the audit log keeps a 'removed' event with the address."""
    with transaction.atomic():
        mailbox_event_record(mailbox=mailbox, kind=MailboxEvent.Kind.REMOVED, actor=actor,
                             detail=f"{mailbox.get_provider_display()} mailbox removed")
        was_default, staff_id, tenant = mailbox.is_default, mailbox.staff_id, mailbox.tenant
        mailbox_id = mailbox.pk
        mailbox.delete()
        if was_default:
            successor = (Mailbox.objects.for_tenant(tenant)
                         .filter(staff_id=staff_id, status=Mailbox.Status.ACTIVE).order_by("email_address").first())
            if successor is not None:
                Mailbox.objects.for_tenant(tenant).filter(pk=successor.pk).update(is_default=True)
    logger.info("mailbox %s removed", mailbox_id)


def mailbox_send_test(*, mailbox: Mailbox, actor: Staff | None = None) -> str:
    """Send a test e-mail to the owner through the mailbox, now, via the sending service
    (mailboxes.sending). Returns what happened; raises ProviderError when it was not sent."""
    from . import sending

    to = mailbox.staff.email or mailbox.email_address
    try:
        result = sending.mailbox_send_test(mailbox=mailbox, staff=actor or mailbox.staff, to=to)
    except sending.SendRefused as exc:
        raise ProviderError(str(exc), permanent=True, stage=Stage.PROTOCOL) from None
    if result.status == "sent":
        return f"A test e-mail was sent to {to} through {mailbox.email_address}."
    if result.status == "queued":
        return f"The test e-mail to {to} is queued and will go out shortly."
    raise ProviderError(result.error or f"the test e-mail {result.status}", permanent=False, stage=Stage.PROTOCOL)
