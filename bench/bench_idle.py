"""Idle polling: 1,000 read-enabled mailboxes with no new mail, one beat cycle on 2 worker processes;
then IDLE mode: no polling, and new mail stored within seconds.

    .venv/bin/python -m bench idle [--quick]

Set-up: M Dovecot accounts (one passwd-file each, the test bed's add_user) and M mailbox rows
(IMAP over TLS, read-enabled, action "nothing"). A first, untimed cycle makes each mailbox's
folder cursor (the first poll of a mailbox searches the recent window); the timed cycle is the
steady state: nothing new anywhere.

- ours, one beat cycle: a real Celery worker (`celery -A tms worker --concurrency 2`, prefork, on
  the test bed's Redis), started and ready beforehand. The clock starts when the beat task
  `mailboxes.poll_due_mailboxes` is sent, and stops when every mailbox row says it was polled
  (last_polled_at) after that. The beat queues chunk tasks; each claims up to polling.CHUNK due
  mailboxes, those whose connection its process keeps first (mailboxes/polling.py). New logins
  per cycle are counted in Dovecot's log ("imap-login: Info: Login:").
- baseline: the least a stateless poller can do per mailbox - connect, TLS, LOGIN, SELECT INBOX,
  LOGOUT with imapclient - over the same accounts in 2 processes.
- IMAP commands per mailbox: one idle poll of one mailbox by a chunk in this process, on a kept
  connection, counting the commands imaplib sends (each is one round trip); a mailbox whose
  connection is new adds TCP + TLS + CAPABILITY, LOGIN and ENABLE.
- IDLE mode: `manage.py mailbox idle` over K mailboxes (the others disabled); after its catch-up
  polls, a quiet window in which no mailbox may be polled, then messages APPENDed one at a time
  to different mailboxes, timed from the APPEND until the InboundMessage row exists.
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import multiprocessing
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT, App, Options, Table, Testbed, group_stop, median, ratio, write_result

PASSWORD = "idle-pass"


def address(i: int) -> str:
    return f"idle{i:04d}@example.test"


# ----------------------------------------------------------------------------- baseline


def _login_select(args: tuple[int, str, list[str]]) -> int:
    import ssl

    from imapclient import IMAPClient

    port, ca, addresses = args
    context = ssl.create_default_context(cafile=ca)
    for addr in addresses:
        client = IMAPClient("127.0.0.1", port=port, ssl=True, ssl_context=context, timeout=30)
        client.login(addr, PASSWORD)
        client.select_folder("INBOX")
        client.logout()
    return len(addresses)


def _noop(_: int) -> int:
    return os.getpid()


def baseline(tb: Testbed, m: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    addresses = [address(i) for i in range(m)]
    jobs = [(tb.dovecot.imaps_port, str(tb.certs.ca), addresses[k::2]) for k in range(2)]
    with ctx.Pool(2) as pool:
        pool.map(_noop, [0, 1])
        began = time.perf_counter()
        assert sum(pool.map(_login_select, jobs, chunksize=1)) == m
        return time.perf_counter() - began


# ----------------------------------------------------------------------------- ours


def count_commands(mailbox_id: int) -> Counter[str]:
    """The IMAP commands of one idle poll of one mailbox by a chunk (imaplib sends each and waits)."""
    from mailboxes import polling
    from mailboxes.models import Mailbox
    from mailboxes.reading import mailbox_poll

    def unexpected(_: object = None) -> None:
        raise RuntimeError(f"mailbox {mailbox_id}: not idle")

    seen: Counter[str] = Counter()
    original = imaplib.IMAP4._command  # type: ignore[attr-defined]

    def counting(self: imaplib.IMAP4, name: str, *args: Any) -> Any:
        seen[name] += 1
        return original(self, name, *args)

    mailbox_poll(mailbox_id=mailbox_id, explicit=True)  # logs in; the connection is kept (sessions.py)
    Mailbox.unscoped.filter(pk=mailbox_id).update(next_poll_at=None)  # the only one due
    imaplib.IMAP4._command = counting  # type: ignore[attr-defined]
    try:
        out = polling.mailboxes_poll_chunk(hand_off=unexpected, more=unexpected)
    finally:
        imaplib.IMAP4._command = original  # type: ignore[attr-defined]
    if out.idle != [mailbox_id]:
        raise RuntimeError(f"chunk poll of mailbox {mailbox_id}: {out}")
    return seen


def logins(tb: Testbed) -> int:
    """IMAP logins so far, from Dovecot's log."""
    return tb.dovecot.log.read_text(errors="replace").count("imap-login: Info: Login: user=<")


class Worker:
    """celery -A tms worker --concurrency 2 (prefork), our child, stopped by its pid."""

    def __init__(self, app: App, keep: int) -> None:
        self.log = app.log("idle-celery")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "celery", "-A", "tms", "worker", "--concurrency", "2", "--pool", "prefork",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
             "--hostname", f"bench{os.getpid()}@localhost"],
            env={**app.env, "LOG_LEVEL": "WARNING", "MAILBOX_IMAP_KEEP_CONNECTIONS": str(keep)},
            cwd=ROOT, stdout=open(self.log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        from tms.celery import app as celery_app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                if celery_app.control.ping(timeout=0.5):
                    return
            time.sleep(0.2)
        raise RuntimeError("celery worker not ready")

    def children_rss_mb(self) -> list[float]:
        """Resident memory of the pool's processes (they hold the kept connections), from /proc."""
        sizes = []
        for pid in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def stop(self) -> None:
        """A warm shutdown, as `docker stop` (SIGTERM to the main process only) does: the tasks
        running finish, and with them the locks they hold are released. SIGTERM to the whole group
        reached the pool's children too, which Celery leaves at SIGTERM's default: a chunk that had
        just recorded its mailboxes as polled died before releasing their locks, and the next cycle
        skipped them for the locks' 2 minutes (the restart cycle then never finished)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(60)
        group_stop(self.proc)  # whatever is left (nothing after a warm shutdown)


def cycle(ids: list[int], timeout: float = 600) -> float:
    """One beat: the scheduler task sent to the worker; seconds until every mailbox was polled."""
    from django.utils import timezone

    from mailboxes.models import Mailbox
    from mailboxes.tasks.poll import poll_due_mailboxes

    Mailbox.unscoped.filter(pk__in=ids).update(next_poll_at=None)
    began_at = timezone.now()
    began = time.perf_counter()
    poll_due_mailboxes.delay()
    while time.perf_counter() - began < timeout:
        pending = Mailbox.unscoped.filter(pk__in=ids).exclude(last_polled_at__gte=began_at).count()
        if pending == 0:
            return time.perf_counter() - began
        time.sleep(0.05)
    raise RuntimeError(f"cycle not done after {timeout} s: {_stuck(ids, began_at)}")


def _stuck(ids: list[int], began_at: Any) -> str:
    """Why a cycle did not finish: the mailboxes not polled since it began, by what their rows and
    their poll locks say."""
    from mailboxes import locks
    from mailboxes.models import Mailbox

    rows = list(Mailbox.unscoped.filter(pk__in=ids).exclude(last_polled_at__gte=began_at)
                .values("pk", "status", "next_poll_at", "last_error"))
    locked = 0
    for row in rows:  # taken for a second and given back at once: only a lock someone holds refuses
        lock = locks.acquire(locks.mailbox_poll_key(row["pk"]), ttl=1)
        if lock is None:
            locked += 1
        else:
            locks.release(lock)
    errors = Counter(row["last_error"][:120] for row in rows if row["last_error"])
    due_later = sum(1 for row in rows if row["next_poll_at"] and row["next_poll_at"] > began_at)
    return (f"{len(rows)} of {len(ids)} not polled; {locked} locked; {due_later} claimed (next poll set); "
            f"statuses {dict(Counter(row['status'] for row in rows))}; errors {dict(errors.most_common(3))}")


# ----------------------------------------------------------------------------- IDLE


def idle_mode(app: App, ids: list[int], quiet_seconds: float, messages: int) -> dict[str, Any]:
    from email import message_from_bytes

    from django.utils import timezone

    from mailboxes.models import InboundMessage, Mailbox
    from mailboxes.reading import normalise_message_id
    from tests.testbed.dovecot import make_message

    watched = set(ids)
    log = app.log("idle-supervisor")
    started_at = timezone.now()
    proc = subprocess.Popen([PYTHON, str(ROOT / "manage.py"), "mailbox", "idle", "--max-connections",
                             str(len(ids) + 1), "--refresh", "3600"], env=app.env, cwd=ROOT,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
    try:
        began = time.perf_counter()
        while Mailbox.unscoped.filter(pk__in=watched).exclude(last_polled_at__gte=started_at).exists():
            if proc.poll() is not None or time.perf_counter() - began > 120:
                raise RuntimeError(f"mailbox idle: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(1.0)  # the last catch-up polls finish
        caught_up = time.perf_counter() - began
        before = dict(Mailbox.unscoped.filter(pk__in=watched).values_list("pk", "last_polled_at"))
        time.sleep(quiet_seconds)
        after = dict(Mailbox.unscoped.filter(pk__in=watched).values_list("pk", "last_polled_at"))
        polled_while_quiet = sum(1 for pk in watched if after[pk] != before[pk])
        latencies = []
        rows = list(Mailbox.unscoped.filter(pk__in=watched).order_by("pk").values_list("pk", "email_address"))
        for k in range(messages):
            pk, addr = rows[(k * 7) % len(rows)]
            raw = make_message("shipper@customer.example", addr, f"Quote request {k}: 2 pallets Dallas to Denver")
            mid = normalise_message_id(str(message_from_bytes(raw)["Message-ID"]))
            t0 = time.perf_counter()
            app.tb.dovecot.append(addr, raw, password=PASSWORD)
            while not InboundMessage.unscoped.filter(mailbox_id=pk, message_id=mid).exists():
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"IDLE: message {k} not stored after 30 s")
                time.sleep(0.01)
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.2)
    finally:
        group_stop(proc)
    return {"mailboxes": len(ids), "catch_up_seconds": caught_up, "quiet_seconds": quiet_seconds,
            "polled_while_quiet": polled_while_quiet, "latencies": latencies,
            "latency_p50": median(latencies), "latency_max": max(latencies)}


# ----------------------------------------------------------------------------- the benchmark


def run(app: App, opts: Options) -> dict[str, Any]:
    from mailboxes.models import Mailbox
    from tests.factories import make_staff, make_tenant

    tb = app.tb
    m = 200 if opts.quick else 1_000
    k = 20 if opts.quick else 50
    Mailbox.unscoped.update(status="disabled")  # other benchmarks' mailboxes stay out of the cycle
    tenant = make_tenant(slug="idle", name="Idle Bench")
    staff = make_staff(tenant, "idle-owner@bench.example", name="Idle Owner")
    began = time.perf_counter()
    for i in range(m):
        tb.dovecot.add_user(address(i), PASSWORD)
    rows = [Mailbox(tenant=tenant, staff=staff, provider="imap", email_address=address(i), status="active",
                    imap_host="127.0.0.1", imap_port=tb.dovecot.imaps_port, imap_security="ssl",
                    smtp_host="127.0.0.1", smtp_port=tb.smtp.submission_port, smtp_security="starttls",
                    username=address(i), secret=PASSWORD, permission="send_and_read", post_processing="nothing")
            for i in range(m)]
    Mailbox.unscoped.bulk_create(rows, batch_size=500)
    ids = list(Mailbox.unscoped.filter(tenant=tenant).order_by("pk").values_list("pk", flat=True))
    print(f"idle: {m} accounts and mailboxes in {time.perf_counter() - began:.1f} s", flush=True)

    base_s = baseline(tb, m)
    # Kept IMAP connections per worker process (mailboxes/sessions.py): room for every mailbox, as
    # a chunk takes the mailboxes its process keeps first, each child ends up holding about half
    # (plus the ones it took from the other when it ran out of its own). The testbed Dovecot allows
    # 2,500 TLS sessions (tests/testbed/dovecot.py).
    keep = m
    worker = Worker(app, keep)
    cycle_logins: list[int] = []
    try:
        worker.wait_ready()
        rss_ready = worker.children_rss_mb()
        before = logins(tb)
        first = cycle(ids)  # cursors made: the first poll of each mailbox searches its window
        # The first poll of a mailbox (no cursor) is handed to a poll task of its own: a cycle is
        # over when the row says so, which that task does.
        steady = []
        for _ in range(4):
            before = logins(tb)
            steady.append(cycle(ids))
            cycle_logins.append(logins(tb) - before)
        rss = worker.children_rss_mb()
        # A worker restart (a deploy): the cursors are there, every connection is new.
        worker.stop()
        worker = Worker(app, keep)
        worker.wait_ready()
        before = logins(tb)
        restart = cycle(ids)
        restart_logins = logins(tb) - before
    finally:
        worker.stop()
    from mailboxes.models import FolderCursor

    cursors = FolderCursor.objects.filter(mailbox_id__in=ids).count()
    errors = Mailbox.unscoped.filter(pk__in=ids).exclude(last_error="").count()
    commands = count_commands(ids[0])
    per_mailbox = sum(commands.values())
    cycle_s = median(steady[1:])  # the first steady cycle still opens the connections of the first

    Mailbox.unscoped.filter(pk__in=ids[k:]).update(status="disabled")
    idle = idle_mode(app, ids[:k], quiet_seconds=3.0 if opts.quick else 10.0, messages=5 if opts.quick else 10)

    table = Table(f"Idle polling: {m} mailboxes, no new mail, 2 worker processes",
                  ["what", "seconds per cycle", "ms per mailbox", "IMAP commands per mailbox"])
    table.add("ours: one beat cycle (Celery, 2 processes), steady state (median of cycles 3-5)", cycle_s,
              1000 * cycle_s / m, per_mailbox)
    table.add("ours: first cycle (cursors made)", first, 1000 * first / m, "-")
    table.add(f"ours: cycles 2, 3, 4, 5 (up to {keep} kept connections per process)",
              ", ".join(f"{c:.1f}" for c in steady), "", "")
    table.add("ours: new logins in cycles 2, 3, 4, 5", ", ".join(str(n) for n in cycle_logins), "", "")
    table.add("ours: resident memory of the 2 worker processes, MB (ready -> after the cycles)",
              f"{', '.join(f'{r:.0f}' for r in rss_ready)} -> {', '.join(f'{r:.0f}' for r in rss)}", "", "")
    table.add(f"ours: the cycle after a worker restart (every connection new: {restart_logins} logins)", restart,
              1000 * restart / m, "")
    table.add("baseline: connect+TLS+LOGIN+SELECT+LOGOUT, 2 processes", base_s, 1000 * base_s / m, 4)
    table.add("ratio ours / baseline", f"{ratio(cycle_s, base_s):.2f}x", "", "")
    table.print()
    idle_table = Table(f"IDLE mode (`manage.py mailbox idle`, {k} mailboxes)", ["what", "value"])
    idle_table.add(f"mailboxes polled during {idle['quiet_seconds']:.0f} s without mail", idle["polled_while_quiet"])
    idle_table.add("APPEND -> InboundMessage row, median s", idle["latency_p50"])
    idle_table.add("APPEND -> InboundMessage row, max s", idle["latency_max"])
    idle_table.print()
    print(f"idle: commands of one idle poll: {dict(commands)}; cursors {cursors}/{m}; errors {errors}", flush=True)
    path = write_result("idle", {
        "mailboxes": m, "cycle_seconds": steady, "first_cycle_seconds": first, "cycle_logins": cycle_logins,
        "steady_cycle_seconds": cycle_s, "restart_cycle_seconds": restart, "restart_cycle_logins": restart_logins,
        "worker_rss_mb": rss, "worker_rss_ready_mb": rss_ready,
        "baseline_seconds": base_s,
        "imap_commands_per_poll": dict(commands), "cursors": cursors, "mailbox_errors": errors,
        "celery": "celery -A tms worker --concurrency 2 --pool prefork, Redis broker", "idle": idle,
        "kept_connections_per_process": keep, "load_average": os.getloadavg(),
        "table": table.render() + "\n" + idle_table.render(),
    })
    Mailbox.unscoped.filter(tenant=tenant).update(status="disabled")
    return {"table": table.render() + "\n" + idle_table.render(), "json": str(path)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with Testbed() as tb:
        run(App(tb), Options(quick=args.quick))


if __name__ == "__main__":
    main()
