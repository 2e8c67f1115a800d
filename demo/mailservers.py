"""The demo's own mail servers on loopback, in one process: IMAP (pymap) and SMTP (aiosmtpd).

    python -m demo.mailservers --dir VAR/demo/mail --imap-port 8143 --smtp-port 8587

`manage.py demo` runs this as one of its children; it needs no Django. The demo mailbox's login
comes from the environment (DEMO_MAIL_USER, DEMO_MAIL_PASSWORD), never from the command line.

- IMAP: pymap's maildir backend under --dir, so mail (INBOX, Archive, Sent) survives restarts;
  IDLE, MOVE and UIDPLUS. One user, the demo mailbox.
- SMTP: submission with AUTH PLAIN/LOGIN for the same login. Nothing is relayed anywhere: every
  message accepted is written as an .eml file under --outbox, so a developer can read what went out.

Both listen without TLS, on loopback only: the demo mailbox is connected with security "none",
which the app allows only when MAILBOX_ALLOW_PRIVATE_HOSTS is on (the demo sets it for itself).
SIGINT/SIGTERM stop both servers and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

log = logging.getLogger("demo.mailservers")

LOOPBACK = "127.0.0.1"
USER_ENV, PASSWORD_ENV = "DEMO_MAIL_USER", "DEMO_MAIL_PASSWORD"
MAILDIR_NAME = "maildir"  # the user's maildir, relative to --dir
# pymap checks passwords with PBKDF2 at the rounds stored in the hash; every poll and every Sent
# copy logs in, and this is a local demo password, so a light hash keeps logins instant.
HASH_ROUNDS = 1000


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo.mailservers", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True, type=Path, help="where the IMAP users and maildir live")
    parser.add_argument("--outbox", type=Path, help="where submitted messages are written (default: DIR/../outbox)")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--imap-port", type=int, required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    return parser.parse_args(argv)


def _credentials() -> tuple[str, str]:
    user, password = os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV, "")
    if not user or not password:
        raise SystemExit(f"demo.mailservers: set {USER_ENV} and {PASSWORD_ENV}")
    return user, password


# ----------------------------------------------------------------------------- IMAP (pymap)


async def _write_user(base_dir: Path, user: str, password: str) -> None:
    """The one IMAP user, in pymap's passwd/shadow files (rewritten on every start: same data)."""
    from pymap.backend.maildir.users import PasswordsFile, UsersFile
    from pysasl.hashing import BuiltinHash

    hashed = BuiltinHash(rounds=HASH_ROUNDS).hash(password)
    async with UsersFile.with_write(str(base_dir)) as users, PasswordsFile.with_write(str(base_dir)) as passwords:
        users.set(UsersFile.build_record(user, MAILDIR_NAME))
        passwords.set(PasswordsFile.build_record(user, hashed))


async def _start_imap(stack: AsyncExitStack, *, base_dir: Path, host: str, port: int) -> None:
    from pymap.backend.maildir import MaildirBackend
    from pymap.imap import IMAPService

    # The arguments pymap's own CLI would parse (`pymap --no-tls --host H --port P maildir DIR`).
    args = argparse.Namespace(
        debug=False, passlib_cfg=None, proxy_protocol=None, inherited_sockets=None,
        host=host, port=str(port), cert=None, key=None, tls=False,
        base_dir=str(base_dir), concurrency=None, layout="++", colon=None,
    )
    backend, config = await MaildirBackend.init(args)
    config.apply_context()
    await backend.start(stack)
    await IMAPService(backend, config).start(stack)


# ----------------------------------------------------------------------------- SMTP (aiosmtpd)


class _Outbox:
    """aiosmtpd handler: each accepted message becomes OUTBOX/<time>-<id>.eml, bytes as received."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.outbox.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        data = envelope.original_content or envelope.content or b""
        (self.outbox / name).write_bytes(data if isinstance(data, bytes) else str(data).encode())
        log.info("SMTP: accepted %s bytes from %s for %s -> %s", len(data), envelope.mail_from,
                 ", ".join(envelope.rcpt_tos), name)
        return "250 OK: kept in the demo outbox"


def _authenticator(user: str, password: str) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == user and auth_data.password.decode() == password)
        return AuthResult(success=ok, handled=False)

    return check


async def _start_smtp(stack: AsyncExitStack, *, outbox: Path, host: str, port: int, user: str,
                      password: str) -> None:
    from aiosmtpd.smtp import SMTP

    handler = _Outbox(outbox)
    authenticator = _authenticator(user, password)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost", authenticator=authenticator, auth_required=True,
                     auth_require_tls=False),
        host=host, port=port,
    )
    stack.push_async_callback(server.wait_closed)
    stack.callback(server.close)


# ----------------------------------------------------------------------------- main


async def serve(*, base_dir: Path, outbox: Path, host: str, imap_port: int, smtp_port: int,
                user: str, password: str) -> None:
    """Run both servers until SIGINT/SIGTERM."""
    base_dir.mkdir(parents=True, exist_ok=True)
    await _write_user(base_dir, user, password)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        await _start_imap(stack, base_dir=base_dir, host=host, port=imap_port)
        await _start_smtp(stack, outbox=outbox, host=host, port=smtp_port, user=user, password=password)
        print(f"demo mail: IMAP on {host}:{imap_port}, SMTP on {host}:{smtp_port} (no TLS, loopback), "
              f"mail in {base_dir}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    user, password = _credentials()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pymap").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd: per-command log, the no-TLS warning
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")  # loopback, on purpose
    os.environ.setdefault("FQDN", "localhost")  # pymap's greeting; avoids a reverse DNS lookup
    base_dir = args.dir.resolve()
    outbox = (args.outbox or base_dir.parent / "outbox").resolve()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(base_dir=base_dir, outbox=outbox, host=args.host, imap_port=args.imap_port,
                          smtp_port=args.smtp_port, user=user, password=password))


if __name__ == "__main__":
    main()
