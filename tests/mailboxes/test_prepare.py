"""Classifying a big poll's new messages in worker processes (mailboxes/prepare.py): the same
outcome as in-process, and a worker that dies or hangs never loses or holds up a message."""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection

import classifier
from mailboxes import prepare
from mailboxes.intake import messages_process
from mailboxes.models import InboundMessage, Mailbox
from mailboxes.prepare import Prepared, PreparePool
from mailboxes.reading import mailbox_poll
from tests.mailboxes.reading_support import (  # noqa: F401
    append,
    calls_in_this_process,
    make_reader,
    reading_settings,
    stored,
)
from tms.accounts.models import Staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reading_settings")]

CORPUS = sorted((Path(__file__).resolve().parent.parent / "corpus" / "messages").glob("*.eml"))
COUNT = 14


@pytest.fixture(autouse=True)
def small_batches(settings: Any) -> None:
    # Several fetch and intake batches out of a few messages: the pool, the batch ahead and the
    # hand-over between batches all run.
    settings.MAILBOX_INTAKE_HANDLERS = ["mailboxes.intake.classify_handler"]
    settings.MAILBOX_FETCH_BATCH = 5
    settings.MAILBOX_INTAKE_BATCH = 3
    settings.MAILBOX_INTAKE_PROCESSES = 1


@pytest.fixture
def parent_classifies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts classifier.classify calls made in this process (a worker counts in its own copy)."""
    return calls_in_this_process(monkeypatch, classifier, "classify")


def corpus_mailbox(staff: Staff, dovecot: Any) -> Mailbox:
    mailbox = make_reader(staff, dovecot)
    for path in CORPUS[:COUNT]:
        append(dovecot, mailbox.email_address, path.read_bytes())
    return mailbox


def outcomes(mailbox: Mailbox) -> list[tuple[int, str, str, str]]:
    return [(m.uid, m.status, m.category, m.reason) for m in stored(mailbox)]


def classified(mailbox: Mailbox) -> int:
    """How many of the stored messages needed a verdict (noise is ignored before any)."""
    return sum(1 for m in stored(mailbox) if "noise" not in (m.result or {}))


def expected(mailbox: Mailbox) -> list[tuple[int, str, str, str]]:
    """What the classify handler says of each stored message when it classifies in this process."""
    ids = [m.pk for m in stored(mailbox)]
    InboundMessage.unscoped.filter(pk__in=ids).update(status=InboundMessage.Status.RECEIVED)
    messages_process(message_ids=ids)
    return outcomes(mailbox)


# The faults take _prepare's arguments (a fault that took fewer would only raise a TypeError).
def _die(items: Any, prefix: Any, rules: Any, preparers: Any) -> Any:
    os._exit(3)


def _hang(items: Any, prefix: Any, rules: Any, preparers: Any) -> Any:
    time.sleep(120)


def _raise(items: Any, prefix: Any, rules: Any, preparers: Any) -> Any:
    raise ValueError("a bug in a worker")


def test_it_classifies_a_big_poll_in_the_workers_with_the_same_outcome(
    bob: Staff, dovecot: Any, parent_classifies: list[int]
) -> None:
    mailbox = corpus_mailbox(bob, dovecot)

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.error, result.new, result.failed) == ("", COUNT, 0)
    assert parent_classifies == []  # every verdict came from a worker
    pooled = outcomes(mailbox)
    assert len(pooled) == COUNT and all(status in ("processed", "ignored") for _, status, _, _ in pooled)
    assert len({category for _, _, category, _ in pooled}) >= 3
    assert expected(mailbox) == pooled
    assert parent_classifies  # and the comparison did classify here


def test_it_classifies_in_process_without_workers(
    bob: Staff, dovecot: Any, settings: Any, parent_classifies: list[int]
) -> None:
    settings.MAILBOX_INTAKE_PROCESSES = 0
    mailbox = corpus_mailbox(bob, dovecot)

    assert mailbox_poll(mailbox_id=mailbox.pk).new == COUNT

    assert len(parent_classifies) == classified(mailbox)


@pytest.mark.parametrize("fault", [_die, _hang, _raise], ids=["dies", "hangs", "raises"])
def test_it_classifies_in_process_when_a_worker_fails(
    bob: Staff, dovecot: Any, monkeypatch: pytest.MonkeyPatch, parent_classifies: list[int], fault: Any
) -> None:
    monkeypatch.setattr(prepare, "_prepare", fault)
    monkeypatch.setattr(prepare, "PREPARE_TIMEOUT", 1.0)
    mailbox = corpus_mailbox(bob, dovecot)

    result = mailbox_poll(mailbox_id=mailbox.pk)

    assert (result.error, result.new, result.failed, result.quarantined) == ("", COUNT, 0, 0)
    assert len(parent_classifies) == classified(mailbox)  # none lost, each classified here once
    assert expected(mailbox) == outcomes(mailbox)


def test_it_uses_a_verdict_only_for_the_bytes_it_was_made_from(bob: Staff, dovecot: Any) -> None:
    mailbox = corpus_mailbox(bob, dovecot)
    mailbox_poll(mailbox_id=mailbox.pk)
    truth = expected(mailbox)
    ids = [m.pk for m in stored(mailbox)]
    InboundMessage.unscoped.filter(pk__in=ids).update(status=InboundMessage.Status.RECEIVED)
    wrong = Prepared(digest=prepare._digest(b"other bytes"), noise="bulk mail",
                     classification=classifier.classify(b"Subject: nothing\r\n\r\nhi"))

    messages_process(message_ids=ids, prepared=lambda pk: wrong)

    assert outcomes(mailbox) == truth
    assert not wrong.fits(stored(mailbox)[0].raw)


def test_it_starts_no_workers_for_a_small_poll(settings: Any, bob: Staff) -> None:
    assert PreparePool.for_pass(new=settings.MAILBOX_INTAKE_BATCH, tenant=bob.tenant) is None
    settings.MAILBOX_INTAKE_PROCESSES = 0
    assert PreparePool.for_pass(new=1000, tenant=bob.tenant) is None


ROOT = Path(__file__).resolve().parent.parent.parent
LOCK_KEY = 7_244_011
# A polling process in the middle of a pass: a transaction holding a lock (as the intake holds the
# tenant's counter and the batch's rows), the pool's workers started and warm; then it is killed.
POLLER = f"""
import sys, time
import django
django.setup()
import psycopg
from mailboxes.prepare import PreparePool
db = psycopg.connect(sys.argv[1])
db.execute("SELECT pg_advisory_xact_lock({LOCK_KEY})")
pool = PreparePool(processes=2, tenant=None)
pool.submit([(1, b"Subject: quote request\\r\\n\\r\\nNeed a quote Dallas TX to Reno NV")])
assert pool.get(1) is not None
print(db.info.backend_pid, *[p.pid for p in pool.executor._processes.values()], flush=True)
time.sleep(600)
"""


def _conninfo() -> str:
    db = connection.settings_dict
    return psycopg.conninfo.make_conninfo(host=db["HOST"], port=db["PORT"], user=db["USER"],
                                          password=db["PASSWORD"] or None, dbname=db["NAME"])


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # dead, not yet reaped
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_the_workers_die_with_a_killed_poller_and_free_its_locks(how: signal.Signals) -> None:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tms.settings", PYTHONPATH=str(ROOT))
    poller = subprocess.Popen([sys.executable, "-c", POLLER, _conninfo()], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        line = poller.stdout.readline() if poller.stdout else ""
        backend, *workers = (int(word) for word in line.split())
        assert len(workers) == 2
        with psycopg.connect(_conninfo(), autocommit=True) as watch:
            held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted"
            assert watch.execute(held, [LOCK_KEY]).fetchone() == (1,)

            poller.send_signal(how)
            poller.wait(timeout=30)

            deadline = time.monotonic() + 60  # a bound, not a measure: it takes well under a second
            while time.monotonic() < deadline and watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [backend]
            ).fetchone() != (0,):
                time.sleep(0.1)
            assert watch.execute(held, [LOCK_KEY]).fetchone() == (0,)  # a second intake may take it
            assert watch.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                 [backend]).fetchone() == (0,)
        while time.monotonic() < deadline and not all(_gone(pid) for pid in workers):
            time.sleep(0.1)
        assert all(_gone(pid) for pid in workers)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait()
        for pid in workers:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def _sockets(items: Any, prefix: Any, rules: Any, preparers: Any = ()) -> Any:
    """A worker's answer: how many socket descriptors it holds."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed since
            count += stat.S_ISSOCK(os.fstat(int(name)).st_mode)
    return [(pk, Prepared(digest=b"", noise=None, classification=count)) for pk, _ in items]


def test_the_workers_hold_none_of_the_pollers_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "_prepare", _sockets)
    connection.ensure_connection()  # this process's database connection: a socket the fork copies
    assert _sockets([(1, b"")], None, None)[0][1].classification >= 1

    with PreparePool(processes=1, tenant=None) as pool:
        pool.submit([(1, b"Subject: hi")])
        answer = pool.get(1)

    assert answer is not None and answer.classification == 0


def test_its_workers_start_when_it_is_made_with_what_they_inherit_frozen() -> None:
    # Forked at once (not at the first submit), they warm up while the poller stores its first
    # batch; their collector leaves the inherited objects alone, the poller's collects as before.
    with PreparePool(processes=2, tenant=None) as pool:
        assert pool.executor is not None
        assert len(pool.executor._processes) == 2  # type: ignore[attr-defined]
        assert gc.get_freeze_count() == 0
        assert pool.executor.submit(gc.get_freeze_count).result(timeout=60) > 10_000


def _for_pass_here(answers: Any) -> None:
    """for_pass in this process or thread: (no pool?, the warnings it logged)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    logging.getLogger(prepare.__name__).addHandler(handler)
    try:
        pool = PreparePool.for_pass(new=1000, tenant=None)
        if pool is not None:
            with pool:
                pool.submit([(1, b"Subject: hi\r\n\r\nquote please")])
                pool.get(1)
    finally:
        logging.getLogger(prepare.__name__).removeHandler(handler)
    answers.put((pool is None, [record.getMessage() for record in records]))


def test_it_starts_no_workers_in_a_daemonic_process() -> None:
    # As in a Celery prefork child, which may not have children.
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_for_pass_here, args=(answers,), daemon=True)
    child.start()
    try:
        assert answers.get(timeout=60) == (True, [])
    finally:
        child.join(timeout=30)


def test_it_starts_workers_only_from_the_main_thread() -> None:
    # mailbox idle polls from many threads: no pool each, forked from a many-threaded process.
    answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
    thread = threading.Thread(target=_for_pass_here, args=(answers,))
    thread.start()
    thread.join()
    assert answers.get_nowait() == (True, [])

    _for_pass_here(answers)  # the main thread may
    assert answers.get_nowait() == (False, [])


def _interrupt_the_poller(items: Any, prefix: Any, rules: Any, preparers: Any = ()) -> Any:
    os.kill(os.getppid(), signal.SIGUSR1)  # Celery's soft time limit signal, while the poller waits
    time.sleep(120)


def test_the_pool_never_swallows_a_soft_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery's SoftTimeLimitExceeded is raised wherever the poller is when SIGUSR1 comes: in get()
    waiting for the chunk, or still in submit() if the worker is that quick. Neither may take it for
    a pool failure and carry on classifying in-process."""
    monkeypatch.setattr(prepare, "_prepare", _interrupt_the_poller)

    def soft_time_limit(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGUSR1, soft_time_limit)
    try:
        with PreparePool(processes=1, tenant=None) as pool, pytest.raises(SoftTimeLimitExceeded):
            pool.submit([(1, b"Subject: hi\r\n\r\nquote please")])
            pool.get(1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
