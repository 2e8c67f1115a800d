"""What every benchmark shares: the test bed's servers, the app's database and settings, the corpus,
timing of child processes (wall time and peak RSS), tables and JSON results.

The benchmarks run in one process (`python -m bench`, see bench/__main__.py) that starts one
Testbed (Dovecot, aiosmtpd, PostgreSQL, Redis on loopback), migrates one throwaway database and
configures Django in itself for set-up and checks. What is measured runs in child processes
(`manage.py mailbox poll`, celery, gunicorn, the send clients, the baselines), with the same
environment as production would give them: DEBUG off, JSON logs at INFO, Redis for locks and the
broker. The aiosmtpd servers run in threads of this process: the clients being measured never
share a GIL with them.
"""

from __future__ import annotations

import contextlib
import email.utils
import grp
import json
import os
import platform
import pwd
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.testbed import Testbed  # noqa: E402
from tests.testbed.dovecot import Dovecot  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
MANAGE = str(ROOT / "manage.py")
RESULTS = ROOT / "bench" / "results"
CORPUS = ROOT / "tests" / "corpus" / "messages"
BASELINE_VENV = ROOT / "var" / "bench-venv"
DB_NAME = "tms_bench"


# ----------------------------------------------------------------------------- options


@dataclass
class Options:
    quick: bool = False
    full: bool = False
    profile: bool = False


# ----------------------------------------------------------------------------- corpus


def corpus_messages(count: int, tag: str) -> list[bytes]:
    """The 90 corpus messages repeated to `count`, each copy with its own Message-ID (tag + copy
    number), as a real mailbox would have them."""
    originals = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    out: list[bytes] = []
    copy = 0
    while len(out) < count:
        for raw in originals:
            if len(out) >= count:
                break
            prefix = b"<%s.%d." % (tag.encode(), copy)
            fixed = raw.replace(b"Message-ID: <", b"Message-ID: " + prefix, 1)
            fixed = fixed.replace(b"Message-Id: <", b"Message-Id: " + prefix, 1)
            if fixed == raw:  # no Message-ID at all: give it one
                fixed = b"Message-ID: %s%d@bench.example>\r\n" % (prefix, len(out)) + raw
            out.append(fixed)
        copy += 1
    return out


# ----------------------------------------------------------------------------- Dovecot mailboxes


def fill_maildir(dovecot: Dovecot, address: str, password: str, messages: Sequence[bytes]) -> float:
    """Put messages straight into the user's Maildir (new/), then let Dovecot index them (one
    SELECT). Much faster than APPEND (10,000 files in about a second) and what a delivery agent
    does. Returns the seconds Dovecot took to index (not part of any measurement)."""
    dovecot.add_user(address, password)
    with imap_login(dovecot, address, password) as client:  # creates the Maildir and the folders
        client.select_folder("INBOX")
    maildir = dovecot.maildir(address)
    uid, gid = (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid) if os.getuid() == 0 else (-1, -1)
    stamp = int(time.time())
    host = "bench"
    tmp, new = maildir / "tmp", maildir / "new"
    for index, raw in enumerate(messages):
        name = f"{stamp}.M{index}P{os.getpid()}.{host}"
        path = tmp / name
        path.write_bytes(raw)
        if uid >= 0:
            os.chown(path, uid, gid)
        path.rename(new / name)
    began = time.perf_counter()
    with imap_login(dovecot, address, password) as client:
        info = client.select_folder("INBOX")
        found = int(info[b"EXISTS"])
        if found < len(messages):
            raise RuntimeError(f"{address}: Dovecot sees {found} of {len(messages)} messages")
        # Fetch the headers once so Dovecot's cache file is built: every contestant then reads a
        # warm, indexed folder.
        client._imap.uid("FETCH", "1:*", "(RFC822.SIZE INTERNALDATE)")
    return time.perf_counter() - began


@contextlib.contextmanager
def imap_login(dovecot: Dovecot, address: str, password: str) -> Iterator[Any]:
    from imapclient import IMAPClient

    client = IMAPClient("127.0.0.1", port=dovecot.imaps_port, ssl=True,
                        ssl_context=dovecot.certs.client_context(), timeout=60)
    try:
        client.login(address, password)
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.logout()


def folder_count(dovecot: Dovecot, address: str, password: str, folder: str) -> int:
    with imap_login(dovecot, address, password) as client:
        if not client.folder_exists(folder):
            return 0
        return int(client.folder_status(folder, ["MESSAGES"])[b"MESSAGES"])


# ----------------------------------------------------------------------------- the app


class App:
    """The app's database in the test bed's PostgreSQL, migrated once, and Django set up in this
    process with the environment that the children get too (env)."""

    def __init__(self, tb: Testbed) -> None:
        from cryptography.fernet import Fernet

        self.tb = tb
        self.var = tb.workdir / "var"
        self.var.mkdir(exist_ok=True)
        pg = tb.postgres
        redis = tb.redis
        self.database_url = pg.url_for(DB_NAME)
        self.env: dict[str, str] = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_", "MAILBOX_"))},
            **tb.env(),
            "DJANGO_SETTINGS_MODULE": "tms.settings",
            "DEBUG": "0",
            "SECRET_KEY": "bench-" + Fernet.generate_key().decode(),
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "SECURE_SSL_REDIRECT": "0", "SESSION_COOKIE_SECURE": "0", "CSRF_COOKIE_SECURE": "0",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": redis.url_for(1),
            "REDIS_URL": redis.url_for(2),
            "MAILBOX_ALLOW_PRIVATE_HOSTS": "1",
            "MAILBOX_CA_FILE": str(tb.certs.ca),
            "VAR_DIR": str(self.var),
            "RELAY_SMTP_URL": f"smtp://127.0.0.1:{tb.smtp.sink_port}",
            "SITE_URL": "http://127.0.0.1:8000",
            "LOG_LEVEL": "INFO",
            "PYTHONPATH": str(ROOT),
        }
        pg.psql(f"DROP DATABASE IF EXISTS {DB_NAME}")
        pg.psql(f"CREATE DATABASE {DB_NAME}")
        began = time.perf_counter()
        self.manage("migrate", "--noinput", quiet=True)
        self.migrate_seconds = time.perf_counter() - began
        os.environ.update(self.env)
        import django

        django.setup()
        # This process hosts aiosmtpd (threads): its per-command INFO lines would cost the server time
        # that every send contestant then pays. The children log as production does.
        import logging

        for name in ("", "mail.log", "mailboxes", "shipments", "documents", "celery"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def manage(self, *args: str, quiet: bool = False, stdin: str | None = None) -> str:
        done = subprocess.run([PYTHON, MANAGE, *args], check=False, env=self.env, cwd=ROOT, capture_output=True,
                              text=True, input=stdin, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}")
        return done.stdout

    def log(self, name: str) -> Path:
        return self.tb.workdir / f"{name}.log"


# ----------------------------------------------------------------------------- timing


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str = ""
    stderr_tail: str = ""


def timed_child(cmd: Sequence[str], *, env: dict[str, str], log: Path | None = None, cwd: Path = ROOT,
                timeout: float = 3600) -> Run:
    """Run a child to its end: wall time, and the peak RSS of the largest process of its tree."""
    err = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    out_path = (log.with_suffix(".out") if log else None)
    out = open(out_path, "wb") if out_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        began = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=out, stderr=err)
        deadline = began + timeout
        peak_kb = 0
        polls = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
            if polls % 5 == 0:
                peak_kb = max(peak_kb, _tree_hwm_kb(proc.pid))
            polls += 1
            time.sleep(0.01)
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        for f in (err, out):
            if hasattr(f, "close"):
                f.close()  # type: ignore[union-attr]
    stdout = out_path.read_text(errors="replace") if out_path else ""
    tail = log.read_text(errors="replace")[-2000:] if log else ""
    # ru_maxrss is not the child's own: Linux carries the high-water mark of the image a process
    # replaced at exec into it, i.e. this (big) bench process's RSS at the fork. VmHWM is per
    # memory image: the largest of the child's and its descendants' while it ran, read every
    # ~50 ms (a high-water mark: only growth in the last 50 ms could be missed).
    return Run(seconds, (peak_kb or usage.ru_maxrss) / 1024, proc.returncode, stdout, tail)


def _tree_hwm_kb(pid: int) -> int:
    """The largest VmHWM (peak resident set, kB) of a process and its descendants now alive."""
    peak, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
                        break
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo += [int(child) for child in children.read().split()]
        except (OSError, ValueError):
            continue  # gone meanwhile
    return peak


def group_stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a child started with start_new_session=True, its whole process group: SIGTERM, then
    SIGKILL after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def http_wait(url: str, proc: subprocess.Popen[Any], timeout: float) -> bool:
    """True once `url` answers; False when `proc` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=2).read()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


# ----------------------------------------------------------------------------- output


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def add(self, *row: Any) -> None:
        self.rows.append(list(row))

    def render(self) -> str:
        cells = [[_fmt(c) for c in row] for row in [self.columns, *self.rows]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = [f"\n{self.title}", "| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |",
                 "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        for row in cells[1:]:
            lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        return "\n".join(lines)

    def print(self) -> None:
        print(self.render(), flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else 0.0


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for name, cmd in (("dovecot", ["/usr/sbin/dovecot", "--version"]), ("wrk", ["wrk", "--version"])):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=10)
            text = (done.stdout or done.stderr).strip()
            versions[name] = text.splitlines()[0] if text else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "date": email.utils.formatdate(localtime=True), **versions}


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **data}, indent=2, default=str) + "\n")
    return path


def ensure_wrk() -> str:
    """wrk from Debian (apt-get install -y wrk when missing)."""
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True, timeout=600)
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True, timeout=600)
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found


def ensure_baseline_venv() -> Path:
    """django-mailbox lives only in var/bench-venv (gitignored): never in the app's virtualenv."""
    python = BASELINE_VENV / "bin" / "python"
    marker = BASELINE_VENV / ".bench-ready"
    if not marker.exists():
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True, timeout=600)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "Django>=5.2,<5.3", "django-mailbox==4.10.1",
                        "psycopg[binary]>=3.2"], check=True, timeout=1200)
        marker.write_text("ok\n")
    return python
