"""Documents: record the attachments of a message, read them, match them to shipments.

The intake handler records (inside the message's transaction) and queues the processor after the
commit; the processor (a Celery task) reads the stored bytes, decides the kind and matches. When
the intake workers read the text ahead (`mailbox poll --once`, documents.intake.prepare), the
document is finished as it is recorded instead: inserted read and matched, in the message's
transaction, with nothing queued. A file that cannot be read is recorded as failed with the
reason; it never fails the message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from classifier.attachments import kind_from_text
from mailboxes.models import InboundMessage
from shipments.models import Activity, Shipment
from tms.accounts.models import Staff, Tenant
from tms.db import by_each_key, rows_insert, rows_update_unnest

from . import extract, matching
from .models import Document, Kind, MatchState, Status, StoredFile, document_storage, stored_file_name

logger = logging.getLogger(__name__)

# Signature logos and social icons that mail programs attach as files ("image001.png", "logo.gif"):
# small images with names like these are decoration, not documents. Inline images shown by the
# HTML body (Content-ID, not disposition "attachment") never reach us: the classifier drops them.
_DECORATION_MAX_BYTES = 64 * 1024
_DECORATION_NAMES = ("image0", "logo", "signature", "banner", "icon", "facebook", "linkedin", "twitter",
                     "instagram", "youtube", "outlook", "spacer")
# Kind.values builds a new list on every use.
_KINDS = frozenset(Kind.values)


class AttachmentLike(Protocol):
    """What the classifier reports per attachment (classifier.Attachment)."""

    @property
    def filename(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


def is_decoration(attachment: AttachmentLike) -> bool:
    name = attachment.filename.lower()
    return (
        attachment.content_type.lower().startswith("image/")
        and len(attachment.payload) <= _DECORATION_MAX_BYTES
        and any(word in name for word in _DECORATION_NAMES)
    )


def limits() -> extract.Limits:
    return extract.Limits(
        max_pages=settings.DOCUMENT_MAX_PAGES, max_chars=settings.DOCUMENT_MAX_TEXT_CHARS,
        max_inflated=settings.DOCUMENT_MAX_DECOMPRESSED_BYTES, seconds=float(settings.DOCUMENT_EXTRACT_SECONDS),
    )


# ----------------------------------------------------------------------------- storage


def stored_file_for(*, tenant: Tenant, payload: bytes, sha256: str | None = None) -> StoredFile:
    """The tenant's one stored copy of `payload`, written to storage when it is new.

    The storage name is the digest, so a write left behind by a rolled-back transaction is simply
    found again on the next attempt; two transactions storing the same content meet at the
    unique (tenant, sha256) constraint and both end up with the first one's row.
    """
    digest = sha256 or hashlib.sha256(payload).hexdigest()
    existing = StoredFile.objects.for_tenant(tenant).filter(sha256=digest).first()
    if existing is not None:
        return existing
    row = _stored_file_written(tenant=tenant, payload=payload, digest=digest)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        return StoredFile.objects.for_tenant(tenant).get(sha256=digest)
    return row


def _stored_file_written(*, tenant: Tenant, payload: bytes, digest: str) -> StoredFile:
    """The unsaved row of `payload`, its content written to storage unless it is there already."""
    row = StoredFile(tenant=tenant, sha256=digest, size=len(payload))
    storage = document_storage()
    name = stored_file_name(row, "")
    if not storage.exists(name):
        name = storage.save(name, ContentFile(payload))
    row.file.name = name
    return row


def stored_files_for(*, tenant: Tenant, payloads: dict[str, bytes]) -> dict[str, StoredFile]:
    """stored_file_for for many contents at once ({sha256: bytes}): one SELECT for those already
    stored, one INSERT ... ON CONFLICT DO NOTHING for the new ones (a concurrent intake storing the
    same content meets the unique constraint without failing), returning the new rows' ids; a
    SELECT only for those a concurrent intake stored first."""
    if not payloads:
        return {}
    rows = StoredFile.objects.for_tenant(tenant)
    found = {row.sha256: row for row in rows.filter(sha256__in=list(payloads))}
    new = [_stored_file_written(tenant=tenant, payload=payloads[d], digest=d) for d in payloads if d not in found]
    if new:
        found.update((row.sha256, row) for row in rows_insert(new, ignore_conflicts=True, key="public_id"))
        taken = [row.sha256 for row in new if row.sha256 not in found]
        if taken:  # stored meanwhile by a concurrent intake: its rows
            found.update((row.sha256, row) for row in rows.filter(sha256__in=taken))
    return found


# ----------------------------------------------------------------------------- intake


@dataclass
class RecordOutcome:
    created: list[Document] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # decoration and empty parts, by file name


def _clip_filename(name: str) -> str:
    name = " ".join((name or "attachment").split()) or "attachment"
    if len(name) <= 255:
        return name
    stem, dot, suffix = name.rpartition(".")
    if dot and 0 < len(suffix) <= 10:
        return f"{stem[: 254 - len(suffix)]}.{suffix}"
    return name[:255]


def _content_type(attachment: AttachmentLike) -> str:
    return (attachment.content_type or "application/octet-stream")[:127]


def documents_record_from_message(
    *, message: InboundMessage, attachments: Sequence[AttachmentLike], hints: dict[str, Any] | None = None,
    batch: dict[str, Any] | None = None, extracted: dict[str, Any] | None = None,
) -> RecordOutcome:
    """A Document per attachment of `message` (not decoration, not empty), inside the caller's
    transaction; the processor is queued for each after the commit.

    Safe to run twice: an attachment is recorded once per (message, position), the unique
    constraint says so. An oversized file is recorded as failed and not stored. Never raises for
    a bad attachment. `batch`: the intake batch's cache (IntakeContext.batch): the positions
    already recorded are fetched once for all the batch's messages. `extracted`: what
    documents_extract_ahead read of these attachments: a document whose text is there is recorded
    finished (read, matched, its timeline entry inserted) and nothing is queued for it.
    """
    tenant = message.tenant
    outcome = RecordOutcome()
    done = _positions_recorded(message=message, batch=batch)
    deferred = _deferred_for(batch)
    max_bytes = settings.DOCUMENT_MAX_BYTES
    for position, attachment in enumerate(attachments):
        payload = bytes(attachment.payload or b"")
        if position in done:
            continue
        if not payload or is_decoration(attachment):
            outcome.skipped.append(attachment.filename)
            continue
        digest = hashlib.sha256(payload).hexdigest()
        kind = attachment.kind if attachment.kind in _KINDS else Kind.OTHER
        document = Document(
            tenant=tenant, source_message=message, position=position, filename=_clip_filename(attachment.filename),
            content_type=_content_type(attachment), size=len(payload),
            sha256=digest, kind=kind, hints=dict(hints or {}),
        )
        if len(payload) > max_bytes:
            document.status = Status.FAILED
            document.error = f"file too large: {len(payload)} bytes (the limit is {max_bytes})"
            document.processed_at = timezone.now()
        read = _read_ahead(document, extracted) if document.status == Status.PENDING else None
        if deferred is not None:
            deferred.add(document, payload if document.status == Status.PENDING else None, read=read)
            outcome.created.append(document)
            continue
        if document.status == Status.PENDING:
            document.stored = stored_file_for(tenant=tenant, payload=payload, sha256=digest)
        # Finished before its INSERT: a concurrent run of the same message (the conflict below)
        # leaves nothing of this one behind, its timeline entry is inserted only with the row.
        activities = _outcomes_record([(document, read)]) if read is not None else []
        try:
            with transaction.atomic():
                document.save()
        except IntegrityError:
            continue  # recorded by a concurrent run of the same message
        outcome.created.append(document)
        rows_insert(activities)
        if document.status == Status.PENDING:
            _enqueue_after_commit(document.pk, batch=batch)
        else:
            _outcome_log(document)
    return outcome


# A document's outcome as read: its text, or the reason it cannot be read.
_Read = extract.Extraction | str


def _read_ahead(document: Document, extracted: dict[str, Any] | None) -> _Read | None:
    """What documents_extract_ahead read of the pending `document`'s bytes (the key holds their
    digest), if it read them under today's limits."""
    if not extracted or extracted.get("limits") != limits():
        return None
    key = _ahead_key(sha256=document.sha256, filename=document.filename, content_type=document.content_type)
    found: _Read | None = (extracted.get("texts") or {}).get(key)
    return found


_DEFERRED = "documents.deferred"


class _Deferred:
    """The documents an intake batch recorded and has not inserted yet: at the batch's end
    (BATCH_FLUSH, inside its transaction, after the other handlers' flushes: see
    documents_flush_last) their contents are stored with stored_files_for, those read ahead are
    finished (matched against the shipments the batch made too: one prefetch a tenant), the rows
    inserted with one INSERT and the timeline entries of the matches with another, then the
    processor is queued for the documents still pending. The unique (message, position)
    constraint still judges at the INSERT: a conflict (the same message run concurrently) fails
    the batch - nothing of it stays, finished rows included - which then runs one message at a
    time, each document under its own savepoint."""

    def __init__(self, batch: dict[str, Any]) -> None:
        self.batch = batch
        self.documents: list[Document] = []
        self.read: list[tuple[Document, _Read]] = []  # the pending ones read ahead, to finish
        self.payloads: dict[int, dict[str, bytes]] = {}  # tenant id -> {sha256: bytes} to store

    def add(self, document: Document, payload: bytes | None, *, read: _Read | None = None) -> None:
        self.documents.append(document)
        if read is not None:
            self.read.append((document, read))
        if payload is not None:
            self.payloads.setdefault(document.tenant_id, {}).setdefault(document.sha256, payload)

    def write(self) -> None:
        documents, self.documents = self.documents, []
        read, self.read = self.read, []
        payloads, self.payloads = self.payloads, {}
        if not documents:
            return
        tenants = {document.tenant_id: document.tenant for document in documents}
        stored = {(tenant_id, digest): row for tenant_id, found in payloads.items()
                  for digest, row in stored_files_for(tenant=tenants[tenant_id], payloads=found).items()}
        for document in documents:
            if document.status == Status.PENDING:
                document.stored = stored[(document.tenant_id, document.sha256)]
        activities = _outcomes_record(read)
        rows_insert(documents)
        rows_insert(activities)
        for document in documents:
            if document.status == Status.PENDING:
                _enqueue_after_commit(document.pk, batch=self.batch)
            else:
                _outcome_log(document)


def _deferred_for(batch: dict[str, Any] | None) -> _Deferred | None:
    """The batch's deferred documents; None outside an intake batch of several messages (one
    message alone keeps a savepoint per document)."""
    from mailboxes.intake import BATCH_FLUSH, BATCH_MESSAGES

    if batch is None or len(batch.get(BATCH_MESSAGES) or ()) < 2:
        return None
    found: _Deferred | None = batch.get(_DEFERRED)
    if found is None:
        batch[_DEFERRED] = found = _Deferred(batch)
        batch.setdefault(BATCH_FLUSH, []).append(found.write)
    return found


def documents_flush_last(*, batch: dict[str, Any]) -> None:
    """Keep the batch's documents flush (registered with its first document) after the flushes
    the other handlers registered since - the shipments handler's INSERT of the batch's new
    shipments, say - so that finishing a document matches against them: the intake runs this
    for every message, after the handlers before it in settings."""
    from mailboxes.intake import BATCH_FLUSH

    found: _Deferred | None = batch.get(_DEFERRED)
    flushes: list[Any] | None = batch.get(BATCH_FLUSH)
    if found is not None and flushes and flushes[-1] != found.write:
        flushes.remove(found.write)
        flushes.append(found.write)


_POSITIONS = "documents.positions"


def _positions_recorded(*, message: InboundMessage, batch: dict[str, Any] | None) -> set[int]:
    from mailboxes.intake import BATCH_MESSAGES

    tenant = message.tenant
    if batch is not None and BATCH_MESSAGES in batch:
        known: dict[int, tuple[set[int], dict[int, set[int]]]] = batch.setdefault(_POSITIONS, {})
        if tenant.pk not in known:
            covered = {m.pk for m in batch[BATCH_MESSAGES] if m.tenant_id == tenant.pk}
            positions: dict[int, set[int]] = {}
            for message_id, position in _positions_of(tenant=tenant, message_ids=covered):
                positions.setdefault(message_id, set()).add(position)
            known[tenant.pk] = (covered, positions)
        covered, positions = known[tenant.pk]
        if message.pk in covered:
            return positions.get(message.pk, set())
    return set(Document.objects.for_tenant(tenant).filter(source_message=message).values_list("position", flat=True))


def _positions_of(*, tenant: Tenant, message_ids: set[int]) -> list[tuple[int, int]]:
    """(message id, position) of the tenant's documents from these messages. On PostgreSQL one
    index lookup a message (tms.db.by_each_key says why)."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        return list(Document.objects.for_tenant(tenant).filter(source_message_id__in=message_ids)
                    .values_list("source_message_id", "position"))
    # `tenant_id + 0`: checked on each row, never a way in (the key is not unique here: PostgreSQL
    # without statistics ANDed the tenant's every document into each lookup).
    source = by_each_key(Document, ("bigint", "source_message_id = each_key.value AND tenant_id + 0 = %s"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT source_message_id, position FROM {source}",  # noqa: S608
                       [sorted(message_ids), tenant.pk])
        return cursor.fetchall()


_QUEUED = "documents.queued"


def _enqueue_after_commit(document_id: int, *, batch: dict[str, Any] | None) -> None:
    """Queue the processor once the transaction has committed: in an intake batch, one task for
    all the batch's documents (documents_process: one read and one write transaction for them
    all), else one task for this one."""
    from mailboxes.intake import BATCH_MESSAGES

    if batch is None or BATCH_MESSAGES not in batch:
        transaction.on_commit(partial(_enqueue, document_id))
        return
    queued: list[int] | None = batch.get(_QUEUED)
    if queued is None:
        queued = batch[_QUEUED] = []
        transaction.on_commit(partial(_enqueue_many, queued))
    queued.append(document_id)


def _enqueue(document_id: int) -> None:
    from .tasks import document_process_task

    document_process_task.delay(document_id)


def _enqueue_many(document_ids: list[int]) -> None:
    from .tasks import documents_process_task

    if len(document_ids) == 1:
        _enqueue(document_ids[0])
    elif document_ids:
        documents_process_task.delay(list(document_ids))


# ----------------------------------------------------------------------------- read ahead

def _ahead_key(*, sha256: str, filename: str, content_type: str) -> str:
    return "\x1f".join((sha256, filename, content_type))


def documents_extract_ahead(*, attachments: Sequence[AttachmentLike]) -> dict[str, Any]:
    """Pure (no database): the text of each attachment that documents_record_from_message would
    record as pending, or the reason it cannot be read, by _ahead_key."""
    out: dict[str, Any] = {}
    bounds = limits()
    for attachment in attachments:
        payload = bytes(attachment.payload or b"")
        if not payload or is_decoration(attachment) or len(payload) > settings.DOCUMENT_MAX_BYTES:
            continue
        filename, content_type = _clip_filename(attachment.filename), _content_type(attachment)
        key = _ahead_key(sha256=hashlib.sha256(payload).hexdigest(), filename=filename, content_type=content_type)
        try:
            out[key] = extract.extract_text(payload=payload, filename=filename, content_type=content_type,
                                            limits=bounds)
        except extract.ExtractionError as exc:
            out[key] = str(exc)
    return {"limits": bounds, "texts": out}


# ----------------------------------------------------------------------------- processing


def document_read(*, document: Document) -> bytes:
    """The stored bytes (OSError when the storage cannot be read: a temporary error)."""
    if document.stored is None:
        raise FileNotFoundError("the document's content was not stored")
    return _stored_read(document.stored.file.name)


def _stored_read(name: str | None) -> bytes:
    """The bytes of a StoredFile by its storage name, as StoredFile.file.open() reads them (the
    batch processor has the name alone: it builds no rows to read its documents)."""
    if name is None:
        raise FileNotFoundError("the document's content was not stored")
    if not name:
        raise ValueError("The 'file' attribute has no file associated with it.")
    with _STORED_FILE.storage.open(name, "rb") as handle:
        data: bytes = handle.read(settings.DOCUMENT_MAX_BYTES + 1)
    return data


_STORED_FILE = cast(Any, StoredFile._meta.get_field("file"))


def document_process(*, document_id: int) -> Document | None:
    """Read a pending document, decide its kind and match it. None when the row is gone.

    Safe to run twice: a document that is no longer pending is returned as it is; the outcome is
    written under a row lock, once. OSError (storage unreachable) propagates for the task to retry.
    """
    document = Document.unscoped.select_related("tenant", "stored").filter(pk=document_id).first()
    if document is None or document.status != Status.PENDING:
        return document
    try:
        payload = document_read(document=document)
        if len(payload) > settings.DOCUMENT_MAX_BYTES:
            raise extract.ExtractionError(
                f"file too large: more than {settings.DOCUMENT_MAX_BYTES} bytes (the limit)"
            )
        result = _extract(filename=document.filename, content_type=document.content_type, payload=payload)
    except extract.ExtractionError as exc:
        return document_fail(document_id=document_id, reason=str(exc))
    return _finish(document_id=document_id, result=result)


def _extract(*, filename: str, content_type: str, payload: bytes) -> extract.Extraction:
    return extract.extract_text(payload=payload, filename=filename, content_type=content_type, limits=limits())


def document_fail(*, document_id: int, reason: str) -> Document | None:
    """Record that a pending document cannot be read (it stays unmatched, for staff to look at)."""
    with transaction.atomic():
        document = Document.unscoped.select_for_update().filter(pk=document_id).first()
        if document is None or document.status != Status.PENDING:
            return document
        document.status = Status.FAILED
        document.error = reason[:2000]
        document.processed_at = timezone.now()
        document.save(update_fields=["status", "error", "processed_at"])
    logger.info("document %s failed: %s", document_id, reason)
    return document


def documents_process(*, document_ids: Sequence[int]) -> list[int]:
    """document_process for many documents at once (the intake queues one task per batch): one
    SELECT reads them, each is extracted, and their outcomes are written in ONE transaction under
    their row locks (pending ones only: safe to run twice). Returns the ids left for
    document_process one by one - a storage error (retried with backoff there) or an unexpected
    error - so that one bad file never holds up the others."""
    # What reading needs, as plain values: the rows are read again, whole, under their locks.
    pending = (Document.unscoped.filter(pk__in=list(document_ids), status=Status.PENDING).order_by("pk")
               .values_list("pk", "filename", "content_type", "stored__file"))
    outcomes: dict[int, _Read] = {}
    left: list[int] = []
    for pk, filename, content_type, stored_name in pending:
        try:
            payload = _stored_read(stored_name)
            if len(payload) > settings.DOCUMENT_MAX_BYTES:
                raise extract.ExtractionError(
                    f"file too large: more than {settings.DOCUMENT_MAX_BYTES} bytes (the limit)"
                )
            outcomes[pk] = _extract(filename=filename, content_type=content_type, payload=payload)
        except extract.ExtractionError as exc:
            outcomes[pk] = str(exc)
        except Exception:  # OSError and the unexpected: the one-by-one task retries or reports it
            logger.warning("document %s: left to its own task", pk, exc_info=True)
            left.append(pk)
    if outcomes:
        with transaction.atomic():
            locked = list(Document.unscoped.select_for_update(of=("self",)).select_related("tenant")
                          .filter(pk__in=list(outcomes), status=Status.PENDING).order_by("pk"))
            rows_insert(_outcomes_record([(document, outcomes[document.pk]) for document in locked]))
            _documents_write(locked)
        for document in locked:
            _outcome_log(document)
    return left


# What _outcomes_record may change on a document.
_OUTCOME_FIELDS = ("extracted_text", "kind", "status", "error", "processed_at", "candidates", "shipment",
                   "match_state", "matched_via", "matched_by", "matched_at")


def _documents_write(documents: Sequence[Document]) -> None:
    """The outcome columns of locked documents, in one statement (tms.db.rows_update_unnest; the
    columns a document's outcome did not touch are written back as they were read)."""
    rows_update_unnest(objects=documents, field_names=_OUTCOME_FIELDS)


def _outcomes_record(outcomes: Sequence[tuple[Document, _Read]]) -> list[Activity]:
    """Set each pending document's outcome on its instance - failed with the reason, or read
    (_record_result), matched through one matching.prefetch per tenant - and return the timeline
    entries of the matches, for the caller to insert with the rows it writes (locked rows
    updated, or new rows inserted finished)."""
    evidences: list[matching.Evidence | None] = []
    wanted: dict[int, tuple[Tenant, list[matching.Evidence]]] = {}
    for document, outcome in outcomes:
        known = None
        if isinstance(outcome, extract.Extraction) and _will_match(document):
            known = matching.evidence(tenant=document.tenant, filename=document.filename, text=outcome.text,
                                      hints=document.hints or {})
            wanted.setdefault(document.tenant_id, (document.tenant, []))[1].append(known)
        evidences.append(known)
    prefetched = {tenant_id: matching.prefetch_evidence(tenant=tenant, evidences=found)
                  for tenant_id, (tenant, found) in wanted.items()}
    activities: list[Activity] = []
    for (document, outcome), known in zip(outcomes, evidences, strict=True):
        if isinstance(outcome, str):
            document.status = Status.FAILED
            document.error = outcome[:2000]
            document.processed_at = timezone.now()
        else:
            _record_result(document, outcome, prefetched=prefetched.get(document.tenant_id), known=known,
                           activities=activities)
    return activities


def _outcome_log(document: Document) -> None:
    if document.status == Status.FAILED:
        logger.info("document %s of message %s failed: %s", document.pk, document.source_message_id, document.error)
    else:
        logger.info("document %s processed: kind %s, %s", document.pk, document.kind,
                    f"matched to shipment {document.shipment_id}" if document.shipment_id else "unmatched")


def _will_match(document: Document) -> bool:
    return document.match_state == MatchState.UNMATCHED and document.shipment_id is None


def _finish(*, document_id: int, result: extract.Extraction) -> Document | None:
    with transaction.atomic():
        document = (Document.unscoped.select_for_update(of=("self",)).select_related("tenant")
                    .filter(pk=document_id).first())
        if document is None or document.status != Status.PENDING:
            return document
        _record_result(document, result)
    _outcome_log(document)
    return document


def _record_result(document: Document, result: extract.Extraction, *, prefetched: matching.Prefetched | None = None,
                   known: matching.Evidence | None = None, activities: list[Activity] | None = None) -> None:
    """Write what was read of a pending document, matching it when the evidence says so.
    `prefetched`: matching.prefetch() of a batch that includes it, `known` its matching.evidence();
    `activities`: the caller inserts the timeline entry of a match (appended there) and writes the
    _OUTCOME_FIELDS; without it the (locked) document is saved here."""
    document.extracted_text = result.text
    document.kind = _refined_kind(document.kind, result)
    document.status = Status.PROCESSED
    document.error = ""
    document.processed_at = timezone.now()
    fields = ["extracted_text", "kind", "status", "error", "processed_at"]
    if _will_match(document):
        found = matching.find_match(tenant=document.tenant, filename=document.filename, text=result.text,
                                    hints=document.hints or {}, prefetched=prefetched, known=known)
        document.candidates = found.candidates
        fields.append("candidates")
        if found.shipment is not None:
            _match(document, shipment=found.shipment, staff=None, via=found.via, activities=activities)
            fields += ["shipment", "match_state", "matched_via", "matched_by", "matched_at"]
    if activities is None:
        document.save(update_fields=fields)


def _refined_kind(kind: str, result: extract.Extraction) -> str:
    """The classifier judged the kind at intake from the name and the content it could read
    cheaply; when it found nothing, the title and first lines of the text we read may say."""
    if kind != Kind.OTHER or not result.text:
        return kind
    head = "\n".join([result.title, *[line for line in result.text.splitlines() if line.strip()][:2]])
    found = kind_from_text(head)
    return found if found in _KINDS else kind


# ----------------------------------------------------------------------------- staff actions


def _match(document: Document, *, shipment: Shipment, staff: Staff | None, via: str,
           activities: list[Activity] | None = None) -> None:
    """File `document` on `shipment` and note it on the shipment's timeline: the Activity is
    inserted here, or appended to `activities` for the caller to insert with others."""
    document.shipment = shipment
    document.match_state = MatchState.MATCHED
    document.matched_via = via[:200]
    document.matched_by = staff
    document.matched_at = timezone.now()
    activity = Activity(
        tenant=document.tenant, shipment=shipment, kind=Activity.Kind.DOCUMENT, actor=staff,
        text=f"{Kind(document.kind).label}: {document.filename}"
             + (f" (matched by {via})" if staff is None and via else ""),
    )
    if activities is None:
        activity.save(force_insert=True)
    else:
        activities.append(activity)


def document_match(*, document: Document, shipment: Shipment, staff: Staff | None = None, via: str = "") -> Document:
    """File `document` on `shipment` (both of one tenant) and note it on the shipment's timeline.

    Matching again to the same shipment changes nothing; to another one moves the document."""
    if shipment.tenant_id != document.tenant_id or (staff is not None and staff.tenant_id != document.tenant_id):
        raise ValidationError({"shipment": "No such shipment."})
    with transaction.atomic():
        locked = Document.unscoped.select_for_update(of=("self",)).select_related("tenant").get(pk=document.pk)
        if locked.match_state == MatchState.MATCHED and locked.shipment_id == shipment.pk:
            return locked
        _match(locked, shipment=shipment, staff=staff, via=via or (f"staff: {staff.name}" if staff else "staff"))
        locked.save(update_fields=["shipment", "match_state", "matched_via", "matched_by", "matched_at"])
    logger.info("document %s matched to shipment %s by staff %s", locked.pk, shipment.pk,
                staff.pk if staff else None)
    return locked


def document_ignore(*, document: Document, staff: Staff | None = None) -> Document:
    """Take an unmatched document out of the inbox (a W-9, a fuel table): kept, but not filed."""
    with transaction.atomic():
        locked = Document.unscoped.select_for_update().get(pk=document.pk)
        if locked.match_state == MatchState.IGNORED:
            return locked
        locked.match_state = MatchState.IGNORED
        locked.shipment = None
        locked.matched_by = staff
        locked.matched_at = timezone.now()
        locked.matched_via = ""
        locked.save(update_fields=["match_state", "shipment", "matched_by", "matched_at", "matched_via"])
    return locked


def documents_pending_ids(*, older_than_seconds: int = 300, limit: int = 500) -> list[int]:
    """Pending documents whose task seems lost (the sweep re-queues them; processing is idempotent)."""
    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    return list(
        Document.unscoped.filter(status=Status.PENDING, created_at__lt=cutoff)
        .order_by("created_at").values_list("pk", flat=True)[:limit]
    )


def message_hints(*, refs: Iterable[str], shipments: Iterable[str]) -> dict[str, Any]:
    return {"refs": sorted({str(r) for r in refs}), "shipments": sorted({str(s) for s in shipments})}
