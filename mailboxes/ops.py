"""The ops page (/ops/): mailboxes that need a look, across every tenant, for platform admins.

Platform admins are Django's is_staff users (they manage tenants in /admin/); tenant staff and
tenant admins are not platform admins and get a 403. Crossing tenants is the point here, so the
selector says `Mailbox.unscoped` out loud.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from .models import Mailbox, OutboundMessage

# ----------------------------------------------------------------------------- selectors


@dataclass(frozen=True)
class Unhealthy:
    mailbox: Mailbox
    reasons: list[str]


def mailboxes_unhealthy(
    *, now: datetime | None = None, stale_minutes: int | None = None, failure_threshold: int | None = None,
) -> list[Unhealthy]:
    """Every mailbox (all tenants) in error or needing re-authorization, failing repeatedly, or
    reading but not polled for stale_minutes; worst first, with why each is listed."""
    now = now or timezone.now()
    stale_minutes = stale_minutes or settings.OPS_STALE_POLL_MINUTES
    failure_threshold = failure_threshold or settings.OPS_FAILURE_THRESHOLD
    stale_before = now - timedelta(minutes=stale_minutes)
    reading_active = Q(status=Mailbox.Status.ACTIVE, permission=Mailbox.Permission.SEND_AND_READ)
    qs: QuerySet[Mailbox] = (
        Mailbox.unscoped.select_related("tenant", "staff")
        .filter(
            Q(status__in=[Mailbox.Status.ERROR, Mailbox.Status.NEEDS_REAUTHORIZATION])
            | Q(consecutive_failures__gte=failure_threshold)
            # never polled counts as stale once the mailbox has existed for the period
            | (reading_active & (Q(last_polled_at__lt=stale_before)
                                 | Q(last_polled_at__isnull=True, created_at__lt=stale_before)))
        )
        .order_by("-consecutive_failures", "tenant__slug", "email_address")
    )
    found = []
    for mailbox in qs[:500]:
        reasons = []
        if mailbox.status in (Mailbox.Status.ERROR, Mailbox.Status.NEEDS_REAUTHORIZATION):
            reasons.append(mailbox.get_status_display())
        if mailbox.consecutive_failures >= failure_threshold:
            reasons.append(f"{mailbox.consecutive_failures} failures in a row")
        if mailbox.status == Mailbox.Status.ACTIVE and mailbox.reads:
            if mailbox.last_polled_at is None:
                reasons.append("never polled")
            elif mailbox.last_polled_at < stale_before:
                reasons.append(f"not polled for {_ago(now - mailbox.last_polled_at)}")
        found.append(Unhealthy(mailbox, reasons))
    return found


def send_queue_summary() -> dict[str, int]:
    """Outbound messages by status, all tenants."""
    from django.db.models import Count

    rows = OutboundMessage.unscoped.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    counts = dict(rows)
    return {status: counts.get(status, 0) for status in OutboundMessage.Status.values}


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} days"


# ----------------------------------------------------------------------------- view

View = Callable[..., HttpResponse]


def platform_admin_required(view: View) -> View:
    """Logged in (else the login page) as an is_staff user (else 403)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied("The ops page is for platform admins.")
        return view(request, *args, **kwargs)

    return wrapper


@never_cache
@platform_admin_required
def ops_mailboxes(request: HttpRequest) -> HttpResponse:
    return render(request, "ops/mailboxes.html", {
        "unhealthy": mailboxes_unhealthy(),
        "queue": send_queue_summary(),
        "stale_minutes": settings.OPS_STALE_POLL_MINUTES,
        "failure_threshold": settings.OPS_FAILURE_THRESHOLD,
    })
