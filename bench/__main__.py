"""`python -m bench [--quick | --full] [--profile] [NAME ...]`: every benchmark, side by side, in one run.

NAME: ingest, classify, idle, send, pages (default: all, in that order). One Testbed (Dovecot,
aiosmtpd, PostgreSQL, Redis on loopback) and one migrated database serve them all. Each prints its
table and writes bench/results/<name>.json; the tables are gathered in bench/results/summary.md.
--quick: small sizes (about 3 minutes); --full: ingest also at N = 100,000; --profile: cProfile the
measured child processes (ingest and send) into bench/results/*.prof.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import bench_idle, bench_ingest, bench_pages, bench_send
from bench.common import PYTHON, RESULTS, ROOT, App, Options, Testbed, machine

NAMES = ["ingest", "classify", "idle", "send", "pages"]


def classify(app: App, opts: Options) -> dict[str, Any]:
    """bench/bench_classify.py (the classifier's own benchmark), as its author runs it."""
    args = ["--messages", "2000", "--rounds", "1"] if opts.quick else []
    done = subprocess.run([PYTHON, str(ROOT / "bench" / "bench_classify.py"), *args], cwd=ROOT, env=app.env,
                          capture_output=True, text=True, timeout=1800, check=False)
    print(done.stdout, flush=True)
    if done.returncode:
        raise RuntimeError(f"bench_classify.py exited {done.returncode}: {done.stderr[-2000:]}")
    return {"table": done.stdout.strip(), "json": str(RESULTS / "classify.json")}


RUNNERS: dict[str, Callable[[App, Options], dict[str, Any]]] = {
    "ingest": bench_ingest.run, "classify": classify, "idle": bench_idle.run, "send": bench_send.run,
    "pages": bench_pages.run,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", choices=[*NAMES, []], metavar="NAME", help=", ".join(NAMES))
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, about 3 minutes")
    size.add_argument("--full", action="store_true", help="ingest at N = 100,000 too")
    parser.add_argument("--profile", action="store_true", help="cProfile the measured children")
    args = parser.parse_args()
    opts = Options(quick=args.quick, full=args.full, profile=args.profile)
    names = args.names or NAMES
    began = time.perf_counter()
    failed: list[str] = []
    sections: list[str] = []
    with Testbed() as tb:
        app = App(tb)
        for name in names:
            print(f"\n=== {name} ===", flush=True)
            started = time.perf_counter()
            try:
                out = RUNNERS[name](app, opts)
                sections.append(f"## {name} ({time.perf_counter() - started:.0f} s)\n\n{out['table'].strip()}\n")
            except Exception:
                traceback.print_exc()
                failed.append(name)
                sections.append(f"## {name}\n\nFAILED (see the output of the run)\n")
    info = machine()
    header = (f"# Benchmark run: {'quick' if opts.quick else 'full' if opts.full else 'default'}, "
              f"{time.perf_counter() - began:.0f} s\n\n{info['cpu']}, {info['cores']} cores, Python {info['python']}, "
              f"{info.get('dovecot', '')}, {info['date']}\n\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.md").write_text(header + "\n".join(sections))
    print(f"\nall done in {time.perf_counter() - began:.0f} s; tables in {RESULTS / 'summary.md'}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
