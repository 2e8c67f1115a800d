"""Send throttles: held over the limit, released when the clock says so (never by sleeping)."""

from __future__ import annotations

from typing import Any

import pytest

from mailboxes import sending
from mailboxes.models import OutboundMessage
from mailboxes.throttle import DAY, DatabaseThrottle, Limits, RedisThrottle, Throttle, limits_for_mailbox
from tests.factories import make_mailbox
from tests.mailboxes.sending_support import (
    FakeClock,
    imap_mailbox,
)
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["database", "redis"])
def make_throttle(request: Any, db: None) -> Any:
    def make(clock: FakeClock) -> Throttle:
        if request.param == "redis":
            server = request.getfixturevalue("redis_server")
            throttle = RedisThrottle(server.url, clock)
            throttle.redis.flushdb()
            return throttle
        return DatabaseThrottle(clock)

    return make


def test_it_holds_the_31st_message_of_a_minute_until_the_first_leaves_the_window(make_throttle: Any) -> None:
    clock = FakeClock(1_000_000.0)
    throttle = make_throttle(clock)
    limits = Limits(per_minute=30)
    for i in range(30):
        clock.now = 1_000_000.0 + i
        assert throttle.reserve("mailbox:1", limits) == 0.0
    clock.now = 1_000_030.0
    assert throttle.reserve("mailbox:1", limits) == pytest.approx(30.0)
    assert throttle.reserve("mailbox:2", limits) == 0.0  # per mailbox
    clock.now = 1_000_060.5
    assert throttle.reserve("mailbox:1", limits) == 0.0


def test_it_counts_messages_and_recipients_per_day(make_throttle: Any) -> None:
    clock = FakeClock(2_000_000.0)
    throttle = make_throttle(clock)
    assert throttle.reserve("g", Limits(per_day=2)) == 0.0
    clock.advance(10)
    assert throttle.reserve("g", Limits(per_day=2)) == 0.0
    assert throttle.reserve("g", Limits(per_day=2)) == pytest.approx(DAY - 10)
    clock.advance(DAY - 9)
    assert throttle.reserve("g", Limits(per_day=2)) == 0.0

    limits = Limits(recipients_per_day=10)
    assert throttle.reserve("m", limits, recipients=6) == 0.0
    clock.advance(100)
    assert throttle.reserve("m", limits, recipients=4) == 0.0
    assert throttle.reserve("m", limits, recipients=1) == pytest.approx(DAY - 100)


def test_it_limits_concurrent_connections_and_frees_a_dead_workers_slot(make_throttle: Any) -> None:
    clock = FakeClock(3_000_000.0)
    throttle = make_throttle(clock)
    tokens = [throttle.slot_acquire("ms", 3, ttl=600) for _ in range(3)]
    assert all(tokens) and throttle.slot_acquire("ms", 3) is None
    throttle.slot_release("ms", tokens[0])
    assert throttle.slot_acquire("ms", 3) is not None
    clock.advance(601)  # the holders died without releasing
    assert throttle.slot_acquire("ms", 3) is not None


def test_it_applies_the_providers_documented_limits(bob: Staff) -> None:
    ms = limits_for_mailbox(make_mailbox(bob, "a@example.test", provider="microsoft"))
    assert (ms.per_minute, ms.recipients_per_day, ms.max_connections) == (30, 10_000, 3)
    google = limits_for_mailbox(make_mailbox(bob, "b@example.test", provider="google"))
    assert (google.per_day, google.recipients_per_message) == (2_000, 100)
    own = limits_for_mailbox(make_mailbox(bob, "c@example.test", send_per_minute=5, send_per_day=50,
                                          max_connections=1))
    assert (own.per_minute, own.per_day, own.max_connections) == (5, 50, 1)


def test_a_throttled_message_waits_in_the_queue_and_goes_out_when_allowed(
    send_settings: Any, bob: Staff, dovecot: Any, smtp_server: Any
) -> None:
    clock = FakeClock()
    mailbox = imap_mailbox(bob, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server,
                           send_per_minute=1)
    first, second = (sending.message_queue(tenant=bob.tenant, staff=bob, mailbox=mailbox, to=["c@example.test"],
                                           subject=f"m{i}", body_text="b", enqueue=False) for i in range(2))
    assert sending.message_deliver(outbound_id=first.pk, clock=clock).status == "sent"

    held = sending.message_deliver(outbound_id=second.pk, clock=clock)
    assert held.status == "queued" and 59 < (held.retry_in or 0) <= 60
    second.refresh_from_db()
    assert second.status == OutboundMessage.Status.QUEUED and second.attempts == 0  # waiting is not an attempt

    clock.advance(60.5)
    assert sending.message_deliver(outbound_id=second.pk, clock=clock).status == "sent"
    assert smtp_server.wait_for(lambda m: m.message_id == second.message_id)
