"""Any IMAP/SMTP provider, with a password (confirmed through an emailed authorization link)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imapclient.exceptions import LoginError

from .base import AuthorizationError, Endpoint, Provider, SmtpAuth

if TYPE_CHECKING:
    from imapclient import IMAPClient

    from mailboxes.models import Mailbox


class ImapProvider(Provider):
    key = "imap"

    def imap_endpoint(self, mailbox: Mailbox) -> Endpoint:
        return Endpoint(mailbox.imap_host, mailbox.imap_port, mailbox.imap_security)

    def smtp_endpoint(self, mailbox: Mailbox) -> Endpoint:
        return Endpoint(mailbox.smtp_host, mailbox.smtp_port, mailbox.smtp_security)

    def imap_login(self, mailbox: Mailbox, client: IMAPClient) -> None:
        try:
            client.login(mailbox.username or mailbox.email_address, mailbox.secret)
        except LoginError as exc:
            raise AuthorizationError(f"IMAP login refused: {_text(exc)}") from None

    def smtp_auth(self, mailbox: Mailbox) -> SmtpAuth:
        return SmtpAuth(username=mailbox.username or mailbox.email_address, password=mailbox.secret)


def _text(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else exc
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


PROVIDER = ImapProvider()
