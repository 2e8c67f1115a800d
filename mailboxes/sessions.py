"""IMAP connections kept open across polls, per process (reading.py's polls: mailbox_poll and polling.py's chunks).

An idle poll that logs in every time is bound by TCP + TLS + LOGIN (PERF-NOTES: 12.4 ms against
0.33 ms for a NOOP on a kept connection). This cache keeps up to MAILBOX_IMAP_KEEP_CONNECTIONS
logged-in connections per process (0 disables it), least recently used logged out first.

A kept connection is reused only when:
- it belongs to this process (the cache is made lazily per os.getpid(): a forked worker never
  inherits its parent's sockets);
- the mailbox's fingerprint is unchanged (host, port, security, username, provider, status and
  updated_at: an edited mailbox or a new password/token gets a new connection);
- it is younger than MAILBOX_IMAP_KEEP_MAX_AGE and was used within MAILBOX_IMAP_KEEP_IDLE seconds.
No NOOP is sent first: every poll starts with SELECT, which proves the connection alive as well,
and a SELECT that fails on a reused connection is retried once on a new login (reading._poll).
That is one round trip per idle poll instead of two.
Any error during a poll closes and drops the connection (never reuse one in an unknown state).
The scheduler's chunks (polling.py) claim the mailboxes this process keeps connections for first
(kept_ids), so a process meets its own connections: size the cache to the mailboxes per process.
The IDLE watcher (idle.py) keeps its own connections and never uses this cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from .connections import imap_session

if TYPE_CHECKING:
    from imapclient import IMAPClient

    from .models import Mailbox

logger = logging.getLogger(__name__)


@dataclass
class _Kept:
    client: IMAPClient
    fingerprint: str
    stack: ExitStack
    opened: float = field(default_factory=time.monotonic)
    used: float = field(default_factory=time.monotonic)
    prepared: bool = False  # reading's one-time set-up (ENABLE CONDSTORE) done on this connection

    def close(self) -> None:
        with suppress(Exception):
            self.stack.close()  # imap_session's exit: LOGOUT, then shutdown


_caches: dict[int, OrderedDict[int, _Kept]] = {}  # by os.getpid()
_inherited: list[_Kept] = []  # a forked child's copies of its parent's connections: left alone
_guard = threading.Lock()  # the IDLE watcher polls from threads; a connection in use is never in the cache


def _entries() -> OrderedDict[int, _Kept]:
    pid = os.getpid()
    if pid not in _caches:
        # A fresh process (or a fork): the parent's connections are not ours. They are kept
        # referenced, never collected: collecting imap_session's generator would run its
        # `finally` and send LOGOUT on the parent's socket.
        for entries in _caches.values():
            _inherited.extend(entries.values())
        _caches.clear()
        _caches[pid] = OrderedDict()
    return _caches[pid]


def mailbox_fingerprint(mailbox: Mailbox) -> str:
    """What a kept connection depends on; any change means a new connection."""
    parts: list[Any] = [
        mailbox.provider, mailbox.imap_host, mailbox.imap_port, mailbox.imap_security, mailbox.username,
        mailbox.email_address, mailbox.status, mailbox.updated_at.isoformat() if mailbox.updated_at else "",
        mailbox.secret,
    ]
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()


def _usable(kept: _Kept, fingerprint: str, now: float) -> bool:
    if kept.fingerprint != fingerprint:
        return False
    return not (
        now - kept.opened > settings.MAILBOX_IMAP_KEEP_MAX_AGE or now - kept.used > settings.MAILBOX_IMAP_KEEP_IDLE
    )


@contextmanager
def kept_imap_session(mailbox: Mailbox) -> Iterator[tuple[IMAPClient, bool]]:
    """(client, prepared): a logged-in connection for the mailbox, kept after a clean exit.

    `prepared` is True when the connection was used before (set-up such as ENABLE is done).
    An exception inside the block closes the connection and drops it from the cache.
    """
    limit = settings.MAILBOX_IMAP_KEEP_CONNECTIONS
    if limit <= 0:
        with imap_session(mailbox) as client:
            yield client, False
        return
    fingerprint = mailbox_fingerprint(mailbox)
    with _guard:
        kept = _entries().pop(mailbox.pk, None)
    if kept is not None and not _usable(kept, fingerprint, time.monotonic()):
        kept.close()
        kept = None
    if kept is None:
        stack = ExitStack()
        try:
            client = stack.enter_context(imap_session(mailbox))
        except BaseException:
            stack.close()
            raise
        kept = _Kept(client=client, fingerprint=fingerprint, stack=stack)
    try:
        yield kept.client, kept.prepared
    except BaseException:
        kept.close()
        raise
    kept.prepared = True
    kept.used = now = time.monotonic()
    closing: list[_Kept] = []
    with _guard:
        entries = _entries()
        if (other := entries.pop(mailbox.pk, None)) is not None:
            closing.append(other)
        entries[mailbox.pk] = kept
        while entries:
            oldest = next(iter(entries.values()))
            if len(entries) <= limit and now - oldest.used <= settings.MAILBOX_IMAP_KEEP_IDLE:
                break
            entries.popitem(last=False)
            closing.append(oldest)  # least recently used first: over the limit, or idle too long
    for old in closing:
        old.close()  # LOGOUT, outside the lock


def kept_drop(mailbox_id: int) -> None:
    """Close and forget the mailbox's kept connection, if this process has one."""
    with _guard:
        kept = _entries().pop(mailbox_id, None)
    if kept is not None:
        kept.close()


def kept_close_all() -> None:
    """Log out every connection this process keeps (tests; worker shutdown)."""
    with _guard:
        entries = _entries()
        closing = list(entries.values())
        entries.clear()
    for kept in closing:
        kept.close()


def kept_count() -> int:
    return len(_entries())


def kept_ids() -> list[int]:
    """The mailboxes this process holds a connection for: polling.py claims these first."""
    with _guard:
        return list(_entries())
