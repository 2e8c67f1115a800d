"""The README's run command, end to end: `manage.py demo` (what scripts/run.sh ends in) on a fresh
VAR_DIR and free ports, driven over HTTP and IMAP like a newcomer would, then stopped with Ctrl-C.

One demo run (module fixture) serves the checks; the last test runs it a second time on the same
VAR_DIR. Nothing here talks to the app in-process: the database is the demo's own SQLite file.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from imapclient import IMAPClient

from tests.testbed._proc import alive, children, free_port, log_tail, port_open

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
MAILBOX_LOGIN = ("dispatch@demo.example", "demo-mailbox")
SEEDED = {"SHP-000101", "SHP-000102", "SHP-000103"}
# Four of the twelve sample e-mails ask for a quote or a pickup; nothing else may make a shipment.
CREATED_FROM_MAIL = 4
START_TIMEOUT = 120.0
MAIL_TIMEOUT = 90.0
STOP_TIMEOUT = 40.0
# Settings the demo must not inherit from the test run (it is the embedded default, on its own).
_SCRUB = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "MAILBOX_ALLOW_PRIVATE_HOSTS", "MAILBOX_CA_FILE",
          "MAILBOX_POLL_INTERVAL", "SITE_URL", "RELAY_SMTP_URL", "EMAIL_BACKEND", "CELERY_TASK_ALWAYS_EAGER",
          "SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "MEDIA_ROOT", "METRICS_WORKER_PORT", "ALLOWED_HOSTS")

T = TypeVar("T")


@dataclass
class Ports:
    web: int
    imap: int
    smtp: int

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.web}"


@dataclass
class Run:
    """What one demo run showed before and after Ctrl-C."""

    log: Path
    pages: dict[str, str] = field(default_factory=dict)  # shipment number -> its page's text
    sent_subjects: list[str] = field(default_factory=list)
    archived: int = 0
    inbox: int = 0
    returncode: int | None = None
    family: list[int] = field(default_factory=list)  # the demo's processes just before Ctrl-C
    leftovers: list[int] = field(default_factory=list)
    ports_still_open: list[int] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


def demo_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(VAR_DIR=str(var_dir), DEBUG="1", DJANGO_SETTINGS_MODULE="tms.settings", PYTHONUNBUFFERED="1")
    return env


def wait_for(what: str, check: Callable[[], T | None], timeout: float, proc: subprocess.Popen[Any], log: Path,
             ) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"{what}: the demo exited with {proc.returncode}{log_tail(log, 40)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout:.0f} s{log_tail(log, 40)}")
        time.sleep(0.5)


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def login(ports: Ports) -> requests.Session:
    session = requests.Session()
    session.get(f"{ports.base}/login/", timeout=10)
    response = session.post(
        f"{ports.base}/login/", timeout=10, headers={"Referer": f"{ports.base}/login/"},
        data={"username": "dispatch@demo.example", "password": "demo-dispatch",
              "csrfmiddlewaretoken": session.cookies["csrftoken"]},
    )
    assert response.status_code == 200 and "/login/" not in response.url, "the dispatcher could not log in"
    return session


def shipment_links(session: requests.Session, ports: Ports) -> dict[str, str]:
    """Shipment number -> detail URL, from /shipments/ (the dispatcher's list, newest first)."""
    html = session.get(f"{ports.base}/shipments/", timeout=10).text
    links: dict[str, str] = {}
    for href, number in re.findall(r'href="(/shipments/[0-9a-f-]{36}/)"[^>]*>\s*(SHP-\d{6})', html):
        links.setdefault(number, href)
    if not links:  # the number may sit in another cell of the row: pair them by order instead
        hrefs = list(dict.fromkeys(re.findall(r'href="(/shipments/[0-9a-f-]{36}/)"', html)))
        numbers = list(dict.fromkeys(re.findall(r"SHP-\d{6}", html)))
        links = dict(zip(numbers, hrefs, strict=False))
    return links


def enough_shipments(session: requests.Session, ports: Ports) -> dict[str, str] | None:
    found = shipment_links(session, ports)
    return found if len(found) >= len(SEEDED) + CREATED_FROM_MAIL else None


def page_text(session: requests.Session, url: str) -> str:
    return session.get(url, timeout=10).text


def imap_count(ports: Ports, folder: str) -> int:
    client = IMAPClient(HOST, port=ports.imap, ssl=False, timeout=10)
    try:
        client.login(*MAILBOX_LOGIN)
        client.select_folder(folder, readonly=True)
        return len(client.search(["ALL"]))
    finally:
        client.logout()


def sent_subjects(ports: Ports) -> list[str]:
    client = IMAPClient(HOST, port=ports.imap, ssl=False, timeout=10)
    try:
        client.login(*MAILBOX_LOGIN)
        client.select_folder("Sent", readonly=True)
        uids = client.search(["ALL"])
        data = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]) if uids else {}
        return [bytes(d[b"BODY[HEADER.FIELDS (SUBJECT)]"]).decode().strip() for d in data.values()]
    finally:
        client.logout()


def start(var_dir: Path, ports: Ports, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "manage.py", "demo", "--port", str(ports.web), "--imap-port", str(ports.imap),
            "--smtp-port", str(ports.smtp), "--poll-interval", "5"]
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=demo_env(var_dir), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], ports: Ports, run: Run) -> None:
    """Ctrl-C (SIGINT to the supervisor alone, as the terminal would), then look for leftovers."""
    family = run.family = descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        run.returncode = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in family:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the demo did not stop within {STOP_TIMEOUT:.0f} s of Ctrl-C{log_tail(run.log, 40)}")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(pid) for pid in family):
        time.sleep(0.1)
    run.leftovers = [pid for pid in family if alive(pid)]
    for pid in run.leftovers:  # do not leak them into the rest of the test session
        os.kill(pid, signal.SIGKILL)
    run.ports_still_open = [p for p in (ports.web, ports.imap, ports.smtp) if port_open(p)]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    var_dir = tmp_path_factory.mktemp("demo-var")
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT,
                             env=demo_env(var_dir), capture_output=True, text=True, timeout=300, check=False)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    return var_dir


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports(web=free_port(), imap=free_port(), smtp=free_port())


@pytest.fixture(scope="module")
def first_run(demo_home: Path, ports: Ports) -> Iterator[Run]:
    run = Run(log=demo_home / "first-run.log")
    proc = start(demo_home, ports, run.log)
    try:
        wait_for("the web server", lambda: port_open(ports.web), START_TIMEOUT, proc, run.log)
        session = wait_for("the dispatcher's login", lambda: _try(lambda: login(ports)), START_TIMEOUT, proc,
                           run.log)
        links = wait_for("shipments from the sample mail", lambda: enough_shipments(session, ports), MAIL_TIMEOUT,
                         proc, run.log)
        # Documents are read by the worker after the mail is filed: wait until the BOL is matched.
        bol_url = ports.base + links["SHP-000101"]
        wait_for("the BOL matched to SHP-000101", lambda: "BOL_5521907.pdf" in page_text(session, bol_url),
                 MAIL_TIMEOUT, proc, run.log)
        time.sleep(6)  # one more poll cycle: nothing new may appear
        links = shipment_links(session, ports)
        run.pages = {number: page_text(session, ports.base + href) for number, href in links.items()}

        # A reply from the reefer quote's shipment page goes out through the worker and is filed in Sent.
        reefer = next(n for n, text in run.pages.items() if "Fresno" in text and n not in SEEDED)
        url = ports.base + links[reefer]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', run.pages[reefer])
        assert token is not None
        response = session.post(
            f"{url}reply/", timeout=10, headers={"Referer": url},
            data={"csrfmiddlewaretoken": token.group(1), "to": "priya.raman@sunvalleyproduce.example",
                  "subject": "", "body": "Hi Priya, $3,150 all in for the reefer. Shall I book it?"},
        )
        assert response.status_code == 200, response.text[-2000:]
        run.sent_subjects = wait_for("the reply in the local Sent folder", lambda: sent_subjects(ports),
                                     MAIL_TIMEOUT, proc, run.log)
        run.archived = imap_count(ports, "Archive")
        run.inbox = imap_count(ports, "INBOX")
    finally:
        stop(proc, ports, run)
    yield run


def _try(make: Callable[[], T]) -> T | None:
    try:
        return make()
    except (requests.RequestException, AssertionError, KeyError):
        return None


def numbers(run: Run) -> set[str]:
    return set(run.pages)


# ----------------------------------------------------------------------------- the first run


def test_it_creates_shipments_from_the_quote_and_pickup_mail(first_run: Run) -> None:
    created = numbers(first_run) - SEEDED
    assert numbers(first_run) >= SEEDED
    assert len(created) == CREATED_FROM_MAIL, sorted(numbers(first_run))
    places = {n: t for n, t in first_run.pages.items() if n in created}
    for city in ("Fresno", "Memphis", "Birmingham", "Savannah"):
        assert any(city in text for text in places.values()), f"no shipment from {city}"


def test_it_files_operations_mail_and_documents_on_the_right_shipments(first_run: Run) -> None:
    pages = first_run.pages
    assert "ETA on SHP-000101" in pages["SHP-000101"]
    assert "BOL_5521907.pdf" in pages["SHP-000101"]  # matched by the BOL number in the PDF's text
    assert "POD_SHP-000102.pdf" in pages["SHP-000102"]
    assert "Delivery appointment confirmed" in pages["SHP-000103"]
    reefer = next(t for n, t in pages.items() if "Fresno" in t and n not in SEEDED)
    assert "any update on this one" in reefer  # the follow-up, threaded by In-Reply-To
    for text in pages.values():  # the other mail is left alone
        for subject in ("Automatic reply", "Spot rates up 4%", "Parking lot resurfacing"):
            assert subject not in text


def test_it_archives_the_mail_it_read(first_run: Run) -> None:
    assert first_run.archived == 12 and first_run.inbox == 0


def test_it_files_a_reply_sent_from_a_shipment_in_the_local_sent_folder(first_run: Run) -> None:
    assert len(first_run.sent_subjects) == 1
    assert re.search(r"\[SHP-\d{6}\] Re: Rate request: reefer Fresno to Denver", first_run.sent_subjects[0])


def test_it_stops_every_process_it_started_on_ctrl_c(first_run: Run) -> None:
    assert first_run.returncode == 0, log_tail(first_run.log, 40)
    assert len(first_run.family) >= 5, "mail, web, beat, and the worker with its pool"
    assert first_run.leftovers == []
    assert first_run.ports_still_open == []
    assert "demo  | stopped" in first_run.output


# ----------------------------------------------------------------------------- running it again


def test_it_reuses_what_is_there_when_run_again(first_run: Run, demo_home: Path, ports: Ports) -> None:
    again = Run(log=demo_home / "second-run.log")
    proc = start(demo_home, ports, again.log)
    try:
        session = wait_for("the dispatcher's login", lambda: _try(lambda: login(ports)), START_TIMEOUT, proc,
                           again.log)
        # Two poll cycles after start: the mail store came back as it was, and nothing was read twice.
        wait_for("two polls", lambda: len(re.findall(r"mailbox \d+: polled", again.output)) >= 2 or None, MAIL_TIMEOUT, proc,
                 again.log)
        assert set(shipment_links(session, ports)) == numbers(first_run)
        assert imap_count(ports, "Archive") == 12 and imap_count(ports, "INBOX") == 0
        assert len(sent_subjects(ports)) == 1
    finally:
        stop(proc, ports, again)
    assert "sample e-mails put" not in again.output  # loaded once, on the first run only
    assert "connected (imap" not in again.output  # the same mailbox, not a second one
    assert again.returncode == 0 and again.leftovers == [] and again.ports_still_open == []


def test_it_refuses_to_start_on_a_port_in_use(demo_home: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "demo", "--port", str(port), "--imap-port", str(free_port()),
             "--smtp-port", str(free_port())],
            cwd=ROOT, env=demo_env(demo_home), capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 1
    assert f"port {port} on {HOST} (web) is in use" in result.stderr
    assert "--port" in result.stderr
