"""A throwaway PostgreSQL cluster: initdb into the work directory, the postmaster as our foreground child."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Self

from ._proc import (
    HOST,
    ProcessServer,
    TestbedError,
    cache_dir,
    free_port,
    is_root,
    port_open,
    run_quiet,
    spawn,
    subdir,
    wait_until,
)


def pg_bindir() -> Path:
    """PG_BINDIR, or the newest /usr/lib/postgresql/*/bin (Debian's layout)."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if not found:
        raise TestbedError("no initdb in /usr/lib/postgresql/*/bin: run scripts/install-system.sh")
    return Path(found[-1]).parent


INITDB_ARGS = ["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
INITDB_TAG = "trust-utf8-c"      # change with INITDB_ARGS: names the cached template


class Postgres(ProcessServer):
    """PostgreSQL in WORKDIR/pg: trust auth, user postgres, durability off (fsync, synchronous_commit,
    full_page_writes), listening on 127.0.0.1:port and a socket in WORKDIR/pg/sock.

    As root, initdb and the postmaster run as the user `postgres` (initdb refuses root); otherwise as the
    current user. url: postgres://postgres@127.0.0.1:PORT/postgres. restart() keeps port and data.
    """

    name = "postgres"
    stop_signal = signal.SIGINT       # fast shutdown: roll back open transactions, close connections

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.dir = Path(workdir) / "pg"
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.log = self.dir / "postgres.log"
        self.port = port or free_port()
        self.user = "postgres"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgres://{self.user}@{HOST}:{self.port}/{dbname}"

    def _as_postgres(self) -> dict[str, Any]:
        if not is_root():
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": [], "cwd": self.dir,
                "env": {**os.environ, "HOME": str(self.dir)}}

    def start(self) -> Self:
        if self.running:
            return self
        subdir(self.dir.parent, self.dir.name)
        self.sock.mkdir(exist_ok=True)
        if is_root():
            for p in (self.dir, self.sock):
                os.chown(p, *_postgres_ids())
        bindir = pg_bindir()
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bindir)
        if is_root():
            log_fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.close(log_fd)
            os.chown(self.log, *_postgres_ids())
        self.proc = spawn([bindir / "postgres", "-D", self.data, "-c", f"listen_addresses={HOST}",
                           "-p", str(self.port), "-k", self.sock, "-c", "fsync=off",
                           "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                           "-c", "max_connections=200"], self.log, **self._as_postgres())
        wait_until("postgres", self._ready, 30, self.proc, self.log)
        return self

    def _initdb(self, bindir: Path) -> None:
        """initdb takes 0.7-3 s here; copying a cluster made earlier about a third of that. The first
        cluster is copied to TESTBED_CACHE/pg<version>-<options>-template (by root or the current user:
        postgres may not enter the cache), later ones are copied from there."""
        version = bindir.parent.name if bindir.parent.name.isdigit() else "x"
        template = cache_dir() / f"pg{version}-{INITDB_TAG}-template"
        log = self.dir / "initdb.log"
        if (template / "PG_VERSION").exists():
            tmp = self.dir / "data.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            run_quiet(["cp", "-a", template, tmp], log, "copy the cluster template")
            tmp.rename(self.data)
            return
        run_quiet([bindir / "initdb", "-D", self.data, *INITDB_ARGS], log, "initdb", **self._as_postgres())
        # Publish the template atomically (several sessions, xdist workers, may get here at once), and only
        # as a bonus: a cache that cannot be written costs time, not the start.
        with contextlib.suppress(OSError, TestbedError):
            template.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".pg-template-", dir=template.parent))
            try:
                run_quiet(["cp", "-a", self.data, staging / "data"], log, "save the cluster template")
                (staging / "data").rename(template)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _ready(self) -> bool:
        """postmaster.pid names our process and says "ready" (what pg_ctl -w waits for)."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (len(lines) >= 8 and self.proc is not None and lines[0].strip() == str(self.proc.pid)
                and lines[7].strip() == "ready" and port_open(self.port))

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with psql (no Python driver needed); returns its unaligned output."""
        out = subprocess.run([pg_bindir() / "psql", "-h", HOST, "-p", str(self.port), "-U", self.user,
                              "-d", dbname, "-XtAc", sql], capture_output=True, text=True, check=True,
                             timeout=30)
        return out.stdout.strip()


def _postgres_ids() -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid
