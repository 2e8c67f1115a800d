"""Run the test bed by hand (demo, benchmarks, debugging):

    .venv/bin/python -m tests.testbed                   # OAuth mock, aiosmtpd, Dovecot, Redis, PostgreSQL
    .venv/bin/python -m tests.testbed --postfix --keep  # plus Postfix; keep the work directory afterwards

Prints TESTBED_* variables (ports, URLs, CA) as shell `export` lines, then serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
import time

from .testbed import Testbed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--postfix", action="store_true", help="start Postfix too")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, Maildirs)")
    ap.add_argument("--oauth-mode", choices=("post", "local"), default="post")
    args = ap.parse_args(argv)

    # Handlers, not a blocked signal mask: the servers started below would inherit the mask and then ignore
    # the SIGTERM that stops them.
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: stopping.set())
    t0 = time.monotonic()
    tb = Testbed(keep=args.keep or None, oauth_mode=args.oauth_mode)
    try:
        names = ["oauth", "smtp", "dovecot"]
        names += ["postfix"] if args.postfix else []
        names += [] if args.no_redis else ["redis"]
        names += [] if args.no_postgres else ["postgres"]
        tb.start(*names)
        for key, value in {**tb.describe(), **tb.env()}.items():
            print(f"export {key}={shlex.quote(value)}")
        users = ", ".join(f"{u} / {p}" for u, p in tb.dovecot.users.items())
        print(f"# users: {users}; started in {time.monotonic() - t0:.2f} s; Ctrl-C stops", file=sys.stderr,
              flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        tb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
