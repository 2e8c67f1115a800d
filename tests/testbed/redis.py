"""A throwaway redis-server in the foreground, no persistence."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Self

from ._proc import HOST, ProcessServer, TestbedError, free_port, spawn, subdir, wait_until


def _pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Redis(ProcessServer):
    """redis-server on 127.0.0.1:port, files in WORKDIR/redis, nothing saved. url: redis://127.0.0.1:PORT/0.
    restart() keeps the port (the data is gone: no persistence, as a crashed cache would be)."""

    name = "redis"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.dir = Path(workdir) / "redis"
        self.log = self.dir / "redis.log"
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def start(self) -> Self:
        if self.running:
            return self
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(exe).exists():
            raise TestbedError("no redis-server: run scripts/install-system.sh")
        subdir(self.dir.parent, self.dir.name)
        self.proc = spawn([exe, "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly", "no",
                           "--dir", self.dir, "--daemonize", "no", "--logfile", self.log], self.log)
        wait_until("redis", lambda: _pong(self.port), 20, self.proc, self.log)
        return self
