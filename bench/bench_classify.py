"""Classifier throughput on one core, beside the bare standard-library parse of the same messages.

    python bench/bench_classify.py [--messages 10000] [--rounds 5]

The 90 corpus messages are repeated (each copy with its own Message-ID) to about 10,000
messages. Each round times, in turn on the same process:

- stdlib modern parse: email.message_from_bytes(raw, policy=policy.default) + get_body() +
  iter_attachments(), what a plain "parse it properly" consumer pays;
- stdlib compat32 parse: email.message_from_bytes(raw) + walk(), the floor of any MIME parse;
- classify(): parse, noise signals, refs, lane, fields, attachment kinds - everything.

The machine is shared and noisy: the three are interleaved in batches of 250 messages, so a
burst of load elsewhere hits all three alike, each is timed by the CPU time of this process
(time.process_time, what one core spends on it; wall-clock figures are kept in the JSON too), and
the median over the rounds is reported. Results go to stdout as a table and to
bench/results/classify.json. Place data (ZIP codes, cities) is loaded before timing: a
once-per-process cost, reported on its own.
"""

from __future__ import annotations

import argparse
import email
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from email import policy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifier import classify, warm_up  # noqa: E402

CORPUS = ROOT / "tests" / "corpus" / "messages"
RESULTS = ROOT / "bench" / "results" / "classify.json"


def load_messages(count: int) -> list[bytes]:
    originals = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    out: list[bytes] = []
    copy = 0
    while len(out) < count:
        for raw in originals:
            if len(out) >= count:
                break
            # A unique Message-ID per copy, as a real mailbox would have.
            out.append(raw.replace(b"Message-ID: <", b"Message-ID: <c%d." % copy, 1)
                       .replace(b"Message-Id: <", b"Message-Id: <c%d." % copy, 1))
        copy += 1
    return out


def stdlib_modern(raw: bytes) -> None:
    msg = email.message_from_bytes(raw, policy=policy.default)
    body = msg.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
    if body is not None:
        body.get_content()
    for part in msg.iter_attachments():  # type: ignore[attr-defined]
        part.get_content()


def stdlib_compat32(raw: bytes) -> None:
    msg = email.message_from_bytes(raw)
    for part in msg.walk():
        part.get_payload(decode=True)


def run_classify(raw: bytes) -> None:
    classify(raw)


BATCH = 250


def one_round(funcs: dict[str, Callable[[bytes], None]], messages: list[bytes]) -> dict[str, tuple[float, float]]:
    """(CPU seconds, wall seconds) per function over all messages, interleaved batch by batch."""
    spent = {name: [0.0, 0.0] for name in funcs}
    for start in range(0, len(messages), BATCH):
        batch = messages[start:start + BATCH]
        for name, func in funcs.items():
            cpu, wall = time.process_time(), time.perf_counter()
            for raw in batch:
                func(raw)
            spent[name][0] += time.process_time() - cpu
            spent[name][1] += time.perf_counter() - wall
    return {name: (cpu, wall) for name, (cpu, wall) in spent.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    messages = load_messages(args.messages)
    start = time.perf_counter()
    warm_up()
    classify(messages[0])
    warm_seconds = time.perf_counter() - start

    funcs: dict[str, Callable[[bytes], None]] = {
        "stdlib modern parse": stdlib_modern, "stdlib compat32 parse": stdlib_compat32, "classify": run_classify}
    cpu_rates: dict[str, list[float]] = {name: [] for name in funcs}
    wall_rates: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(args.rounds):
        for name, (cpu, wall) in one_round(funcs, messages).items():
            cpu_rates[name].append(len(messages) / cpu)
            wall_rates[name].append(len(messages) / wall)
    medians = {name: statistics.median(values) for name, values in cpu_rates.items()}
    wall_medians = {name: statistics.median(values) for name, values in wall_rates.items()}
    baseline = medians["stdlib modern parse"]

    print(f"{len(messages):,} messages ({len(messages) / 90:.0f} copies of the 90-message corpus), one core, "
          f"CPU time, median of {args.rounds} rounds")
    print(f"{'what':<24}{'messages/s':>12}{'ratio to stdlib modern':>26}{'wall-clock msg/s':>20}")
    for name, value in medians.items():
        print(f"{name:<24}{value:>12,.0f}{value / baseline:>25.2f}x{wall_medians[name]:>20,.0f}")
    print(f"one-off place-data load: {warm_seconds:.2f} s")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "messages": len(messages),
        "rounds": args.rounds,
        "clock": f"process CPU time (time.process_time), batches of {BATCH} interleaved",
        "messages_per_second": {name: round(value) for name, value in medians.items()},
        "messages_per_second_wall_clock": {name: round(value) for name, value in wall_medians.items()},
        "all_rounds_cpu": {name: [round(v) for v in values] for name, values in cpu_rates.items()},
        "ratio_classify_to_stdlib_modern": round(medians["classify"] / baseline, 2),
        "warm_up_seconds": round(warm_seconds, 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }, indent=2) + "\n", encoding="utf-8")
    print(f"written: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
