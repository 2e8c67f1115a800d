"""Process and port helpers shared by the launchers: free ports, waiting, stopping by pid, work directories."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

HOST = "127.0.0.1"


class TestbedError(RuntimeError):
    """A server of the test bed did not start or stop; the message names its log."""


_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = HOST) -> int:
    """A port nothing listens on now, below the kernel's ephemeral range.

    Binding port 0 would return a port from the ephemeral range, which every outgoing connection draws
    from too: a client socket (or its TIME_WAIT) holding the port makes the server's later bind fail with
    "Address already in use". So: a random port in 10000..(start of that range), checked by binding it, and
    never the same one twice in this process. Another process could still take it before the server binds
    it; with random picks over some 20,000 ports that is rare.
    """
    low = 10000
    high = _ephemeral_range()[0] - 1
    for _ in range(200):
        port = random.randint(low, high) if high > low + 1000 else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            port = int(s.getsockname()[1])
        _handed_out.add(port)
        return port
    raise TestbedError("no free port found")


def port_open(port: int, host: str = HOST) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_until(
    what: str, check: Callable[[], bool], timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
) -> None:
    """Poll check() until it is true; fail early when proc has exited, and show the end of log."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise TestbedError(f"{what}: the process exited with {proc.returncode}{log_tail(log)}")
        if time.monotonic() > deadline:
            raise TestbedError(f"{what}: not ready after {timeout} s{log_tail(log)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def wait_port(port: int, what: str = "", timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None,
              log: Path | None = None) -> None:
    wait_until(what or f"port {port}", lambda: port_open(port), timeout, proc, log)


def log_tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- end of {log} ---\n" + "\n".join(text)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie.

    Where PID 1 does not reap orphans (containers), a stopped daemon stays <defunct> and `kill -0` still
    succeeds on it, so read the state from /proc instead.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 20.0,
             proc: subprocess.Popen[Any] | None = None) -> None:
    """Signal pid, then wait until it and its direct children are gone (Dovecot's and Postfix's children
    hold the listening sockets a moment after the master exits). SIGKILL after timeout."""
    if not alive(pid):
        if proc is not None:
            proc.wait()
        return
    kids = children(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None:
            proc.poll()      # reap our own child, or alive() sees a zombie forever... which counts as gone
        left = [p for p in (pid, *kids) if alive(p)]
        if not left:
            break
        if time.monotonic() > deadline:
            for p in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.01)
    if proc is not None:
        proc.wait()


def group_pids(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def stop_group(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 2.0,
               spare: Callable[[str], bool] = lambda _cmd: False) -> None:
    """Stop a server started by spawn() (its own process group) and everything it forked.

    Signal the leader, wait up to grace seconds until the leader's helpers are gone (those whose command
    line spare() accepts, e.g. a log writer that only exits after everything else, do not count), then
    SIGKILL what is left of the group. A test server's state is on disk by then; waiting longer only
    costs time (Dovecot's master lingers 1.1 s for its log process, and its login processes 5 s when stopped right
    after start).
    """
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pgid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not group_pids(pgid):
            break
        # the workers are gone: the leader only tidies up now
        if not [p for p in group_pids(pgid) if p != pgid and not spare(cmdline(p))]:
            break
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while group_pids(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)


def cache_dir() -> Path:
    """What scripts/install-system.sh installs for all work directories (the OAuth mock's node_modules),
    and the PostgreSQL cluster template: TESTBED_CACHE, default ~/.cache/tms-testbed."""
    if os.environ.get("TESTBED_CACHE"):
        return Path(os.environ["TESTBED_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tms-testbed"


def make_workdir(prefix: str = "tb-") -> Path:
    """A fresh short directory in /tmp: Unix socket paths (Dovecot's base_dir, PostgreSQL's socket
    directory) are limited to 107 bytes. Enterable by the users the servers drop to (dovecot, postgres,
    postfix, nobody): mkdtemp makes it 0700."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def subdir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def is_root() -> bool:
    return os.geteuid() == 0


def spawn(argv: Sequence[str | os.PathLike[str]], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
    """Start a server in the foreground as our child, its output appended to log.

    Never through a pipe: a daemon (or a grandchild) keeps the pipe open and a reader waits forever.
    """
    out: IO[bytes]
    with open(log, "ab") as out:
        return subprocess.Popen([os.fspath(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, **kw)


def run_quiet(argv: Sequence[str | os.PathLike[str]], log: Path, what: str, **kw: Any) -> None:
    """Run a short command to completion, its output in log; raise with the log's end on failure."""
    with open(log, "ab") as out:
        rc = subprocess.run([os.fspath(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, check=False, **kw).returncode
    if rc != 0:
        raise TestbedError(f"{what}: exit {rc}{log_tail(log)}")


class Server:
    """Base of the launchers: start() / stop() / restart(), and a context manager."""

    name = "server"

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        raise NotImplementedError

    def restart(self) -> None:
        """Stop and start again on the same ports with the same state (data, users, keys)."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ProcessServer(Server):
    """A launcher whose server is one foreground process, our child."""

    proc: subprocess.Popen[bytes] | None = None
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid, self.stop_signal, proc=self.proc)
            self.proc = None

    def signal(self, sig: int) -> None:
        """Send a signal to the server, e.g. SIGSTOP / SIGCONT to make it hang for a timeout test."""
        if self.proc is not None:
            os.kill(self.proc.pid, sig)
