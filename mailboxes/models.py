"""Mailboxes, what they fetched and what they sent.

Once-only is the database's job: a fetched message is unique per (mailbox, folder, UIDVALIDITY,
UID) and per (mailbox, Message-ID) (Outlook re-uploads messages under new UIDs); outbound mail
moves QUEUED -> SENDING -> SENT | FAILED and is claimed with a conditional UPDATE.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from tms.accounts.scoping import TenantOwned
from tms.crypto import EncryptedTextField

from .validators import recipient_exclude_regex_validate


class Provider(models.TextChoices):
    GOOGLE = "google", "Google"
    MICROSOFT = "microsoft", "Microsoft 365"
    IMAP = "imap", "IMAP/SMTP"


class Security(models.TextChoices):
    SSL = "ssl", "SSL/TLS"
    STARTTLS = "starttls", "STARTTLS"
    NONE = "none", "None (unencrypted)"


class Mailbox(TenantOwned):
    class Permission(models.TextChoices):
        SEND = "send", "Send Emails Only"
        SEND_AND_READ = "send_and_read", "Send and Read All Emails"

    class PostProcessing(models.TextChoices):
        ARCHIVE = "archive", "Archive"
        MARK_READ = "mark_read", "Mark As Read"
        DELETE = "delete", "Delete"
        NOTHING = "nothing", "Do Nothing"

    class Status(models.TextChoices):
        PENDING_AUTHORIZATION = "pending_authorization", "Pending authorization"
        ACTIVE = "active", "Active"
        NEEDS_REAUTHORIZATION = "needs_reauthorization", "Needs re-authorization"
        ERROR = "error", "Error"
        DISABLED = "disabled", "Disabled"

    class AllowedRecipients(models.TextChoices):
        ANYONE = "anyone", "Anyone"
        CONTACTS = "contacts", "Only contacts known to the company"

    staff = models.ForeignKey("accounts.Staff", on_delete=models.CASCADE, related_name="mailboxes")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    email_address = models.EmailField()
    display_name = models.CharField(max_length=200, blank=True)
    from_address = models.EmailField(blank=True, help_text="Defaults to the e-mail address.")
    permission = models.CharField(max_length=16, choices=Permission.choices, default=Permission.SEND)
    post_processing = models.CharField(
        max_length=16, choices=PostProcessing.choices, default=PostProcessing.NOTHING
    )
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.PENDING_AUTHORIZATION)

    imap_host = models.CharField(max_length=253, blank=True)
    imap_port = models.PositiveIntegerField(default=993)
    imap_security = models.CharField(max_length=10, choices=Security.choices, default=Security.SSL)
    smtp_host = models.CharField(max_length=253, blank=True)
    smtp_port = models.PositiveIntegerField(default=587)
    smtp_security = models.CharField(max_length=10, choices=Security.choices, default=Security.STARTTLS)
    username = models.CharField(max_length=254, blank=True)
    # The password (imap) or the OAuth refresh token (google, microsoft). Never logged or returned.
    secret = EncryptedTextField(blank=True)
    access_token = EncryptedTextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    granted_scopes = models.TextField(blank=True)

    sent_folder = models.CharField(max_length=200, blank=True, help_text="Empty: the special-use \\Sent folder.")
    archive_folder = models.CharField(
        max_length=200, blank=True, help_text="Empty: the special-use \\Archive folder."
    )

    # Sending policy.
    allowed_recipients = models.CharField(
        max_length=16, choices=AllowedRecipients.choices, default=AllowedRecipients.ANYONE
    )
    recipient_exclude_regex = models.CharField(
        max_length=500, blank=True, validators=[recipient_exclude_regex_validate]
    )
    send_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the provider's limit.")
    send_per_day = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the provider's limit.")
    max_connections = models.PositiveIntegerField(null=True, blank=True)

    is_default = models.BooleanField(default=False)
    campaign_compatible = models.BooleanField(default=False)

    last_read_at = models.DateTimeField(null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    authorized_at = models.DateTimeField(null=True, blank=True)
    # The one-time part of the emailed authorization link (IMAP/SMTP): cleared when the link is used,
    # replaced when a new link is sent, so an older or used link no longer works.
    authorization_nonce = models.CharField(max_length=64, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwned.Meta):
        verbose_name_plural = "mailboxes"
        ordering = ["email_address"]
        constraints = [
            models.UniqueConstraint(
                fields=["staff"], condition=Q(is_default=True), name="mailbox_one_default_per_staff"
            ),
            models.UniqueConstraint(fields=["staff", "email_address"], name="mailbox_unique_address_per_staff"),
        ]
        indexes = [models.Index(fields=["status", "permission"])]

    def __str__(self) -> str:
        return f"{self.email_address} ({self.get_provider_display()})"

    @property
    def reads(self) -> bool:
        return self.permission == self.Permission.SEND_AND_READ

    @property
    def sender_address(self) -> str:
        return self.from_address or self.email_address


class MailboxEvent(TenantOwned):
    """Audit log of connection events. Kept when the mailbox is removed."""

    class Kind(models.TextChoices):
        CONNECTED = "connected", "Connected"
        AUTHORIZATION_REQUESTED = "authorization_requested", "Authorization requested"
        AUTHORIZED = "authorized", "Authorized"
        CHECK_OK = "check_ok", "Check passed"
        CHECK_FAILED = "check_failed", "Check failed"
        TOKEN_REFRESHED = "token_refreshed", "Token refreshed"
        NEEDS_REAUTHORIZATION = "needs_reauthorization", "Needs re-authorization"
        UPDATED = "updated", "Updated"
        DISABLED = "disabled", "Disabled"
        ENABLED = "enabled", "Enabled"
        REMOVED = "removed", "Removed"

    mailbox = models.ForeignKey(Mailbox, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    email_address = models.EmailField()
    kind = models.CharField(max_length=32, choices=Kind.choices)
    detail = models.TextField(blank=True)
    actor = models.ForeignKey(
        "accounts.Staff", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at", "-id"]


class FolderCursor(models.Model):
    """Where reading a folder got to: RFC 3501 2.3.1.1 - UIDs are valid only with their UIDVALIDITY."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="cursors")
    folder = models.CharField(max_length=500)
    uidvalidity = models.BigIntegerField()
    last_uid = models.BigIntegerField(default=0)
    highestmodseq = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mailbox", "folder"], name="cursor_unique_folder")]

    def __str__(self) -> str:
        return f"{self.folder} uidvalidity={self.uidvalidity} last_uid={self.last_uid}"


class InboundMessage(TenantOwned):
    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"
        QUARANTINED = "quarantined", "Quarantined"
        TOO_LARGE = "too_large", "Too large"

    # Every index of this table is written by each of a message's three writes (stored, processed,
    # post-processed; the first two at least are never HOT), so only those the queries use exist:
    # no index of its own for mailbox (inbound_unique_uid starts with it) nor for status (filtered
    # with the mailbox: ("status", "mailbox"); the metrics' count by status reads all).
    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="inbound_messages",
                                db_index=False)
    folder = models.CharField(max_length=500)
    uidvalidity = models.BigIntegerField()
    uid = models.BigIntegerField()
    # Normalised Message-ID; a message without one gets "<sha256-of-bytes@synthesised>" so that it
    # is still stored once.
    message_id = models.CharField(max_length=998)
    raw = models.BinaryField(null=True, blank=True)
    size = models.PositiveIntegerField()
    headers = models.TextField(blank=True)
    subject = models.TextField(blank=True)
    from_address = models.CharField(max_length=998, blank=True)
    sent_date = models.DateTimeField(null=True, blank=True)
    internal_date = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    category = models.CharField(max_length=16, blank=True)
    reason = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    post_processed_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["mailbox", "folder", "uidvalidity", "uid"], name="inbound_unique_uid"
            ),
            # Message-ID first: the same index also finds a thread's replies by Message-ID across
            # the tenant's mailboxes (shipments' activity lookup joins on it), so no index of its
            # own for message_id (migration 0006).
            models.UniqueConstraint(fields=["message_id", "mailbox"], name="inbound_unique_message_id"),
        ]
        # Status first (migration 0007): an index that starts with the mailbox alone is what
        # PostgreSQL takes for ANY query of a mailbox its statistics have not seen yet (a new
        # mailbox in an analysed table looks like one row), the UID lookup of each fetch batch too,
        # and it then reads every message of the mailbox, each batch. The mailbox's other way in is
        # inbound_unique_uid, whose UID column bounds the scan whatever the statistics say.
        indexes = [
            models.Index(fields=["status", "mailbox"], name="inbound_status_mailbox"),
            # Processed messages waiting for the post-processing action (a crash between commit and
            # action, or the action's batch not yet run): the pass's repair asks for them each time
            # it finds new mail, and by status alone it read every processed message of the mailbox
            # (migration 0008). Partial: a handful of rows, and no way in for other queries.
            models.Index(fields=["mailbox"], name="inbound_awaiting_action",
                         condition=Q(status__in=["processed", "ignored"], post_processed_at__isnull=True)),
        ]


class Route(models.TextChoices):
    MAILBOX = "mailbox", "Staff mailbox"
    TENANT = "tenant", "Company sending mailbox"
    RELAY = "relay", "System relay"


class OutboundMessage(TenantOwned):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    mailbox = models.ForeignKey(
        Mailbox, on_delete=models.SET_NULL, null=True, blank=True, related_name="outbound_messages"
    )
    staff = models.ForeignKey(
        "accounts.Staff", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    via_relay = models.BooleanField(default=False)
    from_address = models.CharField(max_length=998)
    recipients = models.JSONField(default=list)
    subject = models.TextField(blank=True)
    message_id = models.CharField(max_length=998, unique=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)
    raw = models.BinaryField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # What the message is about, as "<kind>:<public id>" (e.g. "shipment:<uuid>"): mailboxes/ does
    # not know the models of the apps that send through it.
    related = models.CharField(max_length=100, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Which way it goes, chosen when queued (mailboxes/sending.py route_choose).
    route = models.CharField(max_length=16, choices=Route.choices, default=Route.MAILBOX)
    # IMAP/SMTP mailboxes: sent, but the copy is not in the Sent folder yet (APPEND failed or the
    # worker died in between); the periodic task files it.
    sent_copy_pending = models.BooleanField(default=False)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="outbound_due")]


class TenantSendingMailbox(TenantOwned):
    """The company's own mailbox for system mail (one per tenant): Microsoft 365 with admin consent."""

    class Kind(models.TextChoices):
        NONE = "none", "None"
        MICROSOFT = "microsoft", "Microsoft 365"

    class Status(models.TextChoices):
        DISABLED = "disabled", "Disabled"
        PENDING_CONSENT = "pending_consent", "Waiting for admin consent"
        ACTIVE = "active", "Active"
        NEEDS_REAUTHORIZATION = "needs_reauthorization", "Needs re-authorization"
        ERROR = "error", "Error"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.NONE)
    directory_id = models.CharField(
        max_length=100, blank=True, help_text="The Microsoft Entra directory (tenant) ID or primary domain."
    )
    sending_address = models.EmailField(blank=True)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.DISABLED)
    refresh_token = EncryptedTextField(blank=True)
    access_token = EncryptedTextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    consented_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwned.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant"], name="tenant_sending_mailbox_one")]

    @property
    def usable(self) -> bool:
        return self.kind == self.Kind.MICROSOFT and self.status == self.Status.ACTIVE


class TenantWebhook(TenantOwned):
    """Where to POST an HMAC-SHA256-signed JSON event after each sent message (one per tenant)."""

    url = models.URLField(max_length=500)
    secret = EncryptedTextField()
    active = models.BooleanField(default=True)
    last_status = models.CharField(max_length=200, blank=True)
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantOwned.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant"], name="tenant_webhook_one")]


class ThrottleEvent(models.Model):
    """The database throttle's memory (mailboxes/throttle.py), used when REDIS_URL is not set."""

    key = models.CharField(max_length=200)
    at = models.FloatField()
    recipients = models.PositiveIntegerField(default=1)

    class Meta:
        indexes = [models.Index(fields=["key", "at"])]

    def __str__(self) -> str:
        return f"{self.key} @ {self.at}"


class ThrottleLock(models.Model):
    """One row per throttle key, locked (SELECT FOR UPDATE) while a worker decides; holds the
    connection slots taken as {token: expires_at}."""

    key = models.CharField(max_length=200, unique=True)
    slots = models.JSONField(default=dict)

    def __str__(self) -> str:
        return self.key


class Lease(models.Model):
    """A named, expiring lock held in the database (mailboxes/locks.py), when there is no Redis.

    Taken with a conditional UPDATE (expired rows only) or an INSERT that the unique key refuses
    while someone else holds it; a crashed holder's lease simply expires.
    """

    key = models.CharField(max_length=200, unique=True)
    token = models.CharField(max_length=64)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.key
