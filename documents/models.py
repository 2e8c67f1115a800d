"""Documents: the files that arrive attached to mail, stored once, read, and filed on shipments.

Two tables, so that identical content is stored once per tenant while every occurrence is kept:

- StoredFile is the content: one row (and one file in storage) per tenant and SHA-256. Its storage
  name is derived from the digest, never from the sender's file name.
- Document is one attachment of one message (unique on the message and the attachment's place in
  it): its own file name, kind, extracted text, processing status, and its match to a shipment.
  Two messages carrying the same PDF make two Documents pointing at one StoredFile.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import Storage, storages
from django.db import models
from django.db.models import Q

from tms.accounts.scoping import TenantOwned


def document_storage() -> Storage:
    """The storage backend for documents (settings.DOCUMENT_STORAGE names an entry of STORAGES).

    A callable, so that the backend is chosen at run time and migrations do not record it."""
    return storages[settings.DOCUMENT_STORAGE]


def stored_file_name(instance: StoredFile, filename: str) -> str:
    # Content-addressed, under the tenant's own prefix: the sender's file name never reaches the
    # storage path (no traversal, no guessing), and equal content maps to the same name.
    return f"documents/{instance.tenant.public_id}/{instance.sha256[:2]}/{instance.sha256}"


class StoredFile(TenantOwned):
    """One stored copy of some content, per tenant."""

    sha256 = models.CharField(max_length=64)
    file = models.FileField(upload_to=stored_file_name, storage=document_storage, max_length=255)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        constraints = [models.UniqueConstraint(fields=["tenant", "sha256"], name="stored_file_once_per_tenant")]

    def __str__(self) -> str:
        return self.sha256


class Kind(models.TextChoices):
    BOL = "bol", "Bill of lading"
    POD = "pod", "Proof of delivery"
    INVOICE = "invoice", "Invoice"
    RATE_CONFIRMATION = "rate_confirmation", "Rate confirmation"
    PACKING_LIST = "packing_list", "Packing list"
    CUSTOMS = "customs", "Customs"
    OTHER = "other", "Other"


class MatchState(models.TextChoices):
    MATCHED = "matched", "Matched"
    UNMATCHED = "unmatched", "Unmatched"
    IGNORED = "ignored", "Ignored"


class Status(models.TextChoices):
    PENDING = "pending", "Waiting to be read"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"


class Document(TenantOwned):
    Kind = Kind
    MatchState = MatchState
    Status = Status

    # Null when the content was never stored (an oversized file: recorded as failed, not kept).
    stored = models.ForeignKey(StoredFile, on_delete=models.PROTECT, null=True, blank=True, related_name="documents")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=127, blank=True)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.OTHER)

    source_message = models.ForeignKey(
        "mailboxes.InboundMessage", on_delete=models.SET_NULL, null=True, blank=True, related_name="documents"
    )
    position = models.PositiveIntegerField(default=0)  # the attachment's place among its message's attachments
    # What the message said, kept for the processor: its shipment refs and the shipments the
    # shipments handler filed it on. Hints only; the file's own refs win.
    hints = models.JSONField(default=dict, blank=True)

    shipment = models.ForeignKey(
        "shipments.Shipment", on_delete=models.SET_NULL, null=True, blank=True, related_name="documents"
    )
    match_state = models.CharField(max_length=10, choices=MatchState.choices, default=MatchState.UNMATCHED)
    matched_via = models.CharField(max_length=200, blank=True)  # the evidence, e.g. "file name: SHP-000123"
    matched_by = models.ForeignKey(
        "accounts.Staff", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    matched_at = models.DateTimeField(null=True, blank=True)
    candidates = models.JSONField(default=list, blank=True)  # shipment numbers worth suggesting when unmatched

    extracted_text = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at", "-id"]
        constraints = [
            # A message processed twice records its attachments once.
            models.UniqueConstraint(
                fields=["source_message", "position"], condition=Q(source_message__isnull=False),
                name="document_once_per_attachment",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "match_state", "-created_at"], name="document_inbox"),
            models.Index(fields=["shipment", "-created_at"], name="document_by_shipment"),
        ]

    def __str__(self) -> str:
        return self.filename

    @property
    def downloadable(self) -> bool:
        return self.stored_id is not None
