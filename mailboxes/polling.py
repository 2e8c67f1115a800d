"""Polling many mailboxes in one task: the scheduler's path (tasks/poll.py).

The beat counts the due mailboxes and queues one chunk task per CHUNK of them; a chunk task names
no mailbox. When it runs it claims up to CHUNK due mailboxes (reading.mailboxes_claim_due: one
locking SELECT + one UPDATE), those whose IMAP connection this process keeps first
(sessions.kept_ids). Why: prefork hands a task to whichever child is free, so a task naming its
mailbox met the child that kept the mailbox's connection about half the time, and with a bounded
cache far less (bench/README.md, "Idle polling"). A child that picks its own mailboxes out of the
due set meets them every time; when it runs out it takes the others' (work stealing), so the
load still balances and the children together keep about one connection per mailbox.

Per chunk: the mailboxes in one query, their locks in one Redis round trip, the cursors and "is
there anything to repair?" in one query each, then one SELECT per mailbox on its connection:
- nothing new (same UIDVALIDITY, UIDNEXT right after the cursor, same HIGHESTMODSEQ, nothing to
  repair): idle. The idle ones are recorded as polled with one UPDATE at the end of the chunk;
- a few new messages (at most INLINE_NEW), changed flags, or a first poll (no cursor) or a
  renumbered folder with at most INLINE_NEW messages in it: the full pass, there and then on the
  same connection (reading.poll_guarded -> FolderReader), exactly as mailbox_poll does it;
- more than that, or leftovers to repair: handed to a poll task of its own
  (tasks.poll_mailbox), so a big ingest never holds up the rest.
A mailbox's failure is its own (recorded on its row, as mailbox_poll does). One that hangs delays
those after it in its chunk by at most its own IMAP timeout; after BUDGET seconds the chunk gives
its unpolled mailboxes back (due again) and queues another chunk task to take them.
Safe to run twice: a claimed mailbox is not due for anyone else until its next turn, and a poll
running elsewhere holds the mailbox's lock (the chunk skips it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from tms.logging import log_context

from . import locks, metrics
from .intake import DONE, PENDING
from .models import FolderCursor, InboundMessage, Mailbox
from .reading import (
    HANDOFF,
    IDLE,
    INBOX,
    POLLED,
    PollResult,
    log_outcome,
    mailboxes_claim_due,
    poll_guarded,
    record_idle_successes,
    why_not_polled,
)
from .sessions import kept_drop, kept_ids

logger = logging.getLogger(__name__)

CHUNK = 50  # mailboxes per chunk task: ~50 ms of work when idle, and a hang stays local to 49 others
INLINE_NEW = 20  # new messages a chunk reads itself; more go to a poll task of their own
BUDGET = 30  # seconds; a chunk past this gives its unpolled mailboxes back
# The chunk task's time limits (tasks/poll.py), and the life of the locks it takes for its
# mailboxes: a chunk cannot outlive its hard limit, so its locks never expire under it, and a
# killed chunk (its process lost) blocks its mailboxes for 2 minutes, not MAILBOX_POLL_LOCK_TTL.
# A mailbox read in the chunk extends its lock to MAILBOX_POLL_LOCK_TTL per batch (FolderReader).
SOFT_TIME_LIMIT = BUDGET * 3
TIME_LIMIT = BUDGET * 4


@dataclass
class ChunkResult:
    claimed: list[int] = field(default_factory=list)
    idle: list[int] = field(default_factory=list)
    polled: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    handed_off: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # gone, no longer active, or locked by a poll elsewhere
    given_back: list[int] = field(default_factory=list)  # the budget ran out before their turn

    def as_json(self) -> dict[str, Any]:
        return {name: len(getattr(self, name)) for name in self.__dataclass_fields__}


def _unfinished() -> Q:
    # The same test as FolderReader.repair: messages to retry, or processed ones whose
    # post-processing never ran. A mailbox with any is read by a full pass, which repairs it.
    return Q(status__in=PENDING) | Q(status__in=DONE, post_processed_at__isnull=True)


def _decide(cursor: FolderCursor | None, info: dict[bytes, Any]) -> str:
    """IDLE, POLLED (read here) or HANDOFF, from the SELECT response and the folder's cursor."""
    if cursor is None or int(info[b"UIDVALIDITY"]) != cursor.uidvalidity:
        # A first poll (the recent window) or a renumbered folder (a resynchronisation by
        # Message-ID): bounded by the messages in the folder.
        return POLLED if int(info.get(b"EXISTS", INLINE_NEW + 1)) <= INLINE_NEW else HANDOFF
    if b"UIDNEXT" not in info:
        return POLLED  # the reader searches
    new = int(info[b"UIDNEXT"]) - 1 - cursor.last_uid
    if new <= 0:
        modseq = int(info[b"HIGHESTMODSEQ"]) if b"HIGHESTMODSEQ" in info else None
        return IDLE if modseq == cursor.highestmodseq else POLLED  # the reader saves the new HIGHESTMODSEQ
    return POLLED if new <= INLINE_NEW else HANDOFF


def mailboxes_poll_chunk(
    *,
    hand_off: Callable[[int], object],
    more: Callable[[], object],
    size: int = CHUNK,
    budget: int = BUDGET,
) -> ChunkResult:
    """Claim up to `size` due mailboxes and poll them (see the module docstring).

    hand_off(mailbox_id) queues a full poll of one mailbox; more() queues another chunk task.
    Never raises for a mailbox's own failures."""
    began = time.monotonic()
    started = timezone.now()
    out = ChunkResult(claimed=mailboxes_claim_due(now=started, limit=size, prefer=kept_ids()))
    if not out.claimed:
        return out
    mine = _lock(out)
    idle_locks: list[locks.Lock] = []  # held until their success is recorded
    todo = mine[::-1]  # popped from the end: claim order
    try:
        ids = [m.pk for m, _ in mine]
        cursors = {c.mailbox_id: c for c in FolderCursor.objects.filter(mailbox_id__in=ids, folder=INBOX)}
        unfinished = set(
            InboundMessage.unscoped.filter(_unfinished(), mailbox_id__in=ids)
            .order_by().values_list("mailbox_id", flat=True).distinct()
        )
        while todo:
            if time.monotonic() - began > budget:
                out.given_back = [m.pk for m, _ in reversed(todo)]
                # Unlocked before they are due again: the chunk that takes them (maybe at once, in
                # another process) would skip a mailbox still locked, and it would wait a turn.
                locks.release_many([lock for _, lock in todo])
                todo.clear()
                Mailbox.unscoped.filter(pk__in=out.given_back).update(next_poll_at=None)
                logger.warning("poll chunk over its %s s budget: %s mailboxes given back", budget, len(out.given_back))
                more()
                break
            mailbox, lock = todo[-1]
            verdict = _poll_one(mailbox, lock, cursors.get(mailbox.pk), mailbox.pk in unfinished)
            todo.pop()
            if verdict == IDLE:
                out.idle.append(mailbox.pk)
                idle_locks.append(lock)
                continue
            locks.release(lock)
            if verdict == HANDOFF:
                out.handed_off.append(mailbox.pk)
                hand_off(mailbox.pk)
            else:
                (out.polled if verdict == POLLED else out.failed).append(mailbox.pk)
        if out.idle:
            record_idle_successes(mailbox_ids=out.idle, started=started)
    finally:
        locks.release_many(idle_locks + [lock for _, lock in todo])
    logger.info("poll chunk: %s", out.as_json())
    return out


def _lock(out: ChunkResult) -> list[tuple[Mailbox, locks.Lock]]:
    """The claimed mailboxes that are still to be polled, each with its lock (one round trip)."""
    found = {m.pk: m for m in Mailbox.unscoped.select_related("tenant").filter(pk__in=out.claimed)}
    boxes: list[Mailbox] = []
    for pk in out.claimed:
        mailbox = found.get(pk)
        if mailbox is None or why_not_polled(mailbox, explicit=False):
            kept_drop(pk)
            out.skipped.append(pk)
        else:
            boxes.append(mailbox)
    held = locks.acquire_many([locks.mailbox_poll_key(m.pk) for m in boxes], ttl=TIME_LIMIT)
    mine: list[tuple[Mailbox, locks.Lock]] = []
    for mailbox in boxes:
        lock = held[locks.mailbox_poll_key(mailbox.pk)]
        if lock is None:
            logger.info("mailbox %s: a poll is already running; the chunk leaves it", mailbox.pk)
            out.skipped.append(mailbox.pk)
        else:
            mine.append((mailbox, lock))
    return mine


def _poll_one(mailbox: Mailbox, lock: locks.Lock, cursor: FolderCursor | None, unfinished: bool) -> str:
    """One mailbox of a chunk: its verdict, or "" when it failed (recorded on its row)."""
    if unfinished:
        return HANDOFF  # a repair of leftovers: may be long
    result = PollResult(mailbox=mailbox.pk)
    with log_context(tenant=mailbox.tenant.slug, mailbox=mailbox.pk):
        began = time.monotonic()
        verdict = poll_guarded(mailbox=mailbox, result=result, lock=lock,
                               decide=lambda info: _decide(cursor, info))
        if verdict != HANDOFF:
            metrics.poll_observed(result=result, seconds=time.monotonic() - began)
            log_outcome(mailbox, result)
    return verdict
