"""Microsoft 365 / Exchange Online: IMAP and SMTP AUTH with XOAUTH2 (IMAP.AccessAsUser.All, SMTP.Send)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from .base import Endpoint, OAuthProvider

if TYPE_CHECKING:
    from mailboxes.models import Mailbox


class MicrosoftProvider(OAuthProvider):
    key = "microsoft"

    def imap_endpoint(self, mailbox: Mailbox) -> Endpoint:
        return Endpoint(settings.MICROSOFT_IMAP_HOST, settings.MICROSOFT_IMAP_PORT, "ssl")

    def smtp_endpoint(self, mailbox: Mailbox) -> Endpoint:
        return Endpoint(settings.MICROSOFT_SMTP_HOST, settings.MICROSOFT_SMTP_PORT, settings.MICROSOFT_SMTP_SECURITY)


PROVIDER = MicrosoftProvider()
