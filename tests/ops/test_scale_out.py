"""Scale-out: three Celery worker processes (as three hosts would run them) on one Redis broker and
one PostgreSQL ingest mail from Dovecot and send a queue to aiosmtpd.

Proven, from what the servers and the database saw rather than from what the workers say:
- every message is handled exactly once (rows, intake calls, SMTP arrivals, Message-IDs), although
  every poll and every delivery task is enqueued more than once;
- no mailbox is polled by two workers at once (the lock's holding intervals, recorded by
  tests/ops/scale_support.py inside the workers, never overlap for one mailbox);
- a mailbox's send limit holds across all workers (aiosmtpd's arrival times), with the throttle's
  window shortened to seconds (SCALE_THROTTLE_WINDOW) so the proof takes seconds, not minutes;
- each worker served its own metrics, and together they add up to the work done;
- the workers' logs are JSON lines with mailbox ids and without the mailbox password.

The quick variant runs by default; the full one (2,000 messages in, 1,000 out) is marked slow.
"""

from __future__ import annotations

import email.utils
import imaplib
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery import Celery
from django.conf import settings as django_settings
from django.db import connection

from mailboxes import sending
from mailboxes.models import InboundMessage, Mailbox, OutboundMessage
from tests.factories import make_staff, make_tenant
from tests.mailboxes.reading_support import PASSWORD as READ_PASSWORD
from tests.mailboxes.reading_support import make_reader, new_user
from tests.mailboxes.sending_support import PASSWORD as SEND_PASSWORD
from tests.mailboxes.sending_support import imap_mailbox
from tests.ops.test_metrics import samples, value

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
CONCURRENCY = 2


@dataclass(frozen=True)
class Size:
    read_mailboxes: int
    per_mailbox: int
    send_per_mailbox: tuple[int, ...]  # the last mailbox is the throttled one
    limit: int  # its send_per_minute
    window: float  # the throttle's "minute", in seconds, for this test
    timeout: float


QUICK = Size(read_mailboxes=5, per_mailbox=40, send_per_mailbox=(60, 60, 60, 24), limit=8, window=4.0, timeout=240)
FULL = Size(read_mailboxes=20, per_mailbox=100, send_per_mailbox=(100,) * 10, limit=20, window=5.0, timeout=900)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_message(to: str, n: int) -> bytes:
    m = EmailMessage()
    m["From"], m["To"] = "customer@shipper.test", to
    m["Subject"] = f"{('quote', 'pickup', 'operations', 'other')[n % 4]} load {n}"
    m["Date"] = email.utils.formatdate(localtime=True)
    m["Message-ID"] = f"<scale-{uuid.uuid4().hex}@shipper.test>"
    m.set_content(f"Load {n}, please.\n")
    return bytes(m)


def fill_inbox(dovecot: Any, address: str, count: int) -> None:
    """count APPENDs over one IMAP connection (as a delivery agent would put mail there)."""
    conn = imaplib.IMAP4_SSL("127.0.0.1", dovecot.imaps_port, ssl_context=dovecot.certs.client_context(), timeout=30)
    try:
        conn.login(address, READ_PASSWORD)
        for n in range(count):
            typ, data = conn.append("INBOX", None, imaplib.Time2Internaldate(time.time()), raw_message(address, n))
            assert typ == "OK", data
    finally:
        conn.logout()


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    output: Path
    metrics_port: int


@pytest.fixture
def workers_env(tmp_path: Path, redis_server: Any, certs: Any, settings: Any) -> dict[str, str]:
    """What each worker host is started with: the test database, one broker, one Redis, the test CA."""
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    broker, shared = redis_server.url_for(5), redis_server.url_for(6)
    for url in (broker, shared):
        redis.Redis.from_url(url).flushdb()
    settings.REDIS_URL = shared
    settings.MAILBOX_ALLOW_PRIVATE_HOSTS = True
    settings.MAILBOX_CA_FILE = str(certs.ca)
    logs = tmp_path / "events"
    logs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "tms.settings",
        "DEBUG": "1",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "SECRET_KEY": django_settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(django_settings.FIELD_ENCRYPTION_KEYS),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "REDIS_URL": shared,
        "MAILBOX_ALLOW_PRIVATE_HOSTS": "1",
        "MAILBOX_CA_FILE": str(certs.ca),
        "MAILBOX_INTAKE_HANDLERS": "tests.ops.scale_support.handle",
        "MAILBOX_MESSAGE_ID_DOMAIN": django_settings.MAILBOX_MESSAGE_ID_DOMAIN,
        "CELERY_WORKER_CONCURRENCY": str(CONCURRENCY),
        "SCALE_LOG_DIR": str(logs),
        "PYTHONPATH": str(ROOT),
    })
    return env


@pytest.fixture
def start_workers(tmp_path: Path, workers_env: dict[str, str]) -> Iterator[Any]:
    started: list[Worker] = []

    def start(window: float) -> list[Worker]:
        for i in range(1, WORKERS + 1):
            name = f"w{i}"
            prom = tmp_path / f"prom-{name}"
            prom.mkdir()
            port = free_port()
            env = {**workers_env, "SCALE_WORKER": name, "SCALE_THROTTLE_WINDOW": str(window),
                   "METRICS_WORKER_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(prom),
                   "VAR_DIR": str(tmp_path / f"var-{name}")}
            output = tmp_path / f"{name}.log"
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "celery"), "-A", "tms", "worker", "-n", f"{name}@%h",
                 "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--include", "tests.ops.scale_support"],
                cwd=ROOT, env=env, stdout=output.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            started.append(Worker(name, proc, output, port))
        deadline = time.monotonic() + 90
        for worker in started:
            while b" ready." not in worker.output.read_bytes():
                assert worker.proc.poll() is None, worker.output.read_text()[-3000:]
                assert time.monotonic() < deadline, worker.output.read_text()[-3000:]
                time.sleep(0.2)
        return started

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            os.killpg(worker.proc.pid, signal.SIGTERM)
    for worker in started:
        try:
            worker.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait(timeout=10)


def events(log_dir: Path) -> list[list[str]]:
    return [line.split() for f in sorted(log_dir.glob("*.log")) for line in f.read_text().splitlines() if line]


def wait_until(what: str, predicate: Any, timeout: float, workers: list[Worker]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for worker in workers:
            assert worker.proc.poll() is None, f"{worker.name} died:\n{worker.output.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def run_scale_out(size: Size, *, dovecot: Any, smtp_server: Any, start_workers: Any,
                  workers_env: dict[str, str]) -> None:
    # --- the work: mail waiting in Dovecot, a queue of outgoing mail
    readers_tenant = make_tenant("readers", "Readers Ltd")
    senders_tenant = make_tenant("senders", "Senders Ltd")
    reader_staff = make_staff(readers_tenant, "reader@readers.test")
    sender_staff = make_staff(senders_tenant, "sender@senders.test")
    readers = [make_reader(reader_staff, dovecot, new_user(dovecot)) for _ in range(size.read_mailboxes)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda m: fill_inbox(dovecot, m.email_address, size.per_mailbox), readers))
    expected_in = size.read_mailboxes * size.per_mailbox

    smtp_server.clear()
    senders = [imap_mailbox(sender_staff, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
               for _ in size.send_per_mailbox]
    throttled = senders[-1]
    Mailbox.unscoped.filter(pk=throttled.pk).update(send_per_minute=size.limit)
    throttled.refresh_from_db()
    outbound_ids = []
    for mailbox, count in zip(senders, size.send_per_mailbox, strict=True):
        for n in range(count):
            row = sending.message_queue(
                tenant=senders_tenant, staff=sender_staff, mailbox=mailbox, to=[f"rcpt{n}@example.net"],
                subject=f"Rate confirmation {n}", body_text="Please find the rate.\n", enqueue=False)
            outbound_ids.append(row.pk)
    expected_out = len(outbound_ids)
    sender_addresses = {m.email_address for m in senders}

    # --- three workers, then every task enqueued more than once
    workers = start_workers(size.window)
    client = Celery("scale-client", broker=workers_env["CELERY_BROKER_URL"])
    client.conf.task_serializer = "json"
    try:
        for _ in range(3):
            for mailbox in readers:
                client.send_task("mailboxes.poll_mailbox", args=[mailbox.pk])
        client.send_task("mailboxes.poll_due_mailboxes")
        for _ in range(2):
            for pk in outbound_ids:
                client.send_task("mailboxes.outbound_deliver", args=[pk])
    finally:
        client.close()

    def arrived() -> list[Any]:
        return [m for m in smtp_server.messages if m.mail_from in sender_addresses]

    wait_until("the ingest", lambda: InboundMessage.unscoped.filter(
        mailbox__in=readers, status=InboundMessage.Status.PROCESSED).count() >= expected_in, size.timeout, workers)
    wait_until("the send queue", lambda: OutboundMessage.unscoped.filter(
        pk__in=outbound_ids, status=OutboundMessage.Status.SENT).count() >= expected_out, size.timeout, workers)
    wait_until("the SMTP arrivals", lambda: len(arrived()) >= expected_out, 30, workers)
    time.sleep(2.0)  # anything still in flight (a duplicate) would land now

    # --- every message handled exactly once
    rows = InboundMessage.unscoped.filter(mailbox__in=readers)
    assert rows.count() == expected_in
    assert rows.values("message_id").distinct().count() == expected_in
    assert set(rows.values_list("status", flat=True)) == {InboundMessage.Status.PROCESSED}
    for mailbox in readers:
        assert rows.filter(mailbox=mailbox).count() == size.per_mailbox
    log_dir = Path(workers_env["SCALE_LOG_DIR"])
    all_events = events(log_dir)
    handled = [e[3] for e in all_events if e[2] == "handled"]
    assert len(handled) == expected_in and len(set(handled)) == expected_in, "a message was handled twice"

    received = arrived()
    assert len(received) == expected_out
    message_ids = [m.message_id for m in received]
    assert len(set(message_ids)) == expected_out, "a message was sent twice"
    assert set(message_ids) == set(OutboundMessage.unscoped.filter(pk__in=outbound_ids)
                                   .values_list("message_id", flat=True))

    # --- no mailbox polled by two workers at once
    intervals: dict[str, dict[str, list[float]]] = defaultdict(dict)
    refused = 0
    pollers = set()
    for worker, _pid, kind, key, token, what, at in (e for e in all_events if e[2] == "lock"):
        assert kind == "lock"
        if not key.startswith("mailbox-poll:"):
            continue
        if what == "refused":
            refused += 1
            continue
        intervals[key].setdefault(token, []).append(float(at))
        pollers.add(worker)
    # (filing Sent copies takes the senders' poll locks too: they are checked just the same)
    assert {f"mailbox-poll:{m.pk}" for m in readers} <= set(intervals)
    attempts = refused + sum(len(tokens) for tokens in intervals.values())
    assert attempts >= 3 * size.read_mailboxes  # every duplicate poll ran and met the lock
    for key, tokens in intervals.items():
        spans = sorted((times[0], times[1]) for times in tokens.values() if len(times) == 2)
        assert len(spans) == len(tokens), f"{key}: a lock was not released"
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"{key} was polled by two workers at once"
    assert len(pollers) >= 2, "the polls did not spread over the workers"

    # --- the send limit held across all workers: arrivals in any window (less a margin for the
    # time between reserving a send and its arrival) never exceed the limit
    times = sorted(m.received_at for m in received if m.mail_from == throttled.email_address)
    slack = 1.0
    span = size.window - slack
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t < start + span)
        assert in_window <= size.limit, f"{in_window} sends within {span} s; the limit is {size.limit}"
    windows_needed = math.ceil(len(times) / size.limit) - 1
    assert times[-1] - times[0] >= windows_needed * size.window - slack  # the throttle really held them back
    # the other mailboxes were not held back by it
    assert len(times) == size.send_per_mailbox[-1]

    # --- each worker host served its own metrics; together they add up to the work done
    fetched = sent = 0.0
    busy = 0
    for worker in workers:
        text = requests.get(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=10).text
        found = samples(text)
        worker_fetched = value(found, "tms_messages_fetched_total")
        worker_sent = value(found, "tms_outbound_sent_total", route="mailbox")
        fetched += worker_fetched
        sent += worker_sent
        busy += bool(worker_fetched or worker_sent)
    assert fetched == expected_in
    assert sent == expected_out
    assert busy == WORKERS, "a worker did nothing"

    # --- the workers' logs: JSON lines with ids, no password
    for worker in workers:
        text = worker.output.read_text()
        assert READ_PASSWORD not in text and SEND_PASSWORD not in text
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert lines, text[-2000:]
    polled = [line for w in workers for line in map(json.loads, filter(
        lambda x: x.startswith("{"), w.output.read_text().splitlines())) if "polled" in line["message"]]
    tenant_of = {m.pk: "readers" for m in readers} | {m.pk: "senders" for m in senders}
    assert {line.get("mailbox") for line in polled} >= {m.pk for m in readers}
    for line in polled:
        assert line.get("tenant") == tenant_of.get(line.get("mailbox")), line


@pytest.mark.django_db(transaction=True)
def test_three_workers_share_the_work_exactly_once(
    dovecot: Any, smtp_server: Any, start_workers: Any, workers_env: dict[str, str],
) -> None:
    run_scale_out(QUICK, dovecot=dovecot, smtp_server=smtp_server, start_workers=start_workers,
                  workers_env=workers_env)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_three_workers_ingest_2000_and_send_1000_exactly_once(
    dovecot: Any, smtp_server: Any, start_workers: Any, workers_env: dict[str, str],
) -> None:
    run_scale_out(FULL, dovecot=dovecot, smtp_server=smtp_server, start_workers=start_workers,
                  workers_env=workers_env)
