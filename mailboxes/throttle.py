"""Send throttles: the providers' documented limits, per mailbox, shared by every worker.

A message that is over a limit is not sent and not dropped: reserve() says how long to wait and
the caller puts the message back in the queue until then. With REDIS_URL the counts live in Redis
(a sorted set of send times per key, read and written under a short Redis lock); without it, in
the database (rows locked with SELECT ... FOR UPDATE), which is enough for one machine and the demo.

Time comes from an injectable clock (seconds, like time.time) so tests drive it without sleeping.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

if TYPE_CHECKING:
    from .models import Mailbox

Clock = Callable[[], float]
MINUTE = 60.0
DAY = 86400.0
UNLIMITED = "unlimited:"  # a slot token without a limit: nothing stored, nothing to release


@dataclass(frozen=True)
class Limits:
    """None means no limit."""

    per_minute: int | None = None
    per_day: int | None = None
    recipients_per_day: int | None = None
    recipients_per_message: int | None = None
    max_connections: int | None = None
    max_message_bytes: int | None = None


MB = 1024 * 1024
# Documented limits:
# - Microsoft 365 (Exchange Online "sending limits" and SMTP AUTH client submission): 30 messages a
#   minute, 10,000 recipients a day, 3 concurrent connections per mailbox; 35 MB message size.
# - Google Workspace (Gmail sending limits): 2,000 messages a day, 100 recipients per message
#   sent over SMTP; 25 MB of attachments.
PROVIDER_LIMITS: dict[str, Limits] = {
    "microsoft": Limits(per_minute=30, recipients_per_day=10_000, max_connections=3, max_message_bytes=35 * MB),
    "google": Limits(per_day=2_000, recipients_per_message=100, max_message_bytes=25 * MB),
    "imap": Limits(),
}


def _first(*values: int | None) -> int | None:
    for value in values:
        if value:
            return value
    return None


def limits_for_mailbox(mailbox: Mailbox) -> Limits:
    """The provider's limits, with the mailbox's own settings taking precedence where given."""
    base = PROVIDER_LIMITS.get(mailbox.provider, Limits())
    return Limits(
        per_minute=_first(mailbox.send_per_minute, base.per_minute),
        per_day=_first(mailbox.send_per_day, base.per_day),
        recipients_per_day=base.recipients_per_day,
        recipients_per_message=base.recipients_per_message,
        max_connections=_first(mailbox.max_connections, base.max_connections),
        max_message_bytes=base.max_message_bytes or settings.MAILBOX_SMTP_MAX_MESSAGE_BYTES,
    )


def limits_for_tenant_mailbox() -> Limits:
    return PROVIDER_LIMITS["microsoft"]


def limits_for_relay() -> Limits:
    return Limits(
        per_minute=settings.RELAY_SEND_PER_MINUTE or None,
        max_connections=settings.RELAY_MAX_CONNECTIONS or None,
        max_message_bytes=settings.MAILBOX_SMTP_MAX_MESSAGE_BYTES,
    )


def wait_needed(events: Iterable[tuple[float, int]], limits: Limits, *, recipients: int, now: float) -> float:
    """Seconds until one more message to `recipients` fits, given the (time, recipients) of the
    messages sent in the last day; 0.0 when it fits now."""
    day = sorted((at, n) for at, n in events if at > now - DAY)
    waits = [0.0]
    if limits.per_minute:
        minute = [at for at, _ in day if at > now - MINUTE]
        if len(minute) >= limits.per_minute:
            waits.append(minute[len(minute) - limits.per_minute] + MINUTE - now)
    if limits.per_day and len(day) >= limits.per_day:
        waits.append(day[len(day) - limits.per_day][0] + DAY - now)
    if limits.recipients_per_day:
        wanted = min(recipients, limits.recipients_per_day)
        excess = sum(n for _, n in day) + wanted - limits.recipients_per_day
        for at, n in day:  # oldest first: when enough of them have left the window
            if excess <= 0:
                break
            excess -= n
            if excess <= 0:
                waits.append(at + DAY - now)
    wait = max(waits)
    return max(wait, 0.001) if wait > 0 else 0.0


class Throttle(ABC):
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or time.time

    @abstractmethod
    def reserve(self, key: str, limits: Limits, *, recipients: int = 1) -> float:
        """0.0: the message may go now and is counted. Otherwise the seconds to wait (nothing counted)."""

    @abstractmethod
    def slot_acquire(self, key: str, limit: int | None, *, ttl: float = 900.0) -> str | None:
        """A connection slot (a token to release), or None when `limit` connections are open."""

    @abstractmethod
    def slot_release(self, key: str, token: str) -> None: ...


class DatabaseThrottle(Throttle):
    """Counts in ThrottleEvent rows; one ThrottleLock row per key serialises the decisions."""

    def _locked(self, key: str) -> Any:
        from .models import ThrottleLock

        ThrottleLock.objects.get_or_create(key=key)
        return ThrottleLock.objects.select_for_update().get(key=key)

    def reserve(self, key: str, limits: Limits, *, recipients: int = 1) -> float:
        from .models import ThrottleEvent

        if not (limits.per_minute or limits.per_day or limits.recipients_per_day):
            return 0.0
        now = self.clock()
        with transaction.atomic():
            self._locked(key)
            ThrottleEvent.objects.filter(key=key, at__lte=now - DAY).delete()
            events = ThrottleEvent.objects.filter(key=key, at__gt=now - DAY).values_list("at", "recipients")
            wait = wait_needed(list(events), limits, recipients=recipients, now=now)
            if wait == 0.0:
                ThrottleEvent.objects.create(key=key, at=now, recipients=recipients)
        return wait

    def slot_acquire(self, key: str, limit: int | None, *, ttl: float = 900.0) -> str | None:
        token = uuid.uuid4().hex
        if not limit:
            return UNLIMITED + token
        now = self.clock()
        with transaction.atomic():
            lock = self._locked(f"slots:{key}")
            slots = {t: exp for t, exp in dict(lock.slots).items() if exp > now}  # expired: a dead worker's
            if len(slots) >= limit:
                return None
            slots[token] = now + ttl
            lock.slots = slots
            lock.save(update_fields=["slots"])
        return token

    def slot_release(self, key: str, token: str) -> None:
        if token.startswith(UNLIMITED):
            return
        with transaction.atomic():
            lock = self._locked(f"slots:{key}")
            slots = dict(lock.slots)
            if slots.pop(token, None) is not None:
                lock.slots = slots
                lock.save(update_fields=["slots"])


class RedisThrottle(Throttle):
    """Counts in a Redis sorted set per key (score = send time, member = "<uuid>:<recipients>")."""

    def __init__(self, url: str, clock: Clock | None = None) -> None:
        super().__init__(clock)
        import redis

        self.redis = redis.Redis.from_url(url)

    def _lock(self, key: str) -> Any:
        return self.redis.lock(f"tms:throttle-lock:{key}", timeout=10, blocking_timeout=10)

    def reserve(self, key: str, limits: Limits, *, recipients: int = 1) -> float:
        if not (limits.per_minute or limits.per_day or limits.recipients_per_day):
            return 0.0
        now = self.clock()
        name = f"tms:throttle:{key}"
        with self._lock(key):
            self.redis.zremrangebyscore(name, "-inf", now - DAY)
            found: Any = self.redis.zrangebyscore(name, now - DAY, "+inf", withscores=True)
            events = [(float(score), int(member.decode().rsplit(":", 1)[1])) for member, score in found]
            wait = wait_needed(events, limits, recipients=recipients, now=now)
            if wait == 0.0:
                pipe = self.redis.pipeline()
                pipe.zadd(name, {f"{uuid.uuid4().hex}:{recipients}": now})
                pipe.expire(name, int(DAY) + 60)
                pipe.execute()
        return wait

    def slot_acquire(self, key: str, limit: int | None, *, ttl: float = 900.0) -> str | None:
        token = uuid.uuid4().hex
        if not limit:
            return UNLIMITED + token
        now = self.clock()
        name = f"tms:slots:{key}"
        with self._lock(f"slots:{key}"):
            stored: Any = self.redis.hgetall(name)
            slots = {t.decode(): float(exp) for t, exp in stored.items()}
            expired = [t for t, exp in slots.items() if exp <= now]
            if expired:
                self.redis.hdel(name, *expired)
            if len(slots) - len(expired) >= limit:
                return None
            self.redis.hset(name, token, now + ttl)
            self.redis.expire(name, int(ttl) + 60)
        return token

    def slot_release(self, key: str, token: str) -> None:
        if token.startswith(UNLIMITED):
            return
        self.redis.hdel(f"tms:slots:{key}", token)


def get_throttle(clock: Clock | None = None) -> Throttle:
    if settings.REDIS_URL:
        return RedisThrottle(settings.REDIS_URL, clock)
    return DatabaseThrottle(clock)
