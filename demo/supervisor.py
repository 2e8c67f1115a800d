"""What `manage.py demo` runs: local mail servers, the demo mailbox, web, worker and beat.

Order of start: the demo data (seed.py); the mail servers (mailservers.py, one child); the demo
mailbox connected to them (created once, pointed at the current ports after that); the sample mail
(loaded once per mailbox, samples.py); then web, a Celery worker and beat on the filesystem broker;
a first poll is queued at once, and beat polls every `poll_interval` seconds after that.

Every child runs in its own session (process group), so Ctrl-C reaches only this supervisor, which
then stops each group (SIGTERM, then SIGKILL after a grace period): a Celery worker's pool
processes go with it. Children write through a pipe that this process prefixes with their name.
SIGTERM and SIGHUP (a closed terminal) are handled like Ctrl-C; only a SIGKILL of the supervisor
leaves them running, and the next run then says which port is still taken.

MAILBOX_ALLOW_PRIVATE_HOSTS is switched on for this process and its children only: the local
servers listen on loopback without TLS (the setting's default stays off everywhere else).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from django.conf import settings
from django.core.exceptions import ValidationError

from mailboxes import services as mailbox_services
from mailboxes.models import Mailbox, Provider, Security
from tms.accounts.models import Staff, Tenant

from .samples import samples_load
from .seed import MAILBOX_OWNER

HOST = "127.0.0.1"
DEFAULT_PORTS = {"web": 8000, "imap": 8143, "smtp": 8587}
DEFAULT_POLL_INTERVAL = 10
# The local demo mailbox's login on the local servers (not a secret: it opens nothing but them).
MAILBOX_PASSWORD = "demo-mailbox"  # noqa: S105
STOP_GRACE_SECONDS = 15.0
START_TIMEOUT_SECONDS = 60.0


class Writer(Protocol):
    def write(self, text: str) -> Any: ...

    def flush(self) -> Any: ...


class DemoError(Exception):
    """The demo cannot start; str() says why and what to do."""


@dataclass(frozen=True)
class DemoOptions:
    web_port: int
    imap_port: int
    smtp_port: int
    poll_interval: int
    var_dir: Path

    @property
    def mail_dir(self) -> Path:
        return self.var_dir / "demo" / "mail"

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "demo" / "outbox"

    @property
    def samples_marker(self) -> Path:
        """Holds the id of the mailbox the sample mail was loaded for."""
        return self.var_dir / "demo" / "samples-loaded"


def port_taken(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def ports_check(options: DemoOptions) -> None:
    for what, port, flag in (("web", options.web_port, "--port"), ("IMAP", options.imap_port, "--imap-port"),
                             ("SMTP", options.smtp_port, "--smtp-port")):
        if port_taken(port):
            raise DemoError(f"port {port} on {HOST} ({what}) is in use: is the demo already running? "
                            f"Stop it, or choose another port with {flag}.")


# ----------------------------------------------------------------------------- the demo mailbox


def demo_mailbox_find(*, tenant: Tenant) -> Mailbox | None:
    return (Mailbox.objects.for_tenant(tenant)
            .filter(staff__email__iexact=MAILBOX_OWNER, email_address__iexact=MAILBOX_OWNER).first())


def demo_mailbox_connect(*, tenant: Tenant, options: DemoOptions) -> Mailbox:
    """Connect the mailbox owner's mailbox to the local servers (send and read, archive after
    processing), or point the existing one at the current ports. Logs in to both first."""
    mailbox = demo_mailbox_find(tenant=tenant)
    try:
        if mailbox is None:
            staff = Staff.objects.for_tenant(tenant).get(email__iexact=MAILBOX_OWNER)
            return mailbox_services.mailbox_connect_imap(
                staff=staff, email_address=MAILBOX_OWNER, imap_host=HOST, imap_port=options.imap_port,
                imap_security=Security.NONE, smtp_host=HOST, smtp_port=options.smtp_port,
                smtp_security=Security.NONE, username=MAILBOX_OWNER, password=MAILBOX_PASSWORD,
                permission=Mailbox.Permission.SEND_AND_READ, post_processing=Mailbox.PostProcessing.ARCHIVE,
                display_name=staff.name, authorized=True,
            )
        wanted: dict[str, Any] = {"imap_host": HOST, "imap_port": options.imap_port, "imap_security": Security.NONE,
                  "smtp_host": HOST, "smtp_port": options.smtp_port, "smtp_security": Security.NONE}
        changes: dict[str, Any] = {k: v for k, v in wanted.items() if getattr(mailbox, k) != v}
        if mailbox.provider == Provider.IMAP and (changes or mailbox.status == Mailbox.Status.ERROR):
            mailbox = mailbox_services.mailbox_update(mailbox=mailbox, password=MAILBOX_PASSWORD, **changes)
        return mailbox
    except ValidationError as exc:
        raise DemoError(f"the demo mailbox could not be connected to the local mail servers: "
                        f"{'; '.join(exc.messages)}") from None


# ----------------------------------------------------------------------------- child processes


class Children:
    """Started processes, each in its own process group, with their output prefixed by name."""

    def __init__(self, out: Writer) -> None:
        self.out = out
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.width = 6

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            list(argv), cwd=settings.BASE_DIR, env=env, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        thread = threading.Thread(target=self._pump, args=(name, proc), daemon=True, name=f"demo-{name}")
        thread.start()
        self._threads.append(thread)
        return proc

    def _pump(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            self.say(f"{name:<{self.width}}| {line.decode('utf-8', 'replace').rstrip()}")

    def say(self, text: str) -> None:
        with self._lock:
            try:
                self.out.write(text + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass

    def exited(self) -> list[tuple[str, int]]:
        return [(name, proc.returncode) for name, proc in self.procs.items() if proc.poll() is not None]

    def stop(self, *, last: Sequence[str] = (), grace: float = STOP_GRACE_SECONDS,
             force: Callable[[], bool] = lambda: False) -> None:
        """SIGTERM each child (it stops its own helpers: a Celery worker its pool) and wait up to
        `grace` seconds (less if force() turns true), the ones named in `last` only after the others
        (the mail servers outlive the worker's last poll); then SIGKILL whatever is left in each group."""
        deadline = time.monotonic() + grace
        first = {name: proc for name, proc in self.procs.items() if name not in last}
        then = {name: proc for name, proc in self.procs.items() if name in last}
        for phase in (first, then):
            for proc in phase.values():
                if proc.poll() is None:
                    proc.terminate()
            pending = dict(phase)
            while pending and time.monotonic() < deadline and not force():
                for name, proc in list(pending.items()):
                    if _group_gone(proc):
                        del pending[name]
                        self.say(f"demo  | {name} stopped")
                time.sleep(0.1)
        stubborn = [name for name, proc in self.procs.items() if not _group_gone(proc)]
        if stubborn:
            self.say(f"demo  | still running, killed: {', '.join(stubborn)}")
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=2)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session: the child leads its own group


def _group_gone(proc: subprocess.Popen[bytes]) -> bool:
    """No live process is left in the child's process group (zombies do not count: where PID 1
    does not reap orphans, a worker's exited pool process can stay <defunct> for good)."""
    proc.poll()  # reap the leader if it has exited
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():  # not Linux: ask the kernel whether the group has any member
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == proc.pid and state not in ("Z", "X"):
            return False
    return True


def wait_for(check: Callable[[], bool], *, what: str, children: Children, timeout: float = START_TIMEOUT_SECONDS,
             stopping: Callable[[], bool] = lambda: False) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if stopping():
            raise KeyboardInterrupt
        dead = children.exited()
        if dead:
            name, code = dead[0]
            raise DemoError(f"{name} exited with {code} before {what} was ready (see its output above)")
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.2)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own loopback URL)
            return 200 <= int(response.status) < 500
    except OSError:
        return False


# ----------------------------------------------------------------------------- the run


def child_env(options: DemoOptions) -> dict[str, str]:
    env = dict(os.environ)
    env["VAR_DIR"] = str(options.var_dir)
    env["MAILBOX_ALLOW_PRIVATE_HOSTS"] = "1"  # the local servers are on loopback (this run only)
    env["MAILBOX_POLL_INTERVAL"] = str(options.poll_interval)
    env.setdefault("SITE_URL", f"http://{HOST}:{options.web_port}")
    env["PYTHONUNBUFFERED"] = "1"
    env["DEMO_MAIL_USER"] = MAILBOX_OWNER
    env["DEMO_MAIL_PASSWORD"] = MAILBOX_PASSWORD
    return env


def commands(options: DemoOptions) -> dict[str, list[str]]:
    python, manage = sys.executable, str(settings.BASE_DIR / "manage.py")
    return {
        "mail": [python, "-m", "demo.mailservers", "--dir", str(options.mail_dir), "--outbox",
                 str(options.outbox_dir), "--host", HOST, "--imap-port", str(options.imap_port),
                 "--smtp-port", str(options.smtp_port)],
        "web": [python, manage, "runserver", f"{HOST}:{options.web_port}", "--noreload"],
        # No gossip/mingle/heartbeat: they need broadcast, which the filesystem broker lacks.
        "worker": [python, "-m", "celery", "-A", "tms", "worker", "-l", "info", "--concurrency", "2",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"],
        "beat": [python, "-m", "celery", "-A", "tms", "beat", "-l", "info",
                 "-s", str(options.var_dir / "celerybeat-schedule")],
    }


def demo_run(*, tenant: Tenant, options: DemoOptions, out: Writer,
             banner: Callable[[DemoOptions, Mailbox], None]) -> None:
    """Start everything, print the banner, run until SIGINT/SIGTERM/SIGHUP or a child dies, stop
    everything. Raises DemoError when it could not start or a child died."""
    ports_check(options)
    lock = _lock_var_dir(options)
    settings.MAILBOX_ALLOW_PRIVATE_HOSTS = True  # this process connects the mailbox (children: env)
    os.environ["MAILBOX_ALLOW_PRIVATE_HOSTS"] = "1"
    signals = {"count": 0}

    def on_signal(*_: Any) -> None:
        signals["count"] += 1

    # SIGHUP too: the children have sessions of their own, so a closed terminal reaches only us.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    children = Children(out)
    env = child_env(options)
    argv = commands(options)
    failed = ""
    try:
        mailbox = _start_mail(tenant=tenant, options=options, children=children, argv=argv["mail"], env=env,
                              stopping=lambda: signals["count"] > 0)
        for name in ("web", "worker", "beat"):
            children.start(name, argv[name], env)
        _queue_first_poll(mailbox, children)
        wait_for(lambda: http_ok(f"http://{HOST}:{options.web_port}/login/"), what="the web server",
                 children=children, stopping=lambda: signals["count"] > 0)
        banner(options, mailbox)
        while signals["count"] == 0:
            dead = children.exited()
            if dead:
                name, code = dead[0]
                failed = f"{name} exited with {code} (see its output above); the rest was stopped"
                children.say(f"demo  | {name} exited with {code}; stopping the rest")
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        pass
    finally:
        children.say("demo  | stopping ...")
        started = time.monotonic()
        children.stop(last=("mail",), force=lambda: signals["count"] > 1)  # a second Ctrl-C: no more waiting
        children.say(f"demo  | stopped ({time.monotonic() - started:.1f} s)")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.close()
    if failed:
        raise DemoError(failed)


def _start_mail(*, tenant: Tenant, options: DemoOptions, children: Children, argv: list[str], env: dict[str, str],
                stopping: Callable[[], bool]) -> Mailbox:
    """The mail servers, the demo mailbox connected to them, and the sample mail once per mailbox."""
    existing = demo_mailbox_find(tenant=tenant)
    marker = options.samples_marker.read_text().strip() if options.samples_marker.exists() else ""
    load_samples = existing is None or marker != str(existing.pk)
    if load_samples:
        # A new mailbox gets a fresh mail store: the sample mail once, nothing left from before.
        shutil.rmtree(options.mail_dir, ignore_errors=True)
    options.mail_dir.mkdir(parents=True, exist_ok=True)
    children.start("mail", argv, env)
    wait_for(lambda: port_taken(options.imap_port) and port_taken(options.smtp_port),
             what="the mail servers", children=children, stopping=stopping)
    mailbox = demo_mailbox_connect(tenant=tenant, options=options)
    if load_samples:
        count = samples_load(host=HOST, port=options.imap_port, username=MAILBOX_OWNER, password=MAILBOX_PASSWORD)
        options.samples_marker.write_text(f"{mailbox.pk}\n")
        children.say(f"demo  | {count} sample e-mails put in {MAILBOX_OWNER}'s INBOX")
    return mailbox


def _lock_var_dir(options: DemoOptions) -> IO[bytes]:
    """One demo per VAR_DIR: two would share the SQLite file and the mail store."""
    path = options.var_dir / "demo" / "run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("wb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DemoError(f"another demo is running on {options.var_dir}: stop it first, or set VAR_DIR "
                        f"to another directory") from None
    return handle


def _queue_first_poll(mailbox: Mailbox, children: Children) -> None:
    """Poll now rather than at beat's first tick (the poll's lock makes a double run harmless)."""
    if mailbox.status != Mailbox.Status.ACTIVE:
        children.say(f"demo  | the demo mailbox is {mailbox.get_status_display()}: it is not polled")
        return
    from mailboxes.tasks.poll import poll_mailbox

    poll_mailbox.delay(mailbox.pk)
