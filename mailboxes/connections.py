"""Opening authenticated IMAP and SMTP connections for a mailbox.

Every connection goes through tms.net (address guard, verifying TLS context, timeouts) and fails
with a ProviderError whose `stage` names what failed: dns, blocked, connect, tls, authentication,
protocol. STARTTLS is never skipped: a server that does not offer it is a TLS failure.
"""

from __future__ import annotations

import imaplib
import logging
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

import aiosmtplib
from django.conf import settings
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from tms.net import NetError, Stage, connect_timeout, resolve, ssl_context

from .models import Security
from .providers import AuthorizationError, Endpoint, ProviderError, SmtpAuth, get_provider

if TYPE_CHECKING:
    from .models import Mailbox


def guard(endpoint: Endpoint) -> None:
    if not endpoint.host:
        raise ProviderError("no server host configured", permanent=True, stage=Stage.DNS)
    try:
        resolve(endpoint.host, endpoint.port)
    except NetError as exc:
        raise ProviderError(exc.message, permanent=exc.stage == Stage.BLOCKED, stage=exc.stage) from None
    if endpoint.security == Security.NONE and not settings.MAILBOX_ALLOW_PRIVATE_HOSTS:
        raise ProviderError(
            "unencrypted connections are refused; choose SSL/TLS or STARTTLS", permanent=True, stage=Stage.TLS
        )


def _stage_of(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Stage.TLS
    if isinstance(exc, socket.gaierror):
        return Stage.DNS
    if isinstance(exc, TimeoutError | ConnectionError | OSError):
        return Stage.CONNECT
    return Stage.PROTOCOL


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    text = str(exc) or exc.__class__.__name__
    return text[:500]


@contextmanager
def imap_session(mailbox: Mailbox) -> Iterator[IMAPClient]:
    """An IMAPClient logged in to the mailbox, logged out afterwards."""
    provider = get_provider(mailbox.provider)
    endpoint = provider.imap_endpoint(mailbox)
    guard(endpoint)
    try:
        client = IMAPClient(
            endpoint.host,
            port=endpoint.port,
            ssl=endpoint.security == Security.SSL,
            ssl_context=ssl_context(),
            timeout=connect_timeout(),
        )
    except (OSError, imaplib.IMAP4.error, IMAPClientError) as exc:
        raise ProviderError(f"IMAP {endpoint.host}:{endpoint.port}: {_describe(exc)}", permanent=False,
                            stage=_stage_of(exc)) from None
    # imapclient turns imaplib's protocol trace on (debug level 5, into the "imapclient.imaplib"
    # logger): every line and literal - whole messages - formatted with %r, ~0.07 ms a fetched
    # message in the polling process, then dropped, that logger being at WARNING (tms/logging.py).
    # Left on only when that logger would keep it.
    if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        client._imap.debug = 0
    try:
        if endpoint.security == Security.STARTTLS:
            try:
                client.starttls(ssl_context())
            except (OSError, imaplib.IMAP4.error, IMAPClientError) as exc:
                stage = _stage_of(exc) if isinstance(exc, OSError) else Stage.TLS
                raise ProviderError(f"IMAP STARTTLS failed: {_describe(exc)}", permanent=False, stage=stage) from None
        try:
            provider.imap_login(mailbox, client)
        except ProviderError:
            raise
        except (OSError, imaplib.IMAP4.error, IMAPClientError) as exc:
            raise ProviderError(f"IMAP login: {_describe(exc)}", permanent=False, stage=_stage_of(exc)) from None
        yield client
    finally:
        with suppress(Exception):
            client.logout()
        with suppress(Exception):
            client.shutdown()


def smtp_prepare(mailbox: Mailbox) -> tuple[Endpoint, SmtpAuth]:
    """Where to submit and with what credentials; checks the address guard.

    Synchronous on purpose: an OAuth mailbox may refresh its access token here, which touches the
    database, and Django refuses database access inside an event loop. Call it before asyncio.
    """
    provider = get_provider(mailbox.provider)
    endpoint = provider.smtp_endpoint(mailbox)
    guard(endpoint)
    return endpoint, provider.smtp_auth(mailbox)


async def smtp_open(
    endpoint: Endpoint, *, username: str | None, password: str | None = None, access_token: str | None = None
) -> aiosmtplib.SMTP:
    """Connect (implicit TLS or mandatory STARTTLS) and authenticate with a password or XOAUTH2."""
    smtp = aiosmtplib.SMTP(
        hostname=endpoint.host,
        port=endpoint.port,
        use_tls=endpoint.security == Security.SSL,
        start_tls=endpoint.security == Security.STARTTLS,
        tls_context=ssl_context(),
        timeout=connect_timeout(),
    )
    try:
        await smtp.connect()
    except aiosmtplib.SMTPConnectError as exc:
        cause = exc.__cause__ or exc
        raise ProviderError(f"SMTP {endpoint.host}:{endpoint.port}: {_describe(cause)}", permanent=False,
                            stage=_stage_of(cause)) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        stage = Stage.TLS if "STARTTLS" in str(exc) or isinstance(exc, ssl.SSLError) else _stage_of(exc)
        raise ProviderError(f"SMTP {endpoint.host}:{endpoint.port}: {_describe(exc)}", permanent=False,
                            stage=stage) from None
    try:
        if access_token:
            # Two steps instead of an initial response: some servers (Dovecot submission) limit the
            # first AUTH line to about 1 KB, and a JWT is longer. Google and Microsoft accept both.
            if smtp.is_ehlo_or_helo_needed:  # implicit TLS: connect() sent no EHLO; servers want one before AUTH
                await smtp.ehlo()
            response = await smtp.execute_command(b"AUTH", b"XOAUTH2")
            if response.code == 334:
                response = await smtp.execute_command(
                    aiosmtplib.auth.auth_xoauth2_encode(username or "", access_token)
                )
                if response.code == 334:  # error details in base64; RFC 7628 says answer with an empty line
                    response = await smtp.execute_command(b"")
            if response.code != 235:
                raise AuthorizationError(f"SMTP XOAUTH2 refused: {response.code} {response.message}")
        elif password is not None:
            await smtp.login(username or "", password)
    except aiosmtplib.SMTPAuthenticationError as exc:
        await _close(smtp)
        raise AuthorizationError(f"SMTP login refused: {exc.code} {exc.message}") from None
    except ProviderError:
        await _close(smtp)
        raise
    except (aiosmtplib.SMTPException, OSError) as exc:
        await _close(smtp)
        raise ProviderError(f"SMTP login: {_describe(exc)}", permanent=False, stage=_stage_of(exc)) from None
    return smtp


async def _close(smtp: aiosmtplib.SMTP) -> None:
    with suppress(Exception):
        smtp.close()
