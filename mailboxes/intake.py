"""What happens to a stored message: intake handlers, then the mailbox's post-processing action.

mailboxes/ knows nothing of shipments or documents. Once a message is stored (reading.py), it is
handed to the intake handlers named in settings.MAILBOX_INTAKE_HANDLERS, and only after their
transaction has committed is the mailbox's post-processing action (archive, mark read, delete,
nothing) applied to its UID on the server.

The handler protocol (code against this)
----------------------------------------
A handler is a callable found by dotted path::

    def handle(message: InboundMessage, context: IntakeContext) -> IntakeResult | None

- It is called inside the one database transaction that processes the message (together with
  the other handlers and the message's status update): if any handler raises, everything the
  handlers wrote for this message is rolled back, the message is marked FAILED (QUARANTINED after
  settings.MAILBOX_MAX_ATTEMPTS attempts) and retried on the next poll. So a handler must be
  safe to run again for the same message: guard with a unique constraint on the message (e.g. a
  shipment's one-to-one link to its source InboundMessage) rather than by checking first.
- It must not touch the IMAP server or send mail synchronously (queue that with
  transaction.on_commit): the server is only touched after the commit, by this module.
- Handlers run in the order of the setting. `context.results` holds what the earlier ones
  returned for this message and `context.records` their records merged, so a later handler (say
  documents) can find what an earlier one (say shipments) made.
- `context.classification` is the classifier's verdict (classifier.classify on the raw bytes with
  the tenant's shipment prefix), computed once and shared by all handlers.
- Return an IntakeResult (plain data), or None for "nothing to do with me".
    * category: "quote" | "pickup" | "operations" | "other" - the first non-empty category
      returned (in handler order) is the message's category; it feeds the poll counters.
    * reason: one line on why (shown beside the message).
    * records: what the handler created or updated, counted by kind, e.g. {"shipment": 1,
      "document": 2}; summed over the handlers.
    * data: any JSON-serialisable detail worth keeping (ids, refs); stored per handler.
    * ignored: True when the handler judged the message not for us; the message becomes IGNORED
      when a handler says so and no handler made a record.
- Messages that are noise (mail this system sent, the mailbox owner's own mail, auto-replies,
  bounces, bulk mail) never reach the handlers: they are IGNORED with the reason, category
  "other", before any handler is asked.

A handler's module may also define a pure companion, run ahead in prepare.py's worker processes
for big polls::

    def prepare(raw: bytes, classification: classifier.Classification) -> Any

- No database, no network, no settings writes: it gets the raw bytes and the verdict, and returns
  picklable data, found by the handler in `context.prepared["<module>.prepare"]`.
- It is an optimisation only: it may not have run (small polls, a failed worker, noise), so the
  handler must do the same without it (e.g. compute the thing itself, later).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from tms.db import AnyOf, model_rows, rows_update_unnest
from tms.logging import log_context

from .models import InboundMessage, Mailbox, OutboundMessage

if TYPE_CHECKING:
    from datetime import datetime

    from imapclient import IMAPClient

    from tms.accounts.models import Tenant

    from .prepare import Prepared

logger = logging.getLogger(__name__)

CATEGORIES = ("quote", "pickup", "operations", "other")
# IntakeContext.batch key: {message id: classification} of the batch's messages whose verdict the
# intake workers computed ahead (prepare.py; possibly none), for handlers that prefetch by it.
BATCH_CLASSIFICATIONS = "mailboxes.classifications"
DONE = (InboundMessage.Status.PROCESSED, InboundMessage.Status.IGNORED)
BATCH_MESSAGES = "mailboxes.messages"
BATCH_FLUSH = "mailboxes.flush"
PENDING = (InboundMessage.Status.RECEIVED, InboundMessage.Status.FAILED)
# The longest UID set put in one STORE/MOVE/EXPUNGE command (RFC 7162 3.2.2 asks clients to keep a
# command line to about 8,192 octets; Dovecot refuses lines over 64 KB). Ranges keep a set short:
# a pass's processed messages are mostly consecutive UIDs, and then one command takes them all,
# which matters: each command costs the server work in proportion to the folder's size (Dovecot,
# Maildir, 100,000 messages: a MOVE of 1,000 UIDs cost 0.23 ms of its CPU a message, of 10,000
# UIDs 0.07 ms; bench/README.md, ingest).
ACTION_MAX_SET_BYTES = 8000


class BatchFlushConflict(Exception):
    """A handler's batch-wide write (rows it kept to insert together) hit a conflict - a copy of a
    message filed by a concurrent intake, say - while another message of the batch was being run.
    The error is the batch's, not that message's: messages_process runs the batch one message at
    a time instead of recording a failure against the message that happened to be current."""


@dataclass(frozen=True)
class IntakeResult:
    category: str = ""
    reason: str = ""
    records: dict[str, int] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    ignored: bool = False


@dataclass
class IntakeContext:
    message: InboundMessage
    results: list[IntakeResult] = field(default_factory=list)
    # Shared by the messages of one batch, i.e. of one transaction (a fresh dict per attempt of the
    # batch, so nothing of a rolled-back attempt survives): handlers may cache rows they read or
    # wrote there (say the sender's contact) under keys prefixed with their own package name.
    # BATCH_MESSAGES names the batch's messages (all locked, in processing order), for handlers
    # that prefetch what the whole batch needs in one query; callables appended to the list under
    # BATCH_FLUSH run once, in order, after the batch's last message, inside its transaction (say
    # one bulk INSERT of rows the handlers collected): an exception there fails the whole batch,
    # which then runs again one message at a time.
    batch: dict[str, Any] = field(default_factory=dict)
    # What the handlers' `prepare` companions computed ahead for this message, by their dotted
    # name ("documents.intake.prepare"); empty when they did not run (see the module docstring).
    prepared: dict[str, Any] = field(default_factory=dict)

    @property
    def mailbox(self) -> Mailbox:
        return self.message.mailbox

    @property
    def tenant(self) -> Tenant:
        return self.message.tenant

    @property
    def records(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for result in self.results:
            for kind, count in result.records.items():
                merged[kind] = merged.get(kind, 0) + count
        return merged

    @cached_property
    def classification(self) -> Any:
        """classifier.Classification of the raw message (parsed once for all handlers), with the
        tenant's shipment prefix and "enough detail" rules."""
        from .classification import classify_for_tenant

        return classify_for_tenant(bytes(self.message.raw or b""), self.tenant)


Handler = Callable[[InboundMessage, IntakeContext], "IntakeResult | None"]


def classify_handler(message: InboundMessage, context: IntakeContext) -> IntakeResult:
    """The default handler until shipments/documents install theirs: classify, create nothing."""
    verdict = context.classification
    category = verdict.category if verdict.category in CATEGORIES else "other"
    return IntakeResult(category=category, reason=str(verdict.reason or "")[:1000],
                        data={"signals": jsonable(verdict.signals)})


_SCALARS = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """Plain JSON data from handler output (dataclasses, tuples, sets become dicts/lists/strings)."""
    kind = type(value)
    if kind in _SCALARS:  # most values: asked first, without isinstance against the Mapping ABC
        return value
    if kind is dict:
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@lru_cache(maxsize=8)
def _load(paths: tuple[str, ...]) -> tuple[tuple[str, Handler], ...]:
    return tuple((path, import_string(path)) for path in paths)


def intake_handlers() -> tuple[tuple[str, Handler], ...]:
    return _load(tuple(settings.MAILBOX_INTAKE_HANDLERS))


Preparer = Callable[[bytes, Any], Any]


def intake_preparers() -> tuple[tuple[str, Preparer], ...]:
    """The `prepare` companions of the handlers' modules, (dotted name, function), in handler order."""
    found: list[tuple[str, Preparer]] = []
    for path, handler in intake_handlers():
        module = getattr(handler, "__module__", None) or path.rpartition(".")[0]
        function = getattr(import_module(module), "prepare", None)
        name = f"{module}.prepare"
        if callable(function) and name not in dict(found):
            found.append((name, function))
    return tuple(found)


def intake_grown_models() -> tuple[type[models.Model], ...]:
    """The models the handlers' modules name in their `GROWS`: tables an import makes grow, whose
    statistics a big pass refreshes as it goes (reading.FolderReader.read, tms.db.statistics_refresh)."""
    found: list[type[models.Model]] = []
    for path, handler in intake_handlers():
        module = getattr(handler, "__module__", None) or path.rpartition(".")[0]
        found += [m for m in getattr(import_module(module), "GROWS", ()) if m not in found]
    return tuple(found)


# ----------------------------------------------------------------------------- noise


@lru_cache(maxsize=4096)
def _normalised_address(value: str) -> str:
    """The bare address of a From header, lower-cased. Remembered: email.utils.parseaddr is a
    tokenizer in Python (~16 µs a call), asked of every message, and the same senders write again
    and again."""
    from email.utils import parseaddr

    return parseaddr(value)[1].strip().lower()


def is_our_message_id(message_id: str) -> bool:
    """Did this system send a message with this Message-ID?"""
    if not message_id:
        return False
    try:
        from . import sending

        check = getattr(sending, "is_our_message_id", None)
    except ImportError:
        check = None
    if check is not None and check(message_id):
        return True
    return OutboundMessage.unscoped.filter(message_id=message_id).exists()


def noise_reason(message: InboundMessage, *, ours: frozenset[str] | None = None,
                 detected: tuple[str | None] | None = None) -> str | None:
    """Why the message must never create anything, or None. Cheapest checks first.

    ours: the batch's Message-IDs found in the outbound log, looked up once for the whole batch
    (messages_process); None looks this message's up on its own. detected: classifier.detect_noise
    of this message's raw bytes when already computed (prepare.py's workers), as a 1-tuple."""
    if ours is not None:
        from . import sending

        if message.message_id in ours or sending.is_our_message_id(message.message_id):
            return "sent by this system"
    elif is_our_message_id(message.message_id):
        return "sent by this system"
    mailbox = message.mailbox
    sender = _normalised_address(message.from_address)
    own = {a.lower() for a in (mailbox.email_address, mailbox.from_address) if a}
    if sender and sender in own:
        return "the mailbox owner's own mail"
    if detected is not None:
        reason = detected[0]
    else:
        import classifier

        reason = classifier.detect_noise(bytes(message.raw or b""))
    return str(reason) if reason else None


# ----------------------------------------------------------------------------- processing


# message id -> what prepare.PreparePool's workers computed for it ahead, or None
Prepare = Callable[[int], "Prepared | None"]


@dataclass
class ProcessOutcome:
    status: str
    category: str = ""


def message_process(*, message_id: int, prepared: Prepare | None = None) -> ProcessOutcome | None:
    """Run the intake for one stored message, in one transaction. None when it is not pending.

    A failure rolls back everything the handlers did, then counts the attempt on the message:
    FAILED (retried on the next poll) or QUARANTINED once settings.MAILBOX_MAX_ATTEMPTS is reached.
    """
    try:
        with transaction.atomic():
            message = (
                InboundMessage.unscoped.select_for_update(of=("self",))
                .select_related(*_RELATED)
                .filter(pk=message_id, status__in=PENDING)
                .first()
            )
            if message is None:
                return None
            _run_intake(message, prepared=prepared(message.pk) if prepared is not None else None)
            return ProcessOutcome(message.status, message.category)
    except Exception as exc:
        with log_context(inbound=message_id):
            logger.exception("inbound message %s: intake failed", message_id)
            return _record_failure(message_id, exc)


# The mailbox's owner is what shipments are assigned to: joined here rather than fetched per message.
_RELATED = ("mailbox", "mailbox__staff", "tenant")
_OUTCOME_FIELDS = ["status", "category", "reason", "result", "attempts", "processed_at", "error"]


def messages_process(*, message_ids: Sequence[int], prepared: Prepare | None = None,
                     raws: Mapping[int, bytes] | None = None) -> dict[int, ProcessOutcome | None]:
    """Run the intake for a batch of stored messages; {id: outcome} (None: not pending).

    The fast path (measured in bench/bench_ingest.py): the whole batch in ONE transaction - one
    BEGIN/COMMIT, one locking SELECT and one outbound-log lookup for all its messages, and their
    status rows written in one round trip (_outcomes_save) - instead of six such queries per
    message; handlers share IntakeContext.batch to prefetch and bulk-write per batch. What each
    message makes still commits together with its status, so the once-only guarantees are those
    of message_process: nothing of a batch is visible (and nothing is post-processed) before the
    batch commits, and a crash loses the uncommitted batch whole (its messages stay RECEIVED and
    are retried).

    When a message's intake raises, the batch is rolled back, that message alone has the attempt
    recorded (FAILED or QUARANTINED, as in message_process; its handlers ran once) and the rest
    of the batch is run again. After MAX_BATCH_FAILURES such failures, or an error that is no
    message's (the locking SELECT, the UPDATE, a BatchFlushConflict), the rest go one by one through
    message_process.
    Keep batches modest (MAILBOX_INTAKE_BATCH): their row locks (the tenant's shipment counter,
    say) are held until the batch commits.

    prepared: message id -> the verdicts computed ahead by prepare.PreparePool's workers (or None:
    computed here); used only when they were computed from the very bytes stored.
    raws: message id -> the raw bytes the caller stored as that row (the reader's INSERT returned
    the id): then the locking SELECT does not read them back from the database.
    """
    ids = list(dict.fromkeys(message_ids))
    outcomes: dict[int, ProcessOutcome | None] = dict.fromkeys(ids)
    failures = retries = 0
    while len(ids) > 1 and failures < MAX_BATCH_FAILURES:
        current: list[int] = []  # the message being processed when something raises
        try:
            outcomes.update(_process_batch(ids, current, prepared, raws))
            return outcomes
        except Exception as exc:
            if is_transient(exc) and retries < MAX_BATCH_FAILURES:
                # A deadlock with a concurrent intake of the same tenant (two workers, two
                # mailboxes): the database chose this batch to roll back. No message's fault.
                retries += 1
                logger.warning("intake batch of %s messages rolled back (%s); running it again", len(ids), exc)
                continue
            if not current or isinstance(exc, BatchFlushConflict):
                logger.exception("intake batch of %s messages failed; running them one by one", len(ids))
                break
            pk = current[0]
            with log_context(inbound=pk):
                logger.exception("inbound message %s: intake failed (its batch is run again without it)", pk)
                outcomes[pk] = _record_failure(pk, exc)
            ids.remove(pk)
            failures += 1
    for pk in ids:
        outcomes[pk] = message_process(message_id=pk, prepared=prepared)
    return outcomes


MAX_BATCH_FAILURES = 3
# SQLSTATEs that say "try the transaction again": serialization_failure, deadlock_detected.
_TRANSIENT = frozenset({"40001", "40P01"})


def is_transient(exc: BaseException) -> bool:
    """True when the database rolled the transaction back for its own reasons (a deadlock, a
    serialization failure): running it again is the cure, not the message's fault."""
    seen: BaseException | None = exc
    for _ in range(4):  # Django's wrapper, then the driver's error
        if seen is None:
            return False
        if getattr(seen, "sqlstate", None) in _TRANSIENT:
            return True
        seen = seen.__cause__
    return False


def _process_batch(ids: list[int], current: list[int], prepared: Prepare | None = None,
                   raws: Mapping[int, bytes] | None = None) -> dict[int, ProcessOutcome | None]:
    known = raws is not None and all(pk in raws for pk in ids)
    with transaction.atomic():
        messages = _pending_locked(ids, without_raw=known)
        if known:
            assert raws is not None
            for message in messages:
                message.raw = raws[message.pk]
        _related_attach(messages)
        ours = _sent_by_us([m.message_id for m in messages if m.message_id])
        ready = _prepared_for(messages, prepared)
        batch: dict[str, Any] = {BATCH_MESSAGES: messages, BATCH_CLASSIFICATIONS: {
            pk: found.classification for pk, found in ready.items()}}
        for message in _in_intake_order(messages, ready):
            current[:] = [message.pk]
            with log_context(inbound=message.pk):
                _run_intake(message, ours=ours, save=False, batch=batch, prepared=ready.get(message.pk))
        current.clear()
        _batch_flush(batch)
        _outcomes_save(messages)
    return {message.pk: ProcessOutcome(message.status, message.category) for message in messages}


_CREATING = frozenset({"quote", "pickup"})


def _in_intake_order(messages: list[InboundMessage], ready: Mapping[int, Any]) -> list[InboundMessage]:
    """The batch's messages in the order their intake runs: those that may make a shipment (quote,
    pickup) after the others, each group in its own order. A batch's first new shipment locks the
    tenant's counter until the batch commits, and the other intake worker's batch then waits for
    it at its own first one: taken last, the lock is held for the batch's quotes and its flush,
    not for all of it. Shipment numbers come out the same (only those messages take them, in
    their order). In arrival order when a message's verdict is not known ahead or the batch holds
    a reply to one of its own messages (a reply must find the shipment its quote makes)."""
    if len(messages) < 2 or any(m.pk not in ready for m in messages):
        return messages
    own = {_bare_id(m.message_id) for m in messages if m.message_id}
    creating: list[InboundMessage] = []
    others: list[InboundMessage] = []
    for message in messages:
        verdict = ready[message.pk].classification
        refs = [getattr(verdict, "in_reply_to", None), *(getattr(verdict, "references", None) or ())]
        if any(ref and _bare_id(ref) in own for ref in refs):
            return messages
        (creating if str(getattr(verdict, "category", "")) in _CREATING else others).append(message)
    return others + creating


def _bare_id(value: str) -> str:
    return value.strip().strip("<>").strip().lower()


def _pending_locked(ids: Sequence[int], *, without_raw: bool) -> list[InboundMessage]:
    """The pending messages among these, locked (FOR UPDATE) in the order of their ids - one lock
    order for everyone: no deadlock between two batches. On PostgreSQL the ORM's query written
    once (tms.db.model_rows): nothing built or compiled a batch."""
    if transaction.get_connection().vendor != "postgresql":
        query = InboundMessage.unscoped.select_for_update().filter(pk__in=ids, status__in=PENDING).order_by("pk")
        return list(query.defer("raw") if without_raw else query)
    return model_rows(InboundMessage, "id = ANY(%s::bigint[]) AND status = ANY(%s::varchar[])",
                      [list(ids), [status.value for status in PENDING]], order_by="id", lock=True,
                      defer=("raw",) if without_raw else ())


def _sent_by_us(message_ids: Sequence[str]) -> frozenset[str]:
    """Those of these Message-IDs that the outbound log holds (any tenant's: mail this system sent
    that came back to one of its mailboxes). On PostgreSQL a statement of its own, one array
    parameter: what the ORM's query says, without its ~0.3 ms of building and compiling a batch."""
    if not message_ids:
        return frozenset()
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        return frozenset(OutboundMessage.unscoped.filter(message_id__in=message_ids)
                         .values_list("message_id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT message_id FROM {OutboundMessage._meta.db_table}"  # noqa: S608 (the model's name)
                       " WHERE message_id = ANY(%s::varchar[])", [list(message_ids)])
        return frozenset(str(row[0]) for row in cursor.fetchall())


def _prepared_for(messages: Sequence[InboundMessage], prepared: Prepare | None) -> dict[int, Prepared]:
    """The verdicts computed ahead for these messages, only those made from the bytes stored."""
    if prepared is None:
        return {}
    out: dict[int, Prepared] = {}
    for message in messages:
        found = prepared(message.pk)
        if found is not None and found.fits(message.raw):
            out[message.pk] = found
    return out


def _related_attach(messages: Sequence[InboundMessage]) -> None:
    """What select_related(*_RELATED) gave each message - its mailbox with the mailbox's staff, its
    tenant - read once for the batch (its messages are one mailbox's) instead of joined into every
    row of the locking SELECT and built again for each: one instance shared by the messages."""
    mailbox_ids = {m.mailbox_id for m in messages}
    if not mailbox_ids:
        return
    mailboxes = {mb.pk: mb for mb in Mailbox.unscoped.select_related("staff", "tenant").filter(pk__in=mailbox_ids)}
    tenants = {mb.tenant_id: mb.tenant for mb in mailboxes.values()}
    from tms.accounts.models import Tenant

    missing = {m.tenant_id for m in messages} - tenants.keys()
    if missing:  # a message filed under another tenant than its mailbox's (not made by reading.py)
        tenants.update((t.pk, t) for t in Tenant.objects.filter(pk__in=missing))
    for message in messages:
        message.mailbox = mailboxes[message.mailbox_id]
        message.tenant = tenants[message.tenant_id]


def _outcomes_save(messages: Sequence[InboundMessage]) -> None:
    """The outcome columns of a batch's messages, in one statement (tms.db.rows_update_unnest)."""
    rows_update_unnest(objects=messages, field_names=_OUTCOME_FIELDS)


def _batch_flush(batch: dict[str, Any]) -> None:
    for flush in batch.pop(BATCH_FLUSH, None) or ():
        flush()


def _run_intake(message: InboundMessage, *, ours: frozenset[str] | None = None, save: bool = True,
                batch: dict[str, Any] | None = None, prepared: Prepared | None = None) -> None:
    message.attempts += 1
    message.processed_at = timezone.now()
    message.error = ""
    if prepared is not None and not prepared.fits(message.raw):
        prepared = None  # computed from other bytes than those stored: not this message's verdict
    reason = noise_reason(message, ours=ours, detected=(prepared.noise,) if prepared is not None else None)
    if reason:
        message.status = InboundMessage.Status.IGNORED
        message.category = "other"
        message.reason = reason
        message.result = {"noise": reason}
    else:
        alone = batch is None
        context = IntakeContext(message=message, batch={BATCH_MESSAGES: [message]} if batch is None else batch)
        if prepared is not None:
            context.__dict__["classification"] = prepared.classification  # the cached_property's slot
            context.prepared = dict(prepared.extras)
        per_handler: dict[str, Any] = {}
        for path, handler in intake_handlers():
            result = handler(message, context)
            if result is None:
                continue
            context.results.append(result)
            per_handler[path] = _result_json(result)
        if alone:
            _batch_flush(context.batch)
        category = next((r.category for r in context.results if r.category), "") or "other"
        records = context.records
        ignored = any(r.ignored for r in context.results) and not any(records.values())
        message.status = InboundMessage.Status.IGNORED if ignored else InboundMessage.Status.PROCESSED
        message.category = category if category in CATEGORIES else "other"
        message.reason = next((r.reason for r in context.results if r.reason), "")[:2000]
        message.result = {"handlers": per_handler, "records": records}
    if save:
        message.save(update_fields=_OUTCOME_FIELDS)


def _result_json(result: IntakeResult) -> dict[str, Any]:
    """What dataclasses.asdict made of a handler's result (stored in InboundMessage.result), without
    its deep copy of every value (~0.1 ms a message)."""
    return {"category": result.category, "reason": result.reason, "records": dict(result.records),
            "data": jsonable(result.data), "ignored": result.ignored}


def _record_failure(message_id: int, exc: BaseException) -> ProcessOutcome | None:
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
    with transaction.atomic():
        message = InboundMessage.unscoped.select_for_update().filter(pk=message_id).first()
        if message is None:
            return None
        message.attempts += 1
        message.error = detail
        message.processed_at = timezone.now()
        if message.attempts >= settings.MAILBOX_MAX_ATTEMPTS:
            message.status = InboundMessage.Status.QUARANTINED
            logger.warning("inbound message %s quarantined after %s attempts", message_id, message.attempts)
        else:
            message.status = InboundMessage.Status.FAILED
        message.save(update_fields=["attempts", "error", "processed_at", "status"])
        return ProcessOutcome(message.status)


def inbound_message_retry(*, message: InboundMessage) -> InboundMessage:
    """Give a failed or quarantined message a fresh set of attempts at the next poll."""
    retryable = (InboundMessage.Status.FAILED, InboundMessage.Status.QUARANTINED)
    updated = InboundMessage.unscoped.filter(pk=message.pk, status__in=retryable).update(
        status=InboundMessage.Status.RECEIVED, attempts=0, error=""
    )
    if updated:
        from .tasks.poll import poll_mailbox

        mailbox_id = message.mailbox_id
        transaction.on_commit(lambda: poll_mailbox.delay(mailbox_id))
    message.refresh_from_db()
    return message


def inbound_messages_needing_attention(*, mailbox: Mailbox, limit: int = 200) -> list[InboundMessage]:
    """Quarantined, failed and too-large messages of the mailbox, newest first (the problem list)."""
    attention = (InboundMessage.Status.QUARANTINED, InboundMessage.Status.FAILED, InboundMessage.Status.TOO_LARGE)
    return list(
        InboundMessage.objects.for_tenant(mailbox.tenant).filter(mailbox=mailbox, status__in=attention)
        .defer("raw").order_by("-received_at", "-id")[:limit]
    )


# ----------------------------------------------------------------------------- post-processing


def uid_ranges(uids: Iterable[int]) -> str:
    """1,2,3,5,7,8 -> "1:3,5,7:8" (RFC 3501 sequence-set; short even for thousands of UIDs)."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = prev = None
    for uid in ordered:
        if start is None:
            start = prev = uid
        elif prev is not None and uid == prev + 1:
            prev = uid
        else:
            parts.append(str(start) if start == prev else f"{start}:{prev}")
            start = prev = uid
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(parts)


def uid_set_chunks(rows: Iterable[tuple[int, int]], max_bytes: int = ACTION_MAX_SET_BYTES
                   ) -> list[tuple[list[tuple[int, int]], str]]:
    """(pk, UID) rows as few UID sets as fit in `max_bytes` each: [(the rows, their uid_ranges)],
    in UID order."""
    chunks: list[tuple[list[tuple[int, int]], str]] = []
    chunk: list[tuple[int, int]] = []
    length = 0
    prev: int | None = None
    for row in sorted(rows, key=lambda r: r[1]):
        uid = row[1]
        if uid != prev and (prev is None or uid != prev + 1):
            # A new range: at most "start:end," once it grows, reckoned in full now.
            cost = 2 * (len(str(uid)) + 1)
            if chunk and length + cost > max_bytes:
                chunks.append((chunk, uid_ranges(u for _, u in chunk)))
                chunk, length = [], 0
            length += cost
        chunk.append(row)
        prev = uid
    if chunk:
        chunks.append((chunk, uid_ranges(u for _, u in chunk)))
    return chunks


class ArchiveFolders:
    """The archive folder of a session: the mailbox's own choice, else the special-use \\Archive
    folder (RFC 6154), else a folder named Archive, created (and subscribed) when missing."""

    def __init__(self) -> None:
        self._found: str | None = None

    def resolve(self, client: IMAPClient, mailbox: Mailbox) -> str:
        if self._found:
            return self._found
        name = mailbox.archive_folder.strip()
        if not name:
            found = client.find_special_folder(b"\\Archive")
            name = found if isinstance(found, str) else (found.decode() if found else "Archive")
        if not client.folder_exists(name):
            client.create_folder(name)
            try:
                client.subscribe_folder(name)
            except Exception:  # subscription is a nicety for the user's client
                logger.info("mailbox %s: could not subscribe to %s", mailbox.pk, name)
        self._found = name
        return name


def messages_post_process(
    *, client: IMAPClient, mailbox: Mailbox, folder: str, uidvalidity: int,
    message_ids: Iterable[int] | None = None, archive: ArchiveFolders | None = None,
) -> int:
    """Apply the mailbox's post-processing action to its processed messages that have not had it.

    `client` has `folder` selected read-write. Only PROCESSED and IGNORED messages are touched
    (never a FAILED, QUARANTINED or TOO_LARGE one), per batch of UID ranges, never one by one.
    Messages stored under another folder or UIDVALIDITY have no UID here any more: marked done.
    A UID that is gone from the server is ignored by the server: also done. Returns how many
    messages the action was applied to (0 for "nothing").
    """
    now = timezone.now()
    if message_ids is None:
        pending = InboundMessage.unscoped.filter(mailbox=mailbox, status__in=DONE, post_processed_at__isnull=True)
        pending.filter(~Q(folder=folder) | ~Q(uidvalidity=uidvalidity)).update(post_processed_at=now)
        rows = list(pending.filter(folder=folder, uidvalidity=uidvalidity).values_list("pk", "uid"))
    else:
        rows = _pending_by_pk(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, message_ids=message_ids,
                              now=now)
    if not rows:
        return 0
    action = mailbox.post_processing
    if action == Mailbox.PostProcessing.NOTHING:
        InboundMessage.unscoped.filter(pk__in=[pk for pk, _ in rows]).update(post_processed_at=now)
        return 0
    archive = archive or ArchiveFolders()
    applied = 0
    for chunk, uid_set in uid_set_chunks(rows):
        _apply(client, mailbox, action=action, uid_set=uid_set, folder=folder, archive=archive)
        InboundMessage.unscoped.filter(AnyOf("pk", [pk for pk, _ in chunk])).update(post_processed_at=timezone.now())
        applied += len(chunk)
    logger.info("mailbox %s: %s applied to %s messages", mailbox.pk, action, applied)
    return applied


def _pending_by_pk(*, mailbox: Mailbox, folder: str, uidvalidity: int, message_ids: Iterable[int],
                   now: datetime) -> list[tuple[int, int]]:
    """(pk, UID) of these messages that are waiting for the action in `folder`; those stored under
    another folder or UIDVALIDITY are marked done here. The rows are read by primary key alone and
    sorted out here: with the mailbox and status in the WHERE clause, PostgreSQL may walk the
    (mailbox, status) index through every processed message of the mailbox, filtering each by the
    id list, whenever its statistics are missing or stale (a new install's first import: 10 ms a
    batch of 200 at 5,000 messages, growing with the mailbox). The stale UPDATE runs only when
    there is a stale message, and keeps its own guard against a concurrent pass."""
    rows: list[tuple[int, int]] = []
    stale: list[int] = []
    found = InboundMessage.unscoped.filter(AnyOf("pk", message_ids)).values_list(
        "pk", "uid", "mailbox_id", "status", "post_processed_at", "folder", "uidvalidity")
    for pk, uid, mailbox_id, status, post_processed_at, its_folder, its_uidvalidity in found:
        if mailbox_id != mailbox.pk or status not in DONE or post_processed_at is not None:
            continue
        if its_folder == folder and its_uidvalidity == uidvalidity:
            rows.append((pk, uid))
        else:
            stale.append(pk)
    if stale:
        InboundMessage.unscoped.filter(pk__in=stale, post_processed_at__isnull=True).update(post_processed_at=now)
    return rows


def _apply(client: IMAPClient, mailbox: Mailbox, *, action: str, uid_set: str, folder: str,
           archive: ArchiveFolders) -> None:
    deleted = b"\\Deleted"
    if action == Mailbox.PostProcessing.MARK_READ:
        client.add_flags(uid_set, [b"\\Seen"], silent=True)
    elif action == Mailbox.PostProcessing.DELETE:
        client.add_flags(uid_set, [deleted], silent=True)
        # UID EXPUNGE (RFC 4315) removes exactly these; a plain EXPUNGE would also remove whatever
        # else the user flagged \Deleted, so without UIDPLUS the flag stays for the user's client.
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uid_set)
    elif action == Mailbox.PostProcessing.ARCHIVE:
        target = archive.resolve(client, mailbox)
        if target == folder:
            return
        if client.has_capability("MOVE"):
            client.move(uid_set, target)
        else:
            client.copy(uid_set, target)
            client.add_flags(uid_set, [deleted], silent=True)
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(uid_set)


__all__ = [
    "BATCH_CLASSIFICATIONS", "BATCH_FLUSH", "BATCH_MESSAGES",
    "ArchiveFolders", "Handler", "IntakeContext", "IntakeResult", "ProcessOutcome", "classify_handler",
    "inbound_message_retry", "inbound_messages_needing_attention", "intake_handlers", "message_process",
    "messages_post_process", "messages_process", "noise_reason", "uid_ranges",
]
