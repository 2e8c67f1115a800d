"""The provider interface: one module per provider, found through the registry.

A provider knows where its servers are and how to authenticate to them; mailboxes/connections.py
opens the sockets (through tms.net) and asks the provider to log in. Errors are ProviderError,
whose `permanent` says what to do: temporary errors are retried with backoff; permanent ones
(revoked grant, wrong password, SMTP 5xx) move the mailbox to needs re-authorization or FAILED.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from imapclient import IMAPClient

    from mailboxes.models import Mailbox


class ProviderError(Exception):
    """A failure talking to a provider. `stage` is one of tms.net.Stage."""

    def __init__(self, message: str, *, permanent: bool, stage: str = "protocol") -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.stage = stage

    def __str__(self) -> str:
        return self.message


class AuthorizationError(ProviderError):
    """The grant or password no longer works: the owner must reconnect the mailbox."""

    def __init__(self, message: str, *, stage: str = "authentication") -> None:
        super().__init__(message, permanent=True, stage=stage)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    security: str  # mailboxes.models.Security value


@dataclass(frozen=True)
class SmtpAuth:
    """What SMTP AUTH needs: a password, or an OAuth access token for XOAUTH2."""

    username: str
    password: str | None = None
    access_token: str | None = None


class Provider(ABC):
    key: ClassVar[str]
    # Google and Microsoft file SMTP-submitted mail in Sent themselves; plain IMAP/SMTP servers
    # do not, so we APPEND the exact bytes sent.
    files_sent_copy: ClassVar[bool] = False
    uses_oauth: ClassVar[bool] = False

    @abstractmethod
    def imap_endpoint(self, mailbox: Mailbox) -> Endpoint: ...

    @abstractmethod
    def smtp_endpoint(self, mailbox: Mailbox) -> Endpoint: ...

    @abstractmethod
    def imap_login(self, mailbox: Mailbox, client: IMAPClient) -> None:
        """Authenticate an open, TLS-protected IMAP connection. Raises AuthorizationError."""

    @abstractmethod
    def smtp_auth(self, mailbox: Mailbox) -> SmtpAuth:
        """Credentials for SMTP AUTH (refreshing an access token when needed)."""


class OAuthProvider(Provider):
    """Google and Microsoft: XOAUTH2 with an access token refreshed ahead of expiry.

    The token comes from mailboxes.services.mailbox_access_token, which refreshes it (keeping the
    newest refresh token) and moves the mailbox to needs re-authorization on invalid_grant.
    """

    uses_oauth = True
    files_sent_copy = True

    def imap_login(self, mailbox: Mailbox, client: IMAPClient) -> None:
        from imapclient.exceptions import LoginError

        from mailboxes.services import mailbox_access_token

        token = mailbox_access_token(mailbox)
        try:
            client.oauth2_login(mailbox.username or mailbox.email_address, token)
        except LoginError as exc:
            raw = exc.args[0] if exc.args else exc
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            raise AuthorizationError(f"IMAP XOAUTH2 login refused: {text[:300]}") from None

    def smtp_auth(self, mailbox: Mailbox) -> SmtpAuth:
        from mailboxes.services import mailbox_access_token

        return SmtpAuth(username=mailbox.username or mailbox.email_address, access_token=mailbox_access_token(mailbox))
