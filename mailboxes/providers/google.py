"""Google Workspace / Gmail: IMAP and SMTP with XOAUTH2 (scope https://mail.google.com/)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from .base import Endpoint, OAuthProvider

if TYPE_CHECKING:
    from mailboxes.models import Mailbox


class GoogleProvider(OAuthProvider):
    key = "google"

    def imap_endpoint(self, mailbox: Mailbox) -> Endpoint:
        return Endpoint(settings.GOOGLE_IMAP_HOST, settings.GOOGLE_IMAP_PORT, "ssl")

    def smtp_endpoint(self, mailbox: Mailbox) -> Endpoint:
        return Endpoint(settings.GOOGLE_SMTP_HOST, settings.GOOGLE_SMTP_PORT, settings.GOOGLE_SMTP_SECURITY)


PROVIDER = GoogleProvider()
