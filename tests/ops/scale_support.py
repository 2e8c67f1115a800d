"""Loaded into the scale-out test's Celery workers (`celery worker --include tests.ops.scale_support`).

It records, per worker process, what the test must check afterwards, in files under SCALE_LOG_DIR
(one file per process, one line per event, appended):
- `lock <key> <token> acquired|released|refused <time>` around mailboxes.locks: the acquisition
  time is taken after the lock is held and the release time before it is let go, so with a
  working lock the recorded intervals of one key can never overlap;
- `handled <inbound id> <mailbox id>` from the intake handler (every message handled once).
SCALE_THROTTLE_WINDOW shortens the throttle's "minute" (mailboxes.throttle.MINUTE) so that a
per-minute limit can be proven in seconds: the same code, a shorter window.
"""

from __future__ import annotations

import os
import time
from typing import Any

from mailboxes import locks, throttle
from mailboxes.intake import IntakeContext, IntakeResult
from mailboxes.models import InboundMessage

WORKER = os.environ.get("SCALE_WORKER", "test")


def _write(line: str) -> None:
    directory = os.environ.get("SCALE_LOG_DIR")
    if not directory:
        return
    # O_APPEND: each short line lands whole even with several processes writing
    with open(os.path.join(directory, f"{WORKER}-{os.getpid()}.log"), "a") as out:
        out.write(f"{WORKER} {os.getpid()} {line}\n")


def handle(message: InboundMessage, context: IntakeContext) -> IntakeResult:
    _write(f"handled {message.pk} {message.mailbox_id}")
    first = (message.subject.split() or ["other"])[0].lower()
    category = first if first in ("quote", "pickup", "operations") else "other"
    return IntakeResult(category=category, reason="subject", records={"scale": 1})


def _install() -> None:
    if not os.environ.get("SCALE_LOG_DIR"):
        return
    real_acquire, real_release = locks.acquire, locks.release
    real_acquire_many, real_release_many = locks.acquire_many, locks.release_many

    def acquire(key: str, *, ttl: int) -> Any:
        lock = real_acquire(key, ttl=ttl)
        if lock is None:
            _write(f"lock {key} - refused {time.time():.6f}")
        else:
            _write(f"lock {key} {lock.token} acquired {time.time():.6f}")
        return lock

    def release(lock: Any) -> None:
        _write(f"lock {lock.key} {lock.token} released {time.time():.6f}")
        real_release(lock)

    def acquire_many(keys: list[str], *, ttl: int) -> Any:  # polling.py: one round trip for a chunk
        held = real_acquire_many(keys, ttl=ttl)
        at = time.time()
        for key, lock in held.items():
            _write(f"lock {key} - refused {at:.6f}" if lock is None else f"lock {key} {lock.token} acquired {at:.6f}")
        return held

    def release_many(held: list[Any]) -> None:
        at = time.time()
        for lock in held:
            _write(f"lock {lock.key} {lock.token} released {at:.6f}")
        real_release_many(held)

    locks.acquire = acquire  # type: ignore[assignment]
    locks.release = release  # type: ignore[assignment]
    locks.acquire_many = acquire_many  # type: ignore[assignment]
    locks.release_many = release_many  # type: ignore[assignment]
    window = os.environ.get("SCALE_THROTTLE_WINDOW")
    if window:
        throttle.MINUTE = float(window)


_install()
