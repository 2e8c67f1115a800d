"""Crash and restart: every message processed exactly once, and post-processed exactly when processed.

quick: 100 messages in Dovecot, the poll "dies" (a BaseException, the lock left held as a killed worker
       leaves it) right after a batch's intake committed and before its archive MOVE; the next poll, once
       the lock has expired, repairs it.
slow:  2,000 messages in four Dovecot mailboxes read by real `celery -A tms worker` processes on the test
       bed's Redis and PostgreSQL; a worker is killed with SIGKILL mid-ingest and another started; Dovecot,
       PostgreSQL and Redis are each restarted mid-run. Polls keep coming (this test plays beat) until two
       consecutive passes find nothing new.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connection

from mailboxes import reading
from mailboxes.models import InboundMessage, Mailbox
from tests.mailboxes.reading_support import make_reader
from tests.reliability.ingest import account, append_many
from tests.reliability.support import summary
from tms.accounts.models import Staff

ROOT = Path(__file__).resolve().parents[2]


class Crash(BaseException):
    """The process dies here: nothing after this line runs, no except clause catches it."""


def poll_until_quiet(boxes: list[Mailbox], *, limit: int = 20) -> int:
    """Poll every mailbox until two consecutive passes find nothing new and apply nothing; the passes run."""
    quiet = 0
    for passes in range(1, limit + 1):
        results = [reading.mailbox_poll(mailbox_id=box.pk, explicit=True) for box in boxes]
        errors = [r.error or r.skipped for r in results if r.error or r.skipped]
        busy = any(r.new or r.post_processed or r.failed for r in results) or errors
        quiet = 0 if busy else quiet + 1
        if quiet == 2:
            return passes
    raise AssertionError(f"still not quiet after {limit} passes: {errors}")


@pytest.fixture
def ingest_settings(settings: Any, dovecot: Any) -> Any:
    settings.MAILBOX_ALLOW_PRIVATE_HOSTS = True
    settings.MAILBOX_CA_FILE = str(dovecot.certs.ca)
    settings.REDIS_URL = ""
    settings.MAILBOX_INITIAL_WINDOW_DAYS = 7
    return settings


def test_it_repairs_a_crash_between_commit_and_post_processing(
    ingest_settings: Any, dovecot: Any, bob: Staff, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ingest_settings.MAILBOX_FETCH_BATCH = 25
    ingest_settings.MAILBOX_ACTION_BATCH = 25    # the action after each batch: batch 1 archived, 2 not
    ingest_settings.MAILBOX_POLL_LOCK_TTL = 2
    box = make_reader(bob, dovecot, post_processing=Mailbox.PostProcessing.ARCHIVE)
    appended = append_many(dovecot, box.email_address, 0, 100)
    started = time.monotonic()

    original = reading.messages_post_process
    calls = {"n": 0}

    def dies_at_the_second_batch(**kwargs: Any) -> int:
        # Count only the calls for freshly stored batches (the repair pass passes no message ids).
        if kwargs.get("message_ids") is not None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise Crash
        return original(**kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(reading, "messages_post_process", dies_at_the_second_batch)
        mp.setattr(reading.locks, "release", lambda lock: None)     # a killed worker releases nothing
        with pytest.raises(Crash):
            reading.mailbox_poll(mailbox_id=box.pk, explicit=True)
    rows = InboundMessage.unscoped.filter(mailbox=box)
    committed = rows.filter(status__in=["processed", "ignored"]).count()
    unarchived = rows.filter(status__in=["processed", "ignored"], post_processed_at__isnull=True).count()
    assert committed == 50 and unarchived == 25       # batch 2 committed, its MOVE never ran

    assert reading.mailbox_poll(mailbox_id=box.pk, explicit=True).skipped == "locked"
    time.sleep(2.2)                                    # the dead poller's lock expires
    passes = poll_until_quiet([box])
    result = account(dovecot, [box], appended)
    summary(capsys, result.line("crash-restart quick") + f"; crash after batch 2's commit, {unarchived} "
                    f"repaired, {passes} polls to quiet, {time.monotonic() - started:.1f} s")
    assert result.ok, result


# ----------------------------------------------------------------------------- the slow one: real workers


class Workers:
    """`celery -A tms worker` subprocesses, each in its own process group (killed by its id)."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("celery")), "-A", "tms", "worker", "-n", f"{name}@%h",
             "--concurrency", "2", "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc, signal.SIGTERM)
            if proc.poll() is None:
                self.kill(proc)


def _db(call: Callable[[], Any]) -> Any:
    """An ORM call that survives the PostgreSQL restart (the connection is re-opened)."""
    for _ in range(60):
        try:
            return call()
        except OperationalError:
            connection.close()
            time.sleep(0.5)
    return call()


@contextlib.contextmanager
def beat(send: Callable[[], None], stop: threading.Event) -> Iterator[None]:
    def run() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):     # Redis restarting: the next beat will do
                send()
            stop.wait(1.0)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_processes_each_message_exactly_once_through_worker_kills_and_server_restarts(
    ingest_settings: Any, dovecot: Any, redis_server: Any, postgres_server: Any, bob: Staff,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from celery import Celery
    from django.conf import settings as django_settings

    db = django_settings.DATABASES["default"]
    if int(db["PORT"]) != postgres_server.port:
        pytest.skip("the test database is not the test bed's PostgreSQL (TEST_DATABASE_URL?)")
    ingest_settings.REDIS_URL = redis_server.url
    ingest_settings.MAILBOX_FETCH_BATCH = 50
    boxes = [make_reader(bob, dovecot, post_processing=Mailbox.PostProcessing.ARCHIVE) for _ in range(4)]
    per_box = 500
    appended: list[str] = []
    for index, box in enumerate(boxes):                   # the first half before the workers start
        appended += append_many(dovecot, box.email_address, index * per_box, per_box // 2)

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tms.settings", "PYTHONPATH": str(ROOT),
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "CELERY_BROKER_URL": redis_server.url, "REDIS_URL": redis_server.url,
           "SECRET_KEY": django_settings.SECRET_KEY,
           "FIELD_ENCRYPTION_KEYS": ",".join(django_settings.FIELD_ENCRYPTION_KEYS),
           "MAILBOX_ALLOW_PRIVATE_HOSTS": "true", "MAILBOX_CA_FILE": str(dovecot.certs.ca),
           "MAILBOX_FETCH_BATCH": "50", "MAILBOX_POLL_LOCK_TTL": "15", "MAILBOX_INITIAL_WINDOW_DAYS": "7",
           "LOG_LEVEL": "WARNING", "LOG_FORMAT": "plain", "METRICS_WORKER_PORT": "0"}
    for key in ("CELERY_TASK_ALWAYS_EAGER", "TEST_DATABASE_URL"):
        env.pop(key, None)
    workers = Workers(env, tmp_path)
    producer = Celery(broker=redis_server.url)
    producer.conf.broker_connection_retry_on_startup = True

    def send_polls() -> None:
        import redis

        if redis.Redis.from_url(redis_server.url, socket_timeout=2).llen("celery") < 8:
            for box in boxes:
                producer.send_task("mailboxes.poll_mailbox", args=[box.pk])

    def stored() -> int:
        return int(_db(lambda: InboundMessage.unscoped.filter(mailbox__in=boxes).count()))

    def wait_for(count: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while stored() < count:
            assert time.monotonic() < deadline, f"only {stored()} of {count} stored after {timeout} s"
            time.sleep(0.5)

    events: list[str] = []
    started = time.monotonic()
    stop = threading.Event()
    first = workers.start("w1")
    try:
        with beat(send_polls, stop):
            feeder = threading.Thread(target=lambda: appended.extend(
                mid for index, box in enumerate(boxes)
                for mid in append_many(dovecot, box.email_address, index * per_box + per_box // 2, per_box // 2)))
            feeder.start()
            wait_for(300)
            workers.kill(first)                              # SIGKILL mid-ingest, its pool children too
            events.append(f"kill -9 worker at {stored()} stored")
            workers.start("w2")
            wait_for(800)
            # Every message in before Dovecot restarts: an APPEND the restart cuts off would be the
            # test's own loss (its feeder dying), not ours. Ingest is still going on when it restarts.
            feeder.join(600)
            assert not feeder.is_alive() and len(appended) == 4 * per_box, "the feeder did not finish"
            dovecot.restart()
            events.append(f"Dovecot restarted at {stored()}")
            wait_for(1200)
            postgres_server.restart()
            connection.close()
            events.append(f"PostgreSQL restarted at {_db(stored)}")
            wait_for(1500)
            redis_server.restart()
            events.append(f"Redis restarted at {stored()}")
            wait_for(len(appended), timeout=900)
            # until the workers have processed and archived everything (or give up and let the polls below try)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and _db(lambda: InboundMessage.unscoped.filter(
                    mailbox__in=boxes, post_processed_at__isnull=True).exists()):
                time.sleep(1)
    finally:
        stop.set()
        workers.stop_all()
    ingest_seconds = time.monotonic() - started
    ingest_settings.MAILBOX_POLL_LOCK_TTL = 15
    time.sleep(1)
    connection.close()
    # A killed poller's Redis lock expires after its TTL: the quiet passes below wait it out if need be.
    deadline = time.monotonic() + 60
    passes = 0
    while True:
        try:
            passes = poll_until_quiet(boxes)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)
    result = account(dovecot, boxes, appended)
    summary(capsys, result.line("crash-restart") + f"; {'; '.join(events)}; workers' ingest {ingest_seconds:.0f} s, "
                    f"{passes} polls to quiet, {time.monotonic() - started:.0f} s in all")
    assert len(appended) == 4 * per_box
    assert result.ok, result
