"""Reading a mailbox: find new mail by cursor, store each message once, hand it to intake.

One poll of one mailbox (mailbox_poll) is what the Celery task, `manage.py mailbox poll --once`
and the IDLE watcher all run:

1. take the mailbox's lock (locks.py); a second poller is refused, never queued behind;
2. log in (connections.imap_session, or a connection kept from the last poll: sessions.py),
   SELECT INBOX read-write (every poll: SELECT reports the current UIDNEXT);
3. find new UIDs by the folder's cursor (RFC 3501 2.3.1.1: UIDVALIDITY + last UID seen), or on
   the first poll by INTERNALDATE (UID SEARCH SINCE, the last MAILBOX_INITIAL_WINDOW_DAYS days);
   never by \\Seen, which belongs to the user;
4. per batch of UIDs: FETCH sizes and headers, skip what is stored (same UID, or same Message-ID:
   Outlook re-uploads under new UIDs, and a UIDVALIDITY change renumbers everything), store
   headers only for messages over MAILBOX_MAX_MESSAGE_BYTES (TOO_LARGE), FETCH BODY.PEEK[] of the
   rest in size-bounded groups (PEEK: reading does not mark mail read) and insert them with the
   unique constraints as the final judge;
5. run the intake on the new messages (intake.messages_process: one transaction per
   MAILBOX_INTAKE_BATCH messages, a failing message alone in its own), then, after those
   commits, the mailbox's post-processing action on their UIDs in ranges, MAILBOX_ACTION_BATCH
   messages at a time (or those that waited MAILBOX_ACTION_DELAY seconds) and the rest at the
   end of the pass;
6. repair: messages left RECEIVED/FAILED are retried, and processed ones whose action never ran
   (a crash between commit and action) get it now;
7. record the outcome on the mailbox row: last_read_at, next_poll_at, or the error with backoff;
   an AuthorizationError puts the mailbox in needs re-authorization, and polling stops for it.
"""

from __future__ import annotations

import hashlib
import imaplib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr, parsedate_to_datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from imapclient.exceptions import IMAPClientError

from tms.db import AnyOf, by_each_key, columns_insert, executemany_returning, statistics_refresh
from tms.logging import log_context

from . import locks, metrics
from .fetching import uid_fetch
from .intake import (
    DONE,
    PENDING,
    ArchiveFolders,
    ProcessOutcome,
    intake_grown_models,
    messages_post_process,
    messages_process,
)
from .models import FolderCursor, InboundMessage, Mailbox
from .prepare import PreparePool
from .providers import AuthorizationError, ProviderError
from .sessions import kept_drop, kept_imap_session

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from imapclient import IMAPClient

logger = logging.getLogger(__name__)

INBOX = "INBOX"
# Fetch batches stored ahead of the intake when workers classify (FolderReader.read).
AHEAD = 2
# A pass applies the post-processing action to a folder in about this many parts at most (or
# MAILBOX_ACTION_BATCH messages at a time when that is more; FolderReader.process_stored).
ACTION_FOLDER_PARTS = 10
# A pass refreshes the statistics of the tables its intake makes grow once it has stored this many
# new messages, then each time it has stored 4 times as many (FolderReader.read).
STATISTICS_FIRST = 1000
COUNTER_KEYS = ("fetched", "new", "duplicates", "quote", "pickup", "operations", "other", "failed",
                "quarantined", "post_processed")
# Explicit polls (the CLI with ids) may also retry a mailbox in error; the scheduler only polls active ones.
POLLABLE = (Mailbox.Status.ACTIVE, Mailbox.Status.ERROR)


@dataclass
class PollResult:
    """What one pass over one mailbox did. as_json() is the `mailbox poll --json` contract."""

    mailbox: int
    fetched: int = 0
    new: int = 0
    duplicates: int = 0
    quote: int = 0
    pickup: int = 0
    operations: int = 0
    other: int = 0
    failed: int = 0
    quarantined: int = 0
    post_processed: int = 0
    skipped: str = ""  # why the pass did not run: "locked", "gone", "not reading", "needs re-authorization"
    error: str = ""
    too_large: int = 0
    new_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def ran(self) -> bool:
        return not self.skipped and not self.error

    def count(self, outcome: ProcessOutcome | None) -> None:
        if outcome is None:
            return
        if outcome.status in (InboundMessage.Status.PROCESSED, InboundMessage.Status.IGNORED):
            key = outcome.category if outcome.category in ("quote", "pickup", "operations") else "other"
            setattr(self, key, getattr(self, key) + 1)
        elif outcome.status == InboundMessage.Status.FAILED:
            self.failed += 1
        elif outcome.status == InboundMessage.Status.QUARANTINED:
            self.quarantined += 1

    def as_json(self) -> dict[str, int]:
        data = asdict(self)
        return {"mailbox": self.mailbox, **{key: int(data[key]) for key in COUNTER_KEYS}}


# ----------------------------------------------------------------------------- selectors


def mailboxes_readable_ids() -> list[int]:
    """Every active read-enabled mailbox, all tenants (scheduler and CLI)."""
    return list(
        Mailbox.unscoped.filter(status=Mailbox.Status.ACTIVE, permission=Mailbox.Permission.SEND_AND_READ)
        .order_by("pk").values_list("pk", flat=True)
    )


def _due(now: datetime) -> Q:
    # Half an interval of slack: a poll sets next_poll_at = its start + interval, and beat fires
    # every interval, so without it every other beat would find the mailbox a moment early.
    horizon = now + timedelta(seconds=settings.MAILBOX_POLL_INTERVAL) / 2
    return Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=horizon)


def mailboxes_due_count(*, now: datetime | None = None) -> int:
    """How many active read-enabled mailboxes are due (the beat queues work for that many)."""
    return Mailbox.unscoped.filter(
        _due(now or timezone.now()), status=Mailbox.Status.ACTIVE, permission=Mailbox.Permission.SEND_AND_READ
    ).count()


def mailboxes_claim_due(
    *, now: datetime | None = None, limit: int | None = None, prefer: Iterable[int] = ()
) -> list[int]:
    """Active read-enabled mailboxes whose next_poll_at has come (at most `limit`, the ids in
    `prefer` first), each claimed: next_poll_at moved one interval ahead, so that no one else
    claims it before its next turn."""
    now = now or timezone.now()
    due = _due(now)
    # One locking SELECT (two with `prefer`) and one UPDATE for all of them. A concurrent claimer
    # skips the rows locked here and, once this commits, finds them no longer due: each is
    # claimed once.
    with transaction.atomic():
        candidates = (
            Mailbox.unscoped.select_for_update(skip_locked=True)
            .filter(status=Mailbox.Status.ACTIVE, permission=Mailbox.Permission.SEND_AND_READ)
            .filter(due)
            .order_by(F("next_poll_at").asc(nulls_first=True), "pk")
            .values_list("pk", flat=True)
        )
        preferred = sorted(set(prefer))
        claimed = list(candidates.filter(pk__in=preferred)[:limit]) if preferred else []
        if limit is None or len(claimed) < limit:
            rest = candidates.exclude(pk__in=claimed) if claimed else candidates
            claimed += list(rest[: None if limit is None else limit - len(claimed)])
        if claimed:
            Mailbox.unscoped.filter(due, pk__in=claimed).update(
                next_poll_at=now + timedelta(seconds=settings.MAILBOX_POLL_INTERVAL)
            )
    return claimed


# ----------------------------------------------------------------------------- the poll


def mailbox_poll(*, mailbox_id: int, explicit: bool = False) -> PollResult:
    """One full pass over one mailbox (see the module docstring). Never raises for the mailbox's
    own failures: they are recorded on its row and in result.error."""
    result = PollResult(mailbox=mailbox_id)
    mailbox = Mailbox.unscoped.select_related("tenant").filter(pk=mailbox_id).first()
    result.skipped = why_not_polled(mailbox, explicit=explicit)
    if mailbox is None or result.skipped:
        kept_drop(mailbox_id)  # a mailbox no longer polled keeps no connection here
        return result
    with log_context(tenant=mailbox.tenant.slug, mailbox=mailbox.pk):
        began = time.monotonic()
        _poll_locked(mailbox, result)
        metrics.poll_observed(result=result, seconds=time.monotonic() - began)
    return result


def _poll_locked(mailbox: Mailbox, result: PollResult) -> None:
    lock = locks.acquire(locks.mailbox_poll_key(mailbox.pk), ttl=settings.MAILBOX_POLL_LOCK_TTL)
    if lock is None:
        logger.info("mailbox %s: a poll is already running; this one is refused", mailbox.pk)
        result.skipped = "locked"
        return
    try:
        poll_guarded(mailbox=mailbox, result=result, lock=lock)
    finally:
        locks.release(lock)
    log_outcome(mailbox, result)


# What a pass did (poll_guarded's answer): read the folder, found nothing new (its success is the
# caller's to record, polling.py does it for many at once), or left it to a pass of its own.
POLLED, IDLE, HANDOFF = "polled", "idle", "handoff"
# Given the SELECT response, which of the three to do (polling.py); None: always POLLED.
Decide = Callable[[dict[bytes, Any]], str]


def poll_guarded(*, mailbox: Mailbox, result: PollResult, lock: locks.Lock, decide: Decide | None = None) -> str:
    """One pass over a mailbox whose lock the caller holds. Never raises for the mailbox's own
    failures: they are recorded on its row and in result.error (the answer is then "").
    A POLLED pass is recorded as a success here; IDLE and HANDOFF are left to the caller."""
    started = timezone.now()
    verdict = ""
    try:
        verdict = _poll(mailbox, result, lock, decide)
    except AuthorizationError as exc:
        result.error = str(exc)
        _record_error(mailbox, result.error)
        _needs_reauthorization(mailbox, result.error)
    except ProviderError as exc:
        result.error = f"{exc.stage}: {exc}"
        _record_error(mailbox, result.error, permanent=exc.permanent)
    except (IMAPClientError, imaplib.IMAP4.error, OSError) as exc:
        result.error = f"IMAP: {str(exc)[:500] or exc.__class__.__name__}"
        _record_error(mailbox, result.error)
    except Exception as exc:
        logger.exception("mailbox %s: poll failed", mailbox.pk)
        result.error = f"internal error: {exc.__class__.__name__}"
        _record_error(mailbox, result.error)
    else:
        if verdict == POLLED:
            _record_success(mailbox, started)
    return verdict


def log_outcome(mailbox: Mailbox, result: PollResult) -> None:
    if result.error:
        logger.warning("mailbox %s: poll failed: %s", mailbox.pk, result.error)
    else:
        logger.info("mailbox %s: polled %s", mailbox.pk, result.as_json())


def why_not_polled(mailbox: Mailbox | None, *, explicit: bool) -> str:
    """Why this mailbox is not polled ("" when it is)."""
    if mailbox is None:
        return "gone"
    if not mailbox.reads:
        return "not reading"
    if mailbox.status == Mailbox.Status.NEEDS_REAUTHORIZATION:
        return "needs re-authorization"
    if mailbox.status not in (POLLABLE if explicit else (Mailbox.Status.ACTIVE,)):
        return f"status {mailbox.status}"
    return ""


class _StaleConnection(Exception):
    """SELECT failed on a connection kept from an earlier poll: retried once on a new one."""


def _poll(mailbox: Mailbox, result: PollResult, lock: locks.Lock, decide: Decide | None = None) -> str:
    try:
        return _poll_on(mailbox, result, lock, decide)
    except _StaleConnection as exc:
        # The kept connection is closed by now (sessions.kept_imap_session); the server may have
        # renumbered or recreated the folder under it. A new login sees the folder as it is.
        logger.info("mailbox %s: kept connection failed at SELECT (%s); logging in again", mailbox.pk, exc)
        return _poll_on(mailbox, result, lock, decide)


def _poll_on(mailbox: Mailbox, result: PollResult, lock: locks.Lock, decide: Decide | None) -> str:
    # A connection kept from the last poll (sessions.py: same process, same settings) or a new
    # one; any exception in here closes it. SELECT is sent every poll, so new mail is seen, and
    # on a kept connection it is also the health check (no NOOP first).
    with kept_imap_session(mailbox) as (client, reused):
        client.normalise_times = False  # aware datetimes for INTERNALDATE
        if not reused and client.has_capability("CONDSTORE"):
            try:
                client.enable("CONDSTORE")  # SELECT then reports HIGHESTMODSEQ (RFC 7162)
            except (IMAPClientError, imaplib.IMAP4.error):
                logger.info("mailbox %s: ENABLE CONDSTORE refused", mailbox.pk)
        try:
            info = client.select_folder(INBOX)
        except (IMAPClientError, imaplib.IMAP4.error, OSError) as exc:
            if reused:
                raise _StaleConnection(str(exc)[:200] or exc.__class__.__name__) from exc
            raise
        verdict = decide(info) if decide is not None else POLLED
        if verdict == POLLED:
            FolderReader(client, mailbox, INBOX, result, lock).run(info)
        return verdict


class FolderReader:
    def __init__(self, client: IMAPClient, mailbox: Mailbox, folder: str, result: PollResult,
                 lock: locks.Lock) -> None:
        self.client = client
        self.mailbox = mailbox
        self.folder = folder
        self.result = result
        self.lock = lock
        self.archive = ArchiveFolders()
        self.uidvalidity = 0
        self.attempted: set[int] = set()  # one attempt per message per pass
        self.pool: PreparePool | None = None  # classifies new messages on the other cores (prepare.py)
        self.in_flight: dict[str, int] = {}  # Message-ID -> id of a message handed to the workers, not yet done
        # Processed messages whose post-processing action waits to run with the next ones (see
        # process_stored), and when the first of them started waiting (time.monotonic()).
        self.unacted: list[int] = []
        self.unacted_since = 0.0
        self.exists = 0  # messages in the folder when the pass began (SELECT's EXISTS)
        self.analysed_at = 0  # new messages stored when the pass last refreshed the statistics

    def run(self, info: dict[bytes, Any] | None = None) -> None:
        """One pass over the folder; `info` is the SELECT response when the caller sent it."""
        if info is None:
            info = self.client.select_folder(self.folder)
        self.uidvalidity = int(info[b"UIDVALIDITY"])
        self.exists = int(info.get(b"EXISTS") or 0)
        uidnext = int(info[b"UIDNEXT"]) if b"UIDNEXT" in info else None
        modseq = int(info[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in info else None
        cursor = FolderCursor.objects.filter(mailbox=self.mailbox, folder=self.folder).first()
        resync = cursor is not None and cursor.uidvalidity != self.uidvalidity
        if not resync:
            # Leftovers of earlier passes first: their UIDs are still valid in this UIDVALIDITY.
            self.repair()
        if cursor is None or resync:
            if resync:
                assert cursor is not None
                logger.warning("mailbox %s: %s UIDVALIDITY changed %s -> %s; resynchronising by Message-ID",
                               self.mailbox.pk, self.folder, cursor.uidvalidity, self.uidvalidity)
            # First poll (or a renumbered folder): the recent window, by INTERNALDATE. Known
            # Message-IDs are re-pointed at their new UIDs, not stored again.
            since = (timezone.now() - timedelta(days=settings.MAILBOX_INITIAL_WINDOW_DAYS)).date()
            uids = sorted(int(u) for u in self.client.search(["SINCE", since]))
            floor = 0
        else:
            assert cursor is not None
            floor = cursor.last_uid
            if uidnext is not None and uidnext <= floor + 1:
                uids = []  # nothing arrived since: no SEARCH needed
            else:
                # "n:*" always matches the highest UID, even when it is below n: filter.
                uids = sorted(u for u in (int(x) for x in self.client.search(["UID", f"{floor + 1}:*"])) if u > floor)
        last_uid = self.read(uids, last_uid=floor, modseq=modseq)
        if cursor is None or resync:
            # Older mail outside the window is not ours to import: start after everything there is.
            last_uid = max(last_uid, (uidnext - 1) if uidnext else self._highest_uid())
        # Nothing new (the common case: bench/bench_idle.py): the cursor is as it was and the
        # repair at the start already ran against the same state, so neither is done again.
        if cursor is None or resync or uids or modseq != cursor.highestmodseq:
            self._save_cursor(last_uid, modseq)
        if cursor is None or resync or uids:
            self.repair()

    def read(self, uids: list[int], *, last_uid: int, modseq: int | None) -> int:
        """Store and process the new UIDs batch by batch, the cursor moved after each; returns the
        last UID processed."""
        self.pool = PreparePool.for_pass(new=len(uids), tenant=self.mailbox.tenant)
        try:
            # With workers (prepare.py), batches are stored and handed to them AHEAD batches ahead:
            # they classify while this process writes the intake of the batches before (and, at
            # the start, while they load the classifier's data, this process stores).
            ahead: list[tuple[list[int], list[int]]] = []
            batches = list(_chunks(uids, settings.MAILBOX_FETCH_BATCH))
            for index, batch in enumerate(batches):
                # The first and the last fetch batch go to the workers in one intake batch per
                # worker: they all start on the first fetch instead of one waiting for the next,
                # and finish together instead of one working through the last batch alone.
                ahead.append((batch, self.store(batch, split=index in (0, len(batches) - 1))))
                if len(ahead) > (AHEAD if self.pool is not None else 0):
                    last_uid = self._finish(*ahead.pop(0), last_uid=last_uid, modseq=modseq)
                self._statistics()
            while ahead:
                if len(ahead) == 1 and self.pool is not None and self.pool.intake:
                    # All but the last batch are done: their action runs while the workers finish
                    # that one, instead of after it with the workers idle (the pass's last 0.1 s
                    # at 2,000 messages).
                    self.act()
                last_uid = self._finish(*ahead.pop(0), last_uid=last_uid, modseq=modseq)
            self.act()
        finally:
            if self.pool is not None:
                self.pool.close()
                self.pool = None
        return last_uid

    def _statistics(self) -> None:
        """A big pass (a first import, a backlog) refreshes the statistics of the tables its intake
        makes grow at 1,000 new messages, 4,000, 16,000...: until autovacuum gets to them (a minute
        or more) PostgreSQL takes a new tenant for a handful of rows and answers a lookup that starts
        with the tenant by reading all of them, every batch (bench/README.md, ingest)."""
        if self.result.new < max(STATISTICS_FIRST, 4 * self.analysed_at):
            return
        self.analysed_at = self.result.new
        statistics_refresh(*intake_grown_models())

    # -- cursor ---------------------------------------------------------------------------------

    def _highest_uid(self) -> int:
        found = self.client.search(["UID", "*"])
        return max((int(u) for u in found), default=0)

    def _save_cursor(self, last_uid: int, modseq: int | None) -> None:
        values = {"uidvalidity": self.uidvalidity, "last_uid": last_uid, "highestmodseq": modseq}
        # Once a batch: one UPDATE of the cursor the first poll made (updated_at set as auto_now
        # would); update_or_create's transaction, locking SELECT and save only when there is none.
        cursors = FolderCursor.objects.filter(mailbox=self.mailbox, folder=self.folder)
        if not cursors.update(**values, updated_at=timezone.now()):
            FolderCursor.objects.update_or_create(mailbox=self.mailbox, folder=self.folder, defaults=values)

    # -- repair ---------------------------------------------------------------------------------

    def repair(self) -> None:
        """Retry messages left RECEIVED/FAILED, then apply the action to processed messages that
        missed it (the pass before crashed between commit and action)."""
        if not unfinished_query(self.mailbox).exists():
            return  # one query instead of three when there is nothing to repair (the usual case)
        leftovers = list(
            InboundMessage.unscoped.filter(mailbox=self.mailbox, status__in=PENDING)
            .order_by("pk").values_list("pk", flat=True)
        )
        self.process([pk for pk in leftovers if pk not in self.attempted])
        self.result.post_processed += messages_post_process(
            client=self.client, mailbox=self.mailbox, folder=self.folder, uidvalidity=self.uidvalidity,
            archive=self.archive,
        )

    # -- one batch ------------------------------------------------------------------------------

    def _finish(self, uids: list[int], new_ids: list[int], *, last_uid: int, modseq: int | None) -> int:
        """Process a stored batch, then move the cursor past it; returns the new last UID."""
        self.process_stored(new_ids)
        last_uid = max(last_uid, uids[-1])
        self._save_cursor(last_uid, modseq)
        locks.extend(self.lock, ttl=settings.MAILBOX_POLL_LOCK_TTL)
        return last_uid

    def process_stored(self, new_ids: list[int]) -> None:
        self.process(new_ids)
        if self.pool is not None:
            self.pool.forget(new_ids)
        # The intake transactions above have committed: now, and only now, may the server be touched.
        # The action runs for MAILBOX_ACTION_BATCH messages at a time, or a tenth of the folder when
        # that is more (or those that waited MAILBOX_ACTION_DELAY seconds), not for each fetch
        # batch: every MOVE or EXPUNGE costs the IMAP server work in proportion to the folder's
        # size (Dovecot re-reads the folder and rewrites its index: 170 ms of its CPU a command at
        # 100,000 messages), so a big import into a big mailbox paid that a few hundred times, and
        # at a fixed batch still paid more a message the bigger the folder.
        # A pass that stops before acting leaves them to the next pass's repair.
        if new_ids and not self.unacted:
            self.unacted_since = time.monotonic()
        self.unacted.extend(new_ids)
        if (len(self.unacted) >= max(settings.MAILBOX_ACTION_BATCH, self.exists // ACTION_FOLDER_PARTS)
                or time.monotonic() - self.unacted_since >= settings.MAILBOX_ACTION_DELAY):
            self.act()

    def act(self) -> None:
        """Apply the post-processing action to the messages processed so far in this pass."""
        if not self.unacted:
            return
        ids, self.unacted = self.unacted, []
        self.result.post_processed += messages_post_process(
            client=self.client, mailbox=self.mailbox, folder=self.folder, uidvalidity=self.uidvalidity,
            message_ids=ids, archive=self.archive,
        )

    def process(self, ids: list[int]) -> None:
        """The intake, MAILBOX_INTAKE_BATCH messages per transaction (intake.messages_process:
        a failing message falls back to a transaction of its own, so it costs no one else).
        Batches the pool's workers ran (intake mode, prepare.py) are only counted here; what they
        did not run is run here."""
        self.attempted.update(ids)
        if self.pool is not None and self.pool.intake:
            done = self.pool.outcomes(ids)
            finished = set(ids)
            self.in_flight = {ref: pk for ref, pk in self.in_flight.items() if pk not in finished}
            for outcome in done.values():
                self.result.count(outcome)
            ids = [pk for pk in ids if pk not in done]
        for chunk in _chunks(ids, settings.MAILBOX_INTAKE_BATCH):
            prepared = self.pool.get if self.pool is not None else None
            for outcome in messages_process(message_ids=chunk, prepared=prepared).values():
                self.result.count(outcome)

    def store(self, uids: list[int], *, split: bool = False) -> list[int]:
        """Store the batch's messages that are not stored yet; returns the new rows' ids (RECEIVED).
        `split`: hand them to the workers in one intake batch per worker (read)."""
        heads = uid_fetch(self.client, uids, ["RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[HEADER]"])
        self.result.fetched += len(heads)
        metas = {uid: _Meta.from_fetch(uid, data) for uid, data in heads.items()}
        # .order_by(): a set and a dict are made of them, the model's default ordering (received_at)
        # would only make PostgreSQL sort. The batch's UIDs and Message-IDs as one array parameter
        # each (AnyOf), not an IN list of 200 placeholders that Django resolves and psycopg parses
        # value by value, every batch.
        stored_uids = set(
            stored_uids_query(self.mailbox, self.folder, self.uidvalidity, list(metas))
        ) if metas else set()
        message_ids = [m.message_id for m in metas.values() if m.message_id]
        known = {
            mid: (pk, folder, uidvalidity)
            for mid, pk, folder, uidvalidity in self._known(message_ids)
        } if message_ids else {}
        wanted: list[_Meta] = []
        too_large: list[_Meta] = []
        for uid in sorted(metas):
            meta = metas[uid]
            if uid in stored_uids:
                self.result.duplicates += 1
                continue
            if meta.message_id and meta.message_id in known:
                self.result.duplicates += 1
                pk, folder, uidvalidity = known.pop(meta.message_id)
                if (folder, uidvalidity) != (self.folder, self.uidvalidity) and folder == self.folder:
                    # The folder was renumbered (UIDVALIDITY changed): the stored message now
                    # lives at this UID, which is where a pending post-processing action must go.
                    InboundMessage.unscoped.filter(pk=pk).update(uidvalidity=self.uidvalidity, uid=uid)
                continue
            if meta.size > settings.MAILBOX_MAX_MESSAGE_BYTES:
                too_large.append(meta)
            else:
                wanted.append(meta)
        new_ids: list[int] = []
        if too_large:
            self._insert([self._row(meta, None) for meta in too_large])
            self.result.too_large += len(too_large)
            logger.info("mailbox %s: %s messages over the size limit stored as headers only",
                        self.mailbox.pk, len(too_large))
        for group in _size_groups(wanted, settings.MAILBOX_FETCH_BATCH_BYTES):
            bodies = uid_fetch(self.client, [m.uid for m in group], ["BODY.PEEK[]"])
            present = [m for m in group if m.uid in bodies and bodies[m.uid].get(b"BODY[]") is not None]
            rows = [self._row(m, bytes(bodies[m.uid][b"BODY[]"])) for m in present]
            del bodies
            new_ids += self._insert(rows, split=split)
        return new_ids

    def _known(self, message_ids: list[str]) -> list[tuple[str, int, str, int]]:
        """(Message-ID, pk, folder, UIDVALIDITY) of this mailbox's stored messages with these
        Message-IDs. On PostgreSQL one index lookup a Message-ID (tms.db.by_each_key says why)."""
        if connection.vendor != "postgresql":
            return list(InboundMessage.unscoped.filter(AnyOf("message_id", message_ids), mailbox=self.mailbox)
                        .order_by().values_list("message_id", "pk", "folder", "uidvalidity"))
        source = by_each_key(InboundMessage, ("varchar", "message_id = each_key.value AND mailbox_id + 0 = %s"))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT message_id, id, folder, uidvalidity FROM {source}",  # noqa: S608
                           [message_ids, self.mailbox.pk])
            return cursor.fetchall()

    def _row(self, meta: _Meta, raw: bytes | None) -> _NewRow:
        if raw is None:
            status = InboundMessage.Status.TOO_LARGE
            message_id = meta.message_id or _synthesised(meta.header_bytes + str(meta.size).encode())
        else:
            status = InboundMessage.Status.RECEIVED
            message_id = meta.message_id or _synthesised(raw)
        return _NewRow(
            uid=meta.uid, message_id=message_id, raw=raw, size=meta.size or (len(raw) if raw else 0),
            headers=meta.headers, subject=meta.subject, from_address=meta.from_address,
            sent_date=meta.sent_date, internal_date=meta.internal_date, status=status,
            error="over the size limit: headers only" if raw is None else "",
        )

    def _insert(self, rows: list[_NewRow], *, split: bool = False) -> list[int]:
        """INSERT ... ON CONFLICT DO NOTHING: the unique constraints decide what is new."""
        if not rows:
            return []
        with transaction.atomic():
            inserted = sorted(_insert_new(rows, tenant_id=self.mailbox.tenant_id, mailbox_id=self.mailbox.pk,
                                          folder=self.folder, uidvalidity=self.uidvalidity),
                              key=lambda row: row[1])
        self.result.new += len(inserted)
        self.result.duplicates += len(rows) - len(inserted)
        new_ids = [pk for pk, _, status in inserted if status == InboundMessage.Status.RECEIVED]
        self.result.new_ids += new_ids
        if self.pool is not None and new_ids:
            # Classified (intake mode: processed) on the other cores while this process fetches,
            # stores and post-processes the batches before and after.
            raw = {row.uid: row.raw for row in rows if row.raw is not None}
            items = [(pk, raw[uid]) for pk, uid, status in inserted
                     if status == InboundMessage.Status.RECEIVED and uid in raw]
            if self.pool.intake:
                by_uid = {row.uid: row for row in rows}
                stored_rows = {pk: by_uid[uid] for pk, uid, _ in inserted}
                size = settings.MAILBOX_INTAKE_BATCH
                if split:
                    size = max(1, min(size, -(-len(items) // self.pool.processes)))
                for start in range(0, len(items), size):
                    self._submit_intake(items[start:start + size], stored_rows)
            else:
                self.pool.submit(items)
        return new_ids

    def _submit_intake(self, items: list[tuple[int, bytes]], rows: dict[int, _NewRow]) -> None:
        """Hand one intake batch to a worker, once the batches in flight that hold a message it
        replies to have committed: a reply then finds the shipment its thread made, as it does
        when one process runs the batches in order (two workers run batches side by side)."""
        assert self.pool is not None
        refs: set[str] = set()
        for pk, _ in items:
            refs.update(thread_refs(rows[pk].headers))
        earlier = [self.in_flight[ref] for ref in refs if ref in self.in_flight]
        if earlier:
            self.pool.wait_for(earlier)
        if self.pool.submit_intake(items):
            for pk, _ in items:
                if rows[pk].message_id:
                    self.in_flight[rows[pk].message_id] = pk


@dataclass(slots=True)
class _NewRow:
    """One message to store: its columns that are not the same for the whole fetch batch."""

    uid: int
    message_id: str
    raw: bytes | None
    size: int
    headers: str
    subject: str
    from_address: str
    sent_date: datetime | None
    internal_date: datetime | None
    status: str
    error: str


# The columns _insert_new writes a batch: the same for every row, one value a row, and left to the
# field's default (attempts 0, "" for the texts, NULL for the times, result {}).
_BATCH_COLUMNS = ("tenant", "mailbox", "folder", "uidvalidity")
_ROW_COLUMNS = ("uid", "message_id", "raw", "size", "headers", "subject", "from_address", "sent_date",
                "internal_date", "status", "error")
_DEFAULT_COLUMNS = ("attempts", "category", "reason", "result", "post_processed_at", "processed_at")


def _insert_new(rows: list[_NewRow], *, tenant_id: int, mailbox_id: int, folder: str,
                uidvalidity: int) -> list[tuple[int, int, str]]:
    """`INSERT ... SELECT * FROM unnest(%b::type[], ...) ON CONFLICT DO NOTHING RETURNING id, uid,
    status`: the whole fetch batch in ONE statement (tms.db.columns_insert), one array a column,
    bound as binary (the raw bytes as bytea, no escaping): (pk, uid, status) of the rows that were
    new; a row that hits
    either unique constraint (the UID or the Message-ID), also against a row earlier in the same
    batch, is left out. Hand-built because bulk_create's compiler cost about 0.1 ms a row in the
    polling process. Against one pipelined INSERT a row (tms.db.executemany_returning, still the
    way on SQLite), measured on 3,000 messages in batches of 200: psycopg ~0.20 -> ~0.155 ms and
    PostgreSQL (exec + plan) ~0.17 -> ~0.08 ms a message.

    The arrays are made from the rows' values, with neither model instances nor a get_db_prep_save
    a value (~0.55 ms a message in the polling process, ~40% of its CPU): on PostgreSQL those
    values are what the fields give the driver (tests/mailboxes/test_read_poll.py compares a row
    stored so with one the ORM stored, column by column); elsewhere each value still goes through
    its field."""
    count = len(rows)
    model_fields = _insert_fields()
    defaults = {name: model_fields[name].get_default() for name in _DEFAULT_COLUMNS}
    values: dict[str, list[Any]] = {
        # As the ORM makes an instance (public_id's default) and saves it (received_at's auto_now_add):
        # a value of each a row.
        "public_id": [uuid.uuid4() for _ in range(count)],
        "received_at": [timezone.now() for _ in range(count)],
        **{name: [value] * count for name, value in zip(_BATCH_COLUMNS, (tenant_id, mailbox_id, folder, uidvalidity),
                                                        strict=True)},
        **{name: [getattr(row, name) for row in rows] for name in _ROW_COLUMNS},
    }
    if connection.vendor == "postgresql":
        # What get_db_prep_save gives on PostgreSQL: the value itself for the UUID, the integers,
        # the texts and the (aware) datetimes; the driver's Binary for bytes and a Jsonb for JSON.
        binary = connection.Database.Binary  # type: ignore[attr-defined]
        values["raw"] = [None if raw is None else binary(raw) for raw in values["raw"]]
        for name, value in defaults.items():
            values[name] = [model_fields[name].get_db_prep_save(value, connection)] * count
    else:
        values.update({name: [value] * count for name, value in defaults.items()})
        values = {name: [model_fields[name].get_db_prep_save(v, connection) for v in column]
                  for name, column in values.items()}
    columns = [values[name] for name in model_fields]
    if connection.vendor != "postgresql":
        found = executemany_returning(_insert_sql(), list(zip(*columns, strict=True)))
    else:
        found = columns_insert(InboundMessage, field_names=list(model_fields), columns=columns,
                               ignore_conflicts=True, returning=("id", "uid", "status"))
    return [(int(pk), int(uid), str(status)) for pk, uid, status in found]


@lru_cache(maxsize=1)
def _insert_fields() -> dict[str, Any]:
    """InboundMessage's columns but the primary key, by field name, in the model's order; a field
    _insert_new does not know of fails here, before any row is written without it."""
    fields = {f.name: f for f in InboundMessage._meta.concrete_fields if not f.primary_key}
    known = {"public_id", "received_at", *_BATCH_COLUMNS, *_ROW_COLUMNS, *_DEFAULT_COLUMNS}
    if set(fields) != known:
        raise RuntimeError(f"InboundMessage's columns changed: {sorted(set(fields) ^ known)}; see _insert_new")
    return fields


@lru_cache(maxsize=1)
def _insert_sql() -> str:
    """Elsewhere than PostgreSQL (the demo's SQLite): one row's INSERT, run once a row."""
    meta = InboundMessage._meta
    fields = list(_insert_fields().values())
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(f.column)) for f in fields)
    by_name = {f.name: f for f in meta.concrete_fields}
    returned = ", ".join(quote(str(by_name[name].column)) for name in ("id", "uid", "status"))
    return (f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608
            f" ON CONFLICT DO NOTHING RETURNING {returned}")


# ----------------------------------------------------------------------------- message metadata


@dataclass
class _Meta:
    uid: int
    size: int
    internal_date: datetime | None
    header_bytes: bytes
    headers: str
    message_id: str
    subject: str
    from_address: str
    sent_date: datetime | None

    @classmethod
    def from_fetch(cls, uid: int, data: dict[bytes, Any]) -> _Meta:
        header_bytes = bytes(data.get(b"BODY[HEADER]") or b"")
        message_id, subject, from_address, sent_date = header_fields(header_bytes)
        internal = data.get(b"INTERNALDATE")
        if isinstance(internal, datetime) and internal.tzinfo is None:
            internal = internal.replace(tzinfo=UTC)
        return cls(
            uid=uid,
            size=int(data.get(b"RFC822.SIZE") or 0),
            internal_date=internal if isinstance(internal, datetime) else None,
            header_bytes=header_bytes,
            headers=_clean(header_bytes.decode("utf-8", errors="replace")),
            message_id=message_id, subject=subject, from_address=from_address, sent_date=sent_date,
        )


HeaderFields = tuple[str, str, str, datetime | None]  # Message-ID, Subject, From address, Date


def header_fields(header_bytes: bytes) -> HeaderFields:
    """The normalised Message-ID, the decoded Subject, the From address and the Date of a header
    block: what header_fields_parsed gives (email's parser, compat32), the common shapes without
    it. The parser, parseaddr and parsedate cost ~0.14 ms a message in the polling process, most
    of it for headers a few regular expressions read as well (tests/mailboxes/test_read_poll.py
    holds the two to the same answers, the corpus and malformed headers)."""
    found = _simple_headers(header_bytes)
    if found is None:
        return header_fields_parsed(header_bytes)
    subject, sender, date = found.get("subject", ""), found.get("from", ""), found.get("date", "")
    return (
        normalise_message_id(found.get("message-id", "")),
        (subject if "=?" not in subject else _clean(_decoded(subject)))[:2000],
        _address(sender),
        _simple_date(date),
    )


def header_fields_parsed(header_bytes: bytes) -> HeaderFields:
    """header_fields with email's own parser, for any header block."""
    parsed = BytesHeaderParser(policy=compat32).parsebytes(header_bytes)
    return (
        normalise_message_id(_header(parsed, "Message-ID")),
        _clean(_decoded(_header(parsed, "Subject")))[:2000],
        _clean(parseaddr(_decoded(_header(parsed, "From")))[1].strip().lower())[:998],
        _date(_header(parsed, "Date")),
    )


# A header block the parser reads line by line with nothing to repair: printable ASCII and tabs,
# lines ending in CRLF or LF (a bare CR also ends a line for it), each line a field name and a
# colon or a continuation (a space or tab first) of the field before; then the end, or the blank
# line and whatever follows it (the parser's body, never its headers). Anything else - 8-bit
# bytes, NUL, a first line folded, an mbox "From " line, a line that is neither, which ends the
# headers early for the parser - is left to the parser.
_FIELD = r"[\x21-\x39\x3b-\x7e]+:[\t\x20-\x7e]*(?:\r?\n[ \t][\t\x20-\x7e]*)*"
_SIMPLE_BLOCK = re.compile(rf"((?:{_FIELD}\r?\n)*)(?:{_FIELD}|\r?\n[\s\S]*)?")
# The four fields read, as compat32 gives a value: blanks after the colon dropped, folds kept,
# the last line ending dropped.
_WANTED = re.compile(r"^(message-id|subject|from|date):[ \t]*([\t\x20-\x7e]*(?:\r?\n[ \t][\t\x20-\x7e]*)*)",
                     re.IGNORECASE | re.MULTILINE)


def _simple_headers(header_bytes: bytes) -> dict[str, str] | None:
    """The first value of Message-ID, Subject, From and Date by lower-case name, None when the
    block is not one the parser reads as it stands (see _SIMPLE_BLOCK)."""
    if not header_bytes.isascii():
        return None
    text = header_bytes.decode("ascii")
    block = _SIMPLE_BLOCK.fullmatch(text)
    if block is None:
        return None
    found: dict[str, str] = {}
    # The last field of a block without a blank line is not in group 1: read to the end then.
    end = block.end(1) if block.end(1) < len(text) and text[block.end(1)] in "\r\n" else len(text)
    for match in _WANTED.finditer(text, 0, end):
        found.setdefault(match.group(1).lower(), match.group(2))
    return found


# The From shapes parseaddr reads to the same address: a bare addr-spec, or one in angle brackets
# after an optional display name of plain words or a quoted string without escapes. Dots only
# between a name's atoms; no comments, no folding, no encoded-words (those are decoded first and
# could decode into an address: left to _decoded and parseaddr).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_ADDR_SPEC = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_PHRASE_WORD = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_SIMPLE_FROM = re.compile(
    rf'[ \t]*(?:(?:{_PHRASE_WORD}(?:[ \t]+{_PHRASE_WORD})*|"[^"\\\r\n]*")?[ \t]*<({_ADDR_SPEC})>|({_ADDR_SPEC}))[ \t]*')


def _address(value: str) -> str:
    simple = _SIMPLE_FROM.fullmatch(value) if "=?" not in value else None
    if simple is None:
        return _clean(parseaddr(_decoded(value))[1].strip().lower())[:998]
    return (simple.group(1) or simple.group(2)).lower()[:998]


_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
# RFC 5322's own shape, the one nearly every client writes: "Tue, 15 Dec 2026 08:00:00 -0500",
# an optional trailing comment ("(UTC)") being ignored by parsedate as well.
_SIMPLE_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" ([1-9]\d{3}) (\d\d):(\d\d)(?::(\d\d))? ([+-])(\d\d)(\d\d)(?: \([A-Za-z0-9 +:.-]*\))?")


def _simple_date(value: str) -> datetime | None:
    simple = _SIMPLE_DATE.fullmatch(value)
    if simple is None:
        return _date(value)
    day, month, year, hour, minute, second, sign, tz_hours, tz_minutes = simple.groups()
    offset = int(tz_hours) * 3600 + int(tz_minutes) * 60
    try:
        if offset == 0 and sign == "-":  # "-0000": UTC, the sender's zone unknown (RFC 5322 3.3)
            return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second or 0),
                            tzinfo=UTC)
        return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second or 0),
                        tzinfo=timezone_offset(-offset if sign == "-" else offset))
    except ValueError:  # 31 Feb, 25:00, an offset of a day or more: as parsedate_to_datetime, via _date
        return _date(value)


@lru_cache(maxsize=64)
def timezone_offset(seconds: int) -> dt_timezone:
    return dt_timezone(timedelta(seconds=seconds))


def _header(parsed: Any, name: str) -> str:
    value = parsed.get(name)
    return str(value) if value is not None else ""


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # malformed encoded-words: keep what is there
        return value


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        # OverflowError: a year like 202666666 (found by tests/reliability's fuzzing); uncaught, it
        # failed the whole batch on every poll, so one message blocked the mailbox.
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _clean(text: str) -> str:
    return text.replace("\x00", "")  # PostgreSQL text cannot hold NUL


_MSGID = re.compile(r"<[^<>\s]+>")


def normalise_message_id(value: str | None) -> str:
    """'<abc@host>' whatever the folding and comments around it; '' when there is none."""
    if not value:
        return ""
    value = "".join(_clean(value).split())
    match = _MSGID.search(value)
    if match:
        return match.group(0)[:998]
    bare = value.strip("<>")
    return f"<{bare}>"[:998] if bare else ""


_THREAD_HEADERS = re.compile(r"(?im)^(?:in-reply-to|references)[ \t]*:((?:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*))")


def thread_refs(headers: str) -> set[str]:
    """The Message-IDs a message's In-Reply-To and References headers name (normalised)."""
    found: set[str] = set()
    for match in _THREAD_HEADERS.finditer(headers):
        for ref in _MSGID.findall("".join(match.group(1).split())):
            found.add(normalise_message_id(ref))
    return found


def _synthesised(raw: bytes) -> str:
    return f"<{hashlib.sha256(raw).hexdigest()}@synthesised>"


def unfinished_query(mailbox: Mailbox) -> QuerySet[InboundMessage]:
    """The mailbox's messages a pass must finish: intake pending (RECEIVED, FAILED) or processed
    and waiting for the post-processing action. Read by the status index and the partial index of
    those waiting for the action, never through the mailbox's processed messages (a busy mailbox
    has millions; models.InboundMessage)."""
    return InboundMessage.unscoped.filter(
        Q(status__in=PENDING) | Q(status__in=DONE, post_processed_at__isnull=True), mailbox=mailbox)


def stored_uids_query(mailbox: Mailbox, folder: str, uidvalidity: int, uids: list[int]) -> QuerySet[Any, int]:
    """Which of these UIDs of the folder are stored already (uids not empty), by inbound_unique_uid,
    bounded by the UIDs' range. No other index starts with the mailbox: a mailbox the statistics have
    not seen looks like one row, and PostgreSQL took such an index and read all the mailbox's rows,
    each batch (models.InboundMessage, migration 0007)."""
    return (InboundMessage.unscoped.filter(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity)
            .filter(AnyOf("uid", uids), uid__gte=min(uids), uid__lte=max(uids))
            .order_by().values_list("uid", flat=True))


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _size_groups(metas: Iterable[_Meta], limit: int) -> Iterator[list[_Meta]]:
    """Groups whose declared sizes add up to at most limit (one oversized message alone)."""
    group: list[_Meta] = []
    total = 0
    for meta in metas:
        if group and total + meta.size > limit:
            yield group
            group, total = [], 0
        group.append(meta)
        total += meta.size
    if group:
        yield group


# ----------------------------------------------------------------------------- the mailbox row


def record_idle_successes(*, mailbox_ids: list[int], started: datetime) -> None:
    """_record_success for many active mailboxes polled with nothing new: one UPDATE (polling.py)."""
    now = timezone.now()
    Mailbox.unscoped.filter(pk__in=mailbox_ids).update(
        last_polled_at=now, last_read_at=now, consecutive_failures=0, last_error="",
        next_poll_at=started + timedelta(seconds=settings.MAILBOX_POLL_INTERVAL),
    )


def _record_success(mailbox: Mailbox, started: datetime) -> None:
    now = timezone.now()
    changes: dict[str, Any] = {
        "last_polled_at": now, "last_read_at": now, "consecutive_failures": 0, "last_error": "",
        "next_poll_at": started + timedelta(seconds=settings.MAILBOX_POLL_INTERVAL),
    }
    Mailbox.unscoped.filter(pk=mailbox.pk).update(**changes)
    Mailbox.unscoped.filter(pk=mailbox.pk, status=Mailbox.Status.ERROR).update(status=Mailbox.Status.ACTIVE)


def backoff_seconds(failures: int) -> int:
    """Exponential per mailbox: interval, 2x, 4x ... capped at MAILBOX_POLL_MAX_BACKOFF."""
    step = settings.MAILBOX_POLL_INTERVAL * 2 ** min(max(failures - 1, 0), 20)
    return int(min(step, settings.MAILBOX_POLL_MAX_BACKOFF))


def _record_error(mailbox: Mailbox, error: str, *, permanent: bool = False) -> None:
    now = timezone.now()
    failures = (
        Mailbox.unscoped.filter(pk=mailbox.pk).values_list("consecutive_failures", flat=True).first() or 0
    ) + 1
    changes: dict[str, Any] = {
        "consecutive_failures": failures, "last_error": error[:2000], "last_error_at": now,
        "last_polled_at": now, "next_poll_at": now + timedelta(seconds=backoff_seconds(failures)),
    }
    if permanent:
        # A permanent failure that is not about the grant (a blocked or missing host; the grant
        # goes through _needs_reauthorization): stop polling until someone fixes the settings.
        changes["status"] = Mailbox.Status.ERROR
    Mailbox.unscoped.filter(pk=mailbox.pk).update(**changes)


def _needs_reauthorization(mailbox: Mailbox, reason: str) -> None:
    from .services import mailbox_mark_needs_reauthorization

    mailbox.refresh_from_db()
    mailbox_mark_needs_reauthorization(mailbox=mailbox, reason=reason)
