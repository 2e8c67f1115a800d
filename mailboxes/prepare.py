"""Run a poll's intake on the other cores while this process fetches, stores and post-processes.

The classifier is pure (bytes in, a Classification out: classifier/), so the parse and the
classification of a message (and the header check for auto-replies, bounces and bulk mail) can run
in worker processes. Two modes:

- intake (the default, settings.MAILBOX_INTAKE_IN_WORKERS, when the polling process is not inside a
  transaction): a worker takes a whole intake batch, classifies it and runs its intake
  (intake.messages_process, the same code, transactions and guarantees) on its own database
  connection; the polling process waits for the batch's commit before it post-processes it on the
  server, as it does for its own batches. Workers of one poll run batches of one tenant at once:
  they take the tenant's shipment counter in turn (so numbers follow commit order, never a gap),
  and a deadlock between them rolls one batch back to run again (intake.is_transient).
- classify: the worker returns the verdicts and the polling process runs the intake, finding
  them ready instead of computing them. Used inside a transaction, whose rows the workers'
  connections could not see.

- A pool is started (fork: no imports to redo) only for a pass with more new messages than one
  intake batch, when settings.MAILBOX_INTAKE_PROCESSES > 0; its workers load the classifier's
  place data while this process fetches and stores the first batch.
- It serves `manage.py mailbox poll --once` and other non-daemon processes. A daemonic process
  (a Celery prefork child) may not have children: there the pass classifies in-process, and the
  parallelism is the worker concurrency (mailboxes polled in parallel). Only the main thread starts
  one: `mailbox idle` polls from up to MAILBOX_IDLE_MAX_CONNECTIONS threads, which would start a
  pool each, forked from a many-threaded process.
- A verdict is used only for the exact bytes it was computed from (the raw message's length and
  digest are checked), else the intake classifies in-process as before.
- Any failure of the pool (a worker killed, a pickling error, no answer within
  PREPARE_TIMEOUT seconds) stops the pool (its workers killed, so their open transactions roll
  back) and the rest of the pass runs in-process: a bad worker never loses or holds up a message
  beyond that timeout, and what a worker committed before it failed is not run again (the intake
  takes only messages still pending).
- Memory stays flat: verdicts are kept for one fetch batch at a time (forget()).
- The workers die with this process (PR_SET_PDEATHSIG on Linux; one that finds its parent already
  gone exits at once) and drop the sockets they inherit from it at the fork (the database, IMAP and
  Redis connections): a polling process killed mid-pass (OOM, a hard time limit) leaves no orphan
  keeping its database session, and so its transaction's locks, alive.
"""

from __future__ import annotations

import concurrent.futures
import copyreg
import gc
import hashlib
import logging
import multiprocessing
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

PREPARE_TIMEOUT = 120.0  # seconds to wait for one chunk's verdicts before classifying in-process
CHUNK = 10  # messages per task: small enough that the workers share the first intake batch
# Bytes handed to the workers and not yet taken back (the raw messages travel to them, the
# verdicts with their attachments back): over this, or for a message over MESSAGE_MAX_BYTES, the
# intake classifies in-process, so memory stays bounded whatever the mail.
PENDING_MAX_BYTES = 64 * 1024 * 1024
MESSAGE_MAX_BYTES = 2 * 1024 * 1024


def _mapping_proxy(data: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(data)


# The classifier's results hold read-only mappings (MappingProxyType), which pickle cannot send
# between processes on its own.
copyreg.pickle(MappingProxyType, lambda proxy: (_mapping_proxy, (dict(proxy),)))


@dataclass(frozen=True)
class Prepared:
    """What a worker computed for one message: classifier.detect_noise, classifier.classify and
    what the handlers' `prepare` companions returned (intake.py), by their dotted name."""

    digest: bytes
    noise: str | None
    classification: Any
    extras: dict[str, Any] = field(default_factory=dict)

    def fits(self, raw: bytes | memoryview | None) -> bool:
        return _digest(bytes(raw or b"")) == self.digest


def _digest(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that forked it ends (not elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        logger.debug("prctl(PR_SET_PDEATHSIG) unavailable", exc_info=True)


def _drop_inherited_sockets() -> None:
    """Release the sockets this worker inherited at the fork (the parent's database, IMAP and
    Redis connections): /dev/null takes their descriptors' place, so the parent's server sees the
    connection end when the parent does and nothing here can write into its protocol stream, while
    no descriptor number is freed for reuse under an inherited object. The pool's own channels to
    this worker are pipes and stay."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for name in names:
            fd = int(name)
            if fd == null:
                continue
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(null, fd)
            except OSError:  # the listing's own descriptor, closed since
                pass
    finally:
        os.close(null)


# The parent's database connection objects, kept alive in a worker so that nothing ever closes
# or reuses the descriptors they name (now /dev/null, _drop_inherited_sockets).
_INHERITED: list[Any] = []


def _forget_database_connections() -> None:
    """Make Django open this worker's own database connections when it first needs one: the
    parent's are set aside unused (their sockets are /dev/null here) and any transaction state the
    fork copied is cleared."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _INHERITED.append(conn.connection)
        conn.connection = None
        conn.in_atomic_block = False
        conn.savepoint_ids = []
        conn.atomic_blocks = []
        conn.needs_rollback = False
        conn.closed_in_transaction = False
        conn.run_on_commit = []


def _worker_init(parent: int) -> None:
    """Each worker's start: die with the parent, drop its sockets, load the classifier's data."""
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl (compared with its pid, not with 1:
        os._exit(1)  # a subreaper may have adopted this process)
    _drop_inherited_sockets()
    _forget_database_connections()
    _warm_up()


def _warm_up() -> None:
    import classifier

    classifier.warm_up()


def _started() -> None:
    """The pool's first task (PreparePool.__init__): it only makes the workers start."""


def _prepare(items: Sequence[tuple[int, bytes]], prefix: str | None, rules: Any,
             preparers: Sequence[tuple[str, Any]] = ()) -> list[tuple[int, Prepared]]:
    """In a worker: the verdicts of a chunk of messages (the classifier never raises), and what the
    handlers' companions make of them (one that raises is left to its handler)."""
    import classifier

    out: list[tuple[int, Prepared]] = []
    for pk, raw in items:
        if prefix is None:
            verdict = classifier.classify(raw)
        else:
            verdict = classifier.classify(raw, shipment_prefix=prefix, rules=rules)
        noise = classifier.detect_noise(raw)
        extras: dict[str, Any] = {}
        for name, preparer in preparers if not noise else ():
            try:
                extras[name] = preparer(raw, verdict)
            except Exception:
                logger.info("intake preparer %s failed; its handler will do without", name, exc_info=True)
        out.append((pk, Prepared(digest=_digest(raw), noise=noise, classification=verdict, extras=extras)))
    return out


def _intake(items: Sequence[tuple[int, bytes]], prefix: str | None, rules: Any,
            preparers: Sequence[tuple[str, Any]] = ()) -> dict[int, Any]:
    """In a worker: classify a batch of stored messages, then run their intake here, on this
    worker's own database connection and in its own transactions (intake.messages_process, the
    same code and guarantees as in the polling process); {id: ProcessOutcome or None}. Returns
    only once the batch has committed (the documents processor, eager in `poll --once`, included)."""
    from .intake import messages_process

    ready = dict(_prepare(items, prefix, rules, preparers))
    return messages_process(message_ids=[pk for pk, _ in items], prepared=ready.get, raws=dict(items))


_explained: set[str] = set()


def _explain_once(why: str) -> None:
    if why not in _explained:
        _explained.add(why)
        logger.debug("no intake workers here, the intake classifies in-process: %s", why)


class PreparePool:
    """Worker processes classifying stored messages ahead of the intake (see the module docstring).

    submit() the new messages of a fetch batch as soon as they are stored, get(pk) from the intake
    (it waits for that message's chunk), forget(pks) once they are processed, close() at the end
    of the pass (or use it as a context manager).

    With `intake=True` the workers go one step further: submit_intake() hands them a whole intake
    batch, which a worker classifies and then processes in its own transaction (_intake), and
    outcomes(pks) collects what they did; what no worker did (the pool failed) is left to the
    caller, which processes it in-process (messages_process only takes messages still pending, so
    nothing a worker committed is done twice)."""

    def __init__(self, *, processes: int, tenant: Any, intake: bool = False) -> None:
        from .classification import tenant_rules
        from .intake import intake_preparers

        self.preparers = intake_preparers()  # resolved here, before the fork: the workers inherit them
        self.processes = processes
        self.prefix: str | None = tenant.ref_prefix if tenant is not None else None
        self.rules = tenant_rules(tenant) if tenant is not None else None
        self.intake = intake
        self.futures: dict[int, concurrent.futures.Future[Any]] = {}
        self.ready: dict[int, Prepared] = {}
        self.pending: dict[int, int] = {}  # message id -> bytes handed to a worker, not taken back
        self.pending_bytes = 0
        self.broken = False
        self.held = False  # intake mode: nothing more handed over this pass (submit_intake)
        self.used = 0  # verdicts taken from the workers
        self.waited = 0.0  # seconds this process waited for them (the workers were behind)
        self.executor: concurrent.futures.ProcessPoolExecutor | None = None
        try:
            self.executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=processes, mp_context=multiprocessing.get_context("fork"),
                initializer=_worker_init, initargs=(os.getpid(),),
            )
            # The workers are forked at the first submit; one that does nothing forks them now, so
            # that they warm up (_worker_init) while this process fetches and stores the first
            # batch, not after it. What this process holds at the fork is frozen for the fork only:
            # a worker's full collections then leave the inherited objects (~100,000: Django, the
            # apps, the classifier) alone instead of walking them all, and writing to each one's
            # header copied every page they sit on (gc.freeze: about 70 ms of a worker's CPU per
            # full collection, two or more a pass). Unfrozen here at once, so that this process
            # collects as before.
            gc.freeze()
            try:
                self.executor.submit(_started)
            finally:
                gc.unfreeze()
        except Exception:  # no fork here (or no processes allowed): classify in-process
            logger.warning("intake workers could not be started; classifying in-process", exc_info=True)
            self.broken = True

    @classmethod
    def for_pass(cls, *, new: int, tenant: Any) -> PreparePool | None:
        """A pool when the pass has enough new messages to gain from one, else None.

        Its workers run the intake itself (intake=True) unless this process is inside a
        transaction: what it has not committed would be invisible to their connections."""
        from django.db import connection

        processes = int(getattr(settings, "MAILBOX_INTAKE_PROCESSES", 0) or 0)
        if processes <= 0 or new <= settings.MAILBOX_INTAKE_BATCH:
            return None
        if multiprocessing.current_process().daemon:
            _explain_once("a daemonic process (a Celery prefork child) may not have children")
            return None
        if threading.current_thread() is not threading.main_thread():
            _explain_once("only the main thread starts them (mailbox idle runs a poll per thread)")
            return None
        intake = bool(getattr(settings, "MAILBOX_INTAKE_IN_WORKERS", True)) and not connection.in_atomic_block
        return cls(processes=processes, tenant=tenant, intake=intake)

    def __enter__(self) -> PreparePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, items: Sequence[tuple[int, bytes]]) -> None:
        if self.broken or self.executor is None:
            return
        room = PENDING_MAX_BYTES - self.pending_bytes
        kept: list[tuple[int, bytes]] = []
        for pk, raw in items:
            if len(raw) <= MESSAGE_MAX_BYTES and len(raw) <= room:
                kept.append((pk, raw))
                room -= len(raw)
        for start in range(0, len(kept), CHUNK):
            chunk = kept[start:start + CHUNK]
            try:
                future = self.executor.submit(_prepare, chunk, self.prefix, self.rules, self.preparers)
            except (OSError, RuntimeError, AssertionError) as failure:  # no fork, a broken or shut pool
                self._break("submitting to the intake workers failed", failure)
                return
            for pk, raw in chunk:
                self.futures[pk] = future
                self.pending[pk] = len(raw)
                self.pending_bytes += len(raw)

    def submit_intake(self, items: Sequence[tuple[int, bytes]]) -> bool:
        """Hand one intake batch (its stored messages' ids and bytes) to a worker; False when it is
        left to the caller (outcomes() will not return it): after a failure, or over the byte
        budget, after which no batch is handed over for the rest of the pass, so that the caller
        runs the rest in order (a reply never overtakes the message it answers)."""
        size = sum(len(raw) for _, raw in items)
        if size > PENDING_MAX_BYTES - self.pending_bytes:
            self.held = True
        if self.broken or self.held or self.executor is None or not items:
            return False
        try:
            future = self.executor.submit(_intake, list(items), self.prefix, self.rules, self.preparers)
        except (OSError, RuntimeError, AssertionError) as failure:
            self._break("submitting to the intake workers failed", failure)
            return False
        for pk, raw in items:
            self.futures[pk] = future
            self.pending[pk] = len(raw)
        self.pending_bytes += size
        return True

    def wait_for(self, pks: Sequence[int]) -> None:
        """Wait until the batches holding these messages are done (committed, or the pool failed),
        leaving their outcomes to outcomes()."""
        for future in {id(f): f for f in (self.futures.get(pk) for pk in pks) if f is not None}.values():
            if self.broken:
                return
            self._wait(future)

    def outcomes(self, pks: Sequence[int]) -> dict[int, Any]:
        """What the workers' intake did with these messages: {id: ProcessOutcome or None}, waiting
        for their batches; a message missing from the answer was not processed by a worker (not
        handed over, or the pool failed) and is the caller's to process."""
        out: dict[int, Any] = {}
        for pk in pks:
            if pk in out or self.broken:
                continue
            future = self.futures.get(pk)
            if future is None or not self._wait(future):
                continue
            out.update(future.result(timeout=0))
            self.used += 1
        wanted = set(pks)
        self.forget(list(wanted))
        return {pk: outcome for pk, outcome in out.items() if pk in wanted}

    def _wait(self, future: concurrent.futures.Future[Any]) -> bool:
        """Wait for one task; False (and the pool stopped) when it failed or did not answer."""
        began = time.monotonic()
        try:
            # Nothing is caught while waiting: what interrupts the wait (Celery's
            # SoftTimeLimitExceeded, KeyboardInterrupt) belongs to the caller.
            done, _ = concurrent.futures.wait([future], timeout=PREPARE_TIMEOUT)
        finally:
            self.waited += time.monotonic() - began
        if not done:
            self._break(f"no answer from the intake workers within {PREPARE_TIMEOUT:g} s")
            return False
        try:
            # The pool's own failures: a worker killed (BrokenProcessPool), an error raised in a
            # worker or in pickling its task or its answer, a cancelled task.
            failure = future.exception(timeout=0)
        except concurrent.futures.CancelledError as cancelled:
            failure = cancelled
        if failure is not None:
            self._break("an intake worker failed", failure)
            return False
        return True

    def get(self, pk: int) -> Prepared | None:
        """The verdict of message pk, waiting for its chunk; None: classify it in-process."""
        found = self.ready.get(pk)
        if found is not None or self.broken:
            self.used += found is not None
            return found
        future = self.futures.get(pk)
        if future is None or not self._wait(future):
            return None
        for key, prepared in future.result(timeout=0):
            self.ready[key] = prepared
            self.futures.pop(key, None)
        found = self.ready.get(pk)
        self.used += found is not None
        return found

    def forget(self, pks: Sequence[int] | None = None) -> None:
        """Drop what was kept for these messages (processed now), or for all: memory stays flat."""
        if pks is None:
            self.ready.clear()
            for future in self.futures.values():
                future.cancel()
            self.futures.clear()
            self.pending.clear()
            self.pending_bytes = 0
            return
        for pk in pks:
            self.ready.pop(pk, None)
            self.futures.pop(pk, None)
            self.pending_bytes -= self.pending.pop(pk, 0)

    def _break(self, why: str, failure: BaseException | None = None) -> None:
        logger.warning("%s; the rest of the pass is %s in-process", why,
                       "processed" if self.intake else "classified", exc_info=failure)
        self.broken = True
        self.forget()
        self._stop(kill=True)

    def _stop(self, *, kill: bool) -> None:
        executor, self.executor = self.executor, None
        if executor is None:
            return
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        # Never wait long for a worker: one stuck in a chunk nobody asked for must not hold up the
        # end of the pass (shutdown(wait=True) would).
        for process in processes:
            try:
                process.join(timeout=0 if kill else 5)
                if process.is_alive():
                    process.kill()
                    process.join(timeout=5)
            except Exception:
                logger.debug("intake worker already gone", exc_info=True)

    def close(self) -> None:
        if self.used or self.broken:
            logger.info("intake workers: %s %s, %.2f s waited for them%s", self.used,
                        "batches" if self.intake else "verdicts", self.waited,
                        " (stopped after a failure)" if self.broken else "")
        self.forget()
        self._stop(kill=False)


__all__ = ["PreparePool", "Prepared"]
