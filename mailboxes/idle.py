"""IMAP IDLE (RFC 2177) on every read-enabled mailbox: new mail is processed within seconds.

`manage.py mailbox idle` runs an IdleSupervisor: one thread per mailbox (at most
MAILBOX_IDLE_MAX_CONNECTIONS), each holding an IDLE connection on INBOX. When the server reports
EXISTS, the thread runs the same pass as the poller (reading.mailbox_poll, which takes the
mailbox's lock, so it never races a Celery poll). IDLE is renewed every
MAILBOX_IDLE_RENEW_SECONDS (servers drop IDLE after 30 minutes), with a catch-up poll each time;
lost connections come back with exponential backoff; the list of mailboxes is re-read every
MAILBOX_IDLE_REFRESH_SECONDS. stop() (SIGTERM/SIGINT in the command) ends every thread within
about a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import close_old_connections, connection

from .connections import imap_session
from .models import Mailbox
from .providers import ProviderError
from .reading import INBOX, PollResult, mailbox_poll, mailboxes_readable_ids

if TYPE_CHECKING:
    from imapclient import IMAPClient

logger = logging.getLogger(__name__)

MAX_RECONNECT_DELAY = 300.0
CHECK_INTERVAL = 1.0  # how often a thread in IDLE looks at its stop flag
LOCKED_RETRIES = 10  # a poll refused because another is running is retried (it may have missed this mail)

Poller = Callable[[int], PollResult]


def _default_poller(mailbox_id: int) -> PollResult:
    return mailbox_poll(mailbox_id=mailbox_id)


class MailboxWatcher(threading.Thread):
    def __init__(self, mailbox_id: int, *, poller: Poller, renew_seconds: float) -> None:
        super().__init__(name=f"idle-mailbox-{mailbox_id}", daemon=True)
        self.mailbox_id = mailbox_id
        self.poller = poller
        self.renew_seconds = renew_seconds
        self.stopping = threading.Event()
        self.polls = 0

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        delay = 1.0
        try:
            while not self.stopping.is_set():
                try:
                    if not self._session():
                        return  # the mailbox is gone or no longer read
                    delay = 1.0
                except Exception as exc:
                    level = logging.WARNING if isinstance(exc, ProviderError | OSError) else logging.ERROR
                    logger.log(level, "mailbox %s: IDLE connection lost (%s); reconnecting in %.0f s",
                               self.mailbox_id, str(exc)[:300] or exc.__class__.__name__, delay,
                               exc_info=level == logging.ERROR)
                    if isinstance(exc, ProviderError):
                        self.poll()  # records the error (and needs re-authorization) on the row
                    self.stopping.wait(delay)
                    delay = min(delay * 2, MAX_RECONNECT_DELAY)
        finally:
            connection.close()

    def _mailbox(self) -> Mailbox | None:
        close_old_connections()
        mailbox = Mailbox.unscoped.filter(pk=self.mailbox_id).first()
        if mailbox is None or not mailbox.reads or mailbox.status != Mailbox.Status.ACTIVE:
            return None
        return mailbox

    def _session(self) -> bool:
        mailbox = self._mailbox()
        if mailbox is None:
            return False
        with imap_session(mailbox) as client:
            if not client.has_capability("IDLE"):
                # No push from this server: poll on the normal interval instead, on this thread.
                self.poll()
                self.stopping.wait(settings.MAILBOX_POLL_INTERVAL)
                return True
            client.select_folder(INBOX, readonly=True)
            self.poll()  # catch up on what arrived while we were not listening
            while not self.stopping.is_set():
                arrived = self._idle_once(client)
                if self.stopping.is_set():
                    break
                if self._mailbox() is None:
                    return False
                # New mail, or a renewal: poll either way (a renewal poll catches anything missed).
                self.poll()
                if arrived:
                    # Mail that came while we polled is announced at the next command.
                    _, pending = client.noop()
                    while _has_exists(pending) and not self.stopping.is_set():
                        self.poll()
                        _, pending = client.noop()
        return True

    def _idle_once(self, client: IMAPClient) -> bool:
        """One IDLE until EXISTS, renewal time or stop. True when mail arrived."""
        started = time.monotonic()
        client.idle()
        try:
            while not self.stopping.is_set() and time.monotonic() - started < self.renew_seconds:
                responses = client.idle_check(timeout=CHECK_INTERVAL)
                if _has_exists(responses):
                    return True
            return False
        finally:
            client.idle_done()

    def poll(self) -> None:
        close_old_connections()
        for _ in range(LOCKED_RETRIES):
            result = self.poller(self.mailbox_id)
            self.polls += 1
            if result.skipped != "locked" or self.stopping.wait(2.0):
                return


def _has_exists(responses: object) -> bool:
    if not isinstance(responses, list | tuple):
        return False
    return any(isinstance(r, tuple) and len(r) >= 2 and r[1] == b"EXISTS" for r in responses)


class IdleSupervisor:
    """Keeps one watcher per active read-enabled mailbox, up to max_connections."""

    def __init__(self, *, max_connections: int | None = None, refresh_seconds: float | None = None,
                 renew_seconds: float | None = None, poller: Poller = _default_poller) -> None:
        self.max_connections = max_connections or settings.MAILBOX_IDLE_MAX_CONNECTIONS
        self.refresh_seconds = refresh_seconds or settings.MAILBOX_IDLE_REFRESH_SECONDS
        self.renew_seconds = renew_seconds or settings.MAILBOX_IDLE_RENEW_SECONDS
        self.poller = poller
        self.stopping = threading.Event()
        self.watchers: dict[int, MailboxWatcher] = {}

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        """Until stop(): watch every mailbox, re-reading the list periodically."""
        try:
            while not self.stopping.is_set():
                try:
                    self.sync()
                except Exception:
                    logger.exception("IDLE supervisor: could not refresh the mailbox list")
                self.stopping.wait(self.refresh_seconds)
        finally:
            self.shutdown()

    def sync(self) -> None:
        close_old_connections()
        wanted = mailboxes_readable_ids()
        if len(wanted) > self.max_connections:
            logger.warning("IDLE: %s mailboxes read, only %s connections allowed; the rest are polled",
                           len(wanted), self.max_connections)
            wanted = wanted[: self.max_connections]
        for mailbox_id in list(self.watchers):
            watcher = self.watchers[mailbox_id]
            if mailbox_id not in wanted or not watcher.is_alive():
                watcher.stop()
                if not watcher.is_alive():
                    del self.watchers[mailbox_id]
        for mailbox_id in wanted:
            if mailbox_id not in self.watchers:
                watcher = MailboxWatcher(mailbox_id, poller=self.poller, renew_seconds=self.renew_seconds)
                self.watchers[mailbox_id] = watcher
                watcher.start()
                logger.info("IDLE: watching mailbox %s", mailbox_id)

    def shutdown(self, timeout: float = 15.0) -> None:
        for watcher in self.watchers.values():
            watcher.stop()
        deadline = time.monotonic() + timeout
        for watcher in self.watchers.values():
            watcher.join(max(0.0, deadline - time.monotonic()))
        self.watchers.clear()
        connection.close()
