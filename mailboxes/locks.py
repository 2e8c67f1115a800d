"""Named, expiring locks shared by every worker: "this mailbox is being polled".

Redis when settings.REDIS_URL is set (SET NX PX, released only by the holder's token); otherwise
a row in the database (mailboxes.Lease), taken with a conditional UPDATE of an expired row or an
INSERT that the unique key refuses while another holder has it. Both expire: a worker killed
mid-poll never blocks its mailbox for longer than the TTL.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Lease

_PREFIX = "tms:lock:"
# Delete or extend the key only while it still holds our token (another holder may have it by now).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_EXTEND = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
    "else return 0 end"
)


@dataclass(frozen=True)
class Lock:
    key: str
    token: str


@lru_cache(maxsize=2)
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)


def acquire(key: str, *, ttl: int) -> Lock | None:
    """Take the lock for ttl seconds; None when someone else holds it. Never waits."""
    token = secrets.token_hex(16)
    if settings.REDIS_URL:
        ok = _redis(settings.REDIS_URL).set(_PREFIX + key, token, nx=True, px=ttl * 1000)
        return Lock(key, token) if ok else None
    now = timezone.now()
    expires = now + timedelta(seconds=ttl)
    if Lease.objects.filter(key=key, expires_at__lte=now).update(token=token, expires_at=expires):
        return Lock(key, token)
    try:
        with transaction.atomic():
            Lease.objects.create(key=key, token=token, expires_at=expires)
    except IntegrityError:
        return None
    return Lock(key, token)


def acquire_many(keys: list[str], *, ttl: int) -> dict[str, Lock | None]:
    """acquire() for many keys: with Redis one round trip (a pipeline of SET NX PX) for all."""
    if not settings.REDIS_URL:
        return {key: acquire(key, ttl=ttl) for key in keys}
    tokens = {key: secrets.token_hex(16) for key in keys}
    pipe = _redis(settings.REDIS_URL).pipeline(transaction=False)
    for key in keys:
        pipe.set(_PREFIX + key, tokens[key], nx=True, px=ttl * 1000)
    answers = pipe.execute()
    return {key: Lock(key, tokens[key]) if ok else None for key, ok in zip(keys, answers, strict=True)}


def extend(lock: Lock, *, ttl: int) -> bool:
    """Push the expiry ttl seconds ahead; False when the lock was lost (expired and taken)."""
    if settings.REDIS_URL:
        return bool(_redis(settings.REDIS_URL).eval(_EXTEND, 1, _PREFIX + lock.key, lock.token, ttl * 1000))
    expires = timezone.now() + timedelta(seconds=ttl)
    return bool(Lease.objects.filter(key=lock.key, token=lock.token).update(expires_at=expires))


def release(lock: Lock) -> None:
    if settings.REDIS_URL:
        _redis(settings.REDIS_URL).eval(_RELEASE, 1, _PREFIX + lock.key, lock.token)
        return
    Lease.objects.filter(key=lock.key, token=lock.token).delete()


def release_many(held: list[Lock]) -> None:
    """release() for many locks: with Redis one round trip."""
    if not settings.REDIS_URL:
        for lock in held:
            release(lock)
        return
    if held:
        pipe = _redis(settings.REDIS_URL).pipeline(transaction=False)
        for lock in held:
            pipe.eval(_RELEASE, 1, _PREFIX + lock.key, lock.token)
        pipe.execute()


@contextmanager
def held(key: str, *, ttl: int) -> Iterator[Lock | None]:
    """`with held(key, ttl=...) as lock:` - lock is None when another holder has it."""
    lock = acquire(key, ttl=ttl)
    try:
        yield lock
    finally:
        if lock is not None:
            release(lock)


def mailbox_poll_key(mailbox_id: int) -> str:
    return f"mailbox-poll:{mailbox_id}"
