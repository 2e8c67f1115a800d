"""What a MOVE costs Dovecot, by the folder's size and the UIDs a command (bench/README.md, ingest):

    .venv/bin/python -m bench.dovecot_move [--folder 100000] [--move 20000] [--per-command 1000 2000 10000]

For each size of command: a fresh Maildir of --folder corpus messages (indexed before timing), then
--move of them moved to Archive in consecutive ranges of that many UIDs, one `UID MOVE` each, as the
post-processing action does. Prints Dovecot's CPU (every Dovecot process's, from /proc) and the
wall time per message moved. Not part of `python -m bench`: it measures the test server, not us.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.common import Table, Testbed, corpus_messages, fill_maildir, imap_login

PASSWORD = "move-bench"
DOVECOT = {"dovecot", "imap", "imap-login", "auth", "log", "config", "anvil", "indexer", "indexer-worker"}


def dovecot_cpu_seconds() -> float:
    """CPU time of the Dovecot processes alive now (the IMAP session's lives as long as the login)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.index("(") + 1:text.rindex(")")] in DOVECOT:
            fields = text[text.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def moved(tb: Testbed, folder: int, count: int, per_command: int) -> tuple[float, float]:
    """(Dovecot's CPU ms, wall ms) a message, moving `count` of a `folder`-message INBOX."""
    address = f"move{folder}-{per_command}@example.test"
    fill_maildir(tb.dovecot, address, PASSWORD, corpus_messages(folder, f"m{per_command}"))
    with imap_login(tb.dovecot, address, PASSWORD) as client:
        client.create_folder("Archive")
        client.select_folder("INBOX")
        uids = sorted(client.search(["ALL"]))[:count]
        began, cpu = time.perf_counter(), dovecot_cpu_seconds()
        for start in range(0, len(uids), per_command):
            part = uids[start:start + per_command]
            client.move(f"{part[0]}:{part[-1]}", "Archive")
        wall, cpu = time.perf_counter() - began, dovecot_cpu_seconds() - cpu
    return 1000 * cpu / len(uids), 1000 * wall / len(uids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=int, default=100_000)
    parser.add_argument("--move", type=int, default=20_000)
    parser.add_argument("--per-command", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    args = parser.parse_args()
    table = Table(f"Dovecot MOVE, {args.move:,} of a {args.folder:,}-message INBOX",
                  ["UIDs a command", "Dovecot CPU ms / message", "wall ms / message"])
    with Testbed() as tb:
        tb.start("dovecot")
        for size in args.per_command:
            cpu, wall = moved(tb, args.folder, min(args.move, args.folder), size)
            table.add(size, f"{cpu:.3f}", f"{wall:.3f}")
    table.print()


if __name__ == "__main__":
    main()
