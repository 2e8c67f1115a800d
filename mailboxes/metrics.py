"""What the mailboxes app tells Prometheus (served by tms/metrics.py on /metrics).

- DatabaseCollector: counts read from the database at scrape time, so they are right across every
  worker process and host: stored messages by status, the send queue, mailboxes by status.
- In-process counters and the poll-duration histogram, recorded where the work happens
  (reading.mailbox_poll, sending, services.mailbox_access_token). A Celery worker host serves them
  on METRICS_WORKER_PORT (tms.metrics.worker_exporter_start).

Metric names start with tms_. Labels are small fixed sets (status, category, provider): never a
tenant or mailbox id, which would make a time series per mailbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .models import InboundMessage, Mailbox, OutboundMessage

if TYPE_CHECKING:
    from .reading import PollResult

# ----------------------------------------------------------------------------- in-process

POLL_DURATION = Histogram(
    "tms_mailbox_poll_duration_seconds", "Time one poll of one mailbox took (login to last commit).",
    ["outcome"], buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
MESSAGES_FETCHED = Counter("tms_messages_fetched", "Messages downloaded from IMAP servers.")
MESSAGES_STORED = Counter("tms_messages_stored", "Messages stored for the first time.")
MESSAGES_PROCESSED = Counter("tms_messages_processed", "Messages the intake processed, by category.", ["category"])
MESSAGES_FAILED = Counter("tms_messages_failed", "Intake attempts that failed (retried on the next poll).")
MESSAGES_QUARANTINED = Counter("tms_messages_quarantined", "Messages quarantined after MAILBOX_MAX_ATTEMPTS.")
POLL_ERRORS = Counter("tms_mailbox_poll_errors", "Polls that ended in an error.")
OUTBOUND_SENT = Counter("tms_outbound_sent", "Messages accepted by an SMTP server.", ["route"])
OUTBOUND_FAILURES = Counter("tms_outbound_failures", "Outbound messages given up on (FAILED).")
OUTBOUND_RETRIES = Counter("tms_outbound_retries", "Temporary SMTP failures; the message was queued again.")
TOKEN_REFRESH_FAILURES = Counter(
    "tms_token_refresh_failures", "OAuth access-token refreshes that failed.", ["provider", "permanent"]
)


def poll_observed(*, result: PollResult, seconds: float) -> None:
    """Called once per poll by reading.mailbox_poll."""
    if result.skipped:
        return
    POLL_DURATION.labels(outcome="error" if result.error else "ok").observe(seconds)
    if result.error:
        POLL_ERRORS.inc()
    MESSAGES_FETCHED.inc(result.fetched)
    MESSAGES_STORED.inc(result.new)
    for category in ("quote", "pickup", "operations", "other"):
        count = getattr(result, category)
        if count:
            MESSAGES_PROCESSED.labels(category=category).inc(count)
    MESSAGES_FAILED.inc(result.failed)
    MESSAGES_QUARANTINED.inc(result.quarantined)


def outbound_sent(*, route: str) -> None:
    OUTBOUND_SENT.labels(route=route).inc()


def outbound_failed() -> None:
    OUTBOUND_FAILURES.inc()


def outbound_retried() -> None:
    OUTBOUND_RETRIES.inc()


def token_refresh_failed(*, provider: str, permanent: bool) -> None:
    TOKEN_REFRESH_FAILURES.labels(provider=provider, permanent=str(permanent).lower()).inc()


# ----------------------------------------------------------------------------- from the database


class DatabaseCollector(Collector):
    """Counts by status, read at scrape time with three GROUP BY queries (indexed columns)."""

    def collect(self) -> Iterator[Metric]:
        inbound = GaugeMetricFamily(
            "tms_inbound_messages", "Stored inbound messages by status (all tenants).", labels=["status"]
        )
        counts = dict(InboundMessage.unscoped.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in InboundMessage.Status.values:
            inbound.add_metric([status], counts.get(status, 0))
        yield inbound

        outbound = GaugeMetricFamily(
            "tms_outbound_messages", "Outbound messages by status (all tenants).", labels=["status"]
        )
        out_counts = dict(
            OutboundMessage.unscoped.values_list("status").annotate(n=Count("id")).values_list("status", "n")
        )
        for status in OutboundMessage.Status.values:
            outbound.add_metric([status], out_counts.get(status, 0))
        yield outbound
        yield GaugeMetricFamily(
            "tms_send_queue_depth", "Outbound messages waiting or being sent (QUEUED + SENDING).",
            value=out_counts.get(OutboundMessage.Status.QUEUED, 0) + out_counts.get(OutboundMessage.Status.SENDING, 0),
        )
        oldest = (
            OutboundMessage.unscoped.filter(status=OutboundMessage.Status.QUEUED)
            .aggregate(oldest=Min("created_at"))["oldest"]
        )
        yield GaugeMetricFamily(
            "tms_send_queue_oldest_seconds", "Age of the oldest queued outbound message (0: none queued).",
            value=(timezone.now() - oldest).total_seconds() if oldest else 0.0,
        )

        mailboxes = GaugeMetricFamily("tms_mailboxes", "Mailboxes by status (all tenants).", labels=["status"])
        box_counts = dict(Mailbox.unscoped.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in Mailbox.Status.values:
            mailboxes.add_metric([status], box_counts.get(status, 0))
        yield mailboxes
        yield GaugeMetricFamily(
            "tms_mailboxes_needing_reauthorization", "Mailboxes whose owner must sign in again.",
            value=box_counts.get(Mailbox.Status.NEEDS_REAUTHORIZATION, 0),
        )
