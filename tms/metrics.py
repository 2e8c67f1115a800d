"""Prometheus metrics: the /metrics view and the Celery workers' exporter.

Two kinds of numbers, because the work runs in many processes on many hosts:
- Counts read from the database at scrape time (the collectors named in METRICS_COLLECTORS, e.g.
  mailboxes.metrics.DatabaseCollector: messages by status, send queue depth, mailboxes needing
  re-authorization). They are right whichever process did the work, with no multiprocess setup.
- Events counted in the process that saw them (poll durations, messages fetched, token refresh
  failures). The web process shows its own on /metrics; each Celery worker host serves its own
  on METRICS_WORKER_PORT (summed over the prefork pool's children when PROMETHEUS_MULTIPROC_DIR is
  set, prometheus-client's multiprocess mode). Prometheus scrapes each and adds them up.

/metrics answers only "Authorization: Bearer <METRICS_TOKEN>"; without a token configured it is
off (404). Imports nothing of the apps: collectors come by dotted path from settings.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


def _process_registry() -> CollectorRegistry:
    """This host's in-process metrics: all processes' when in multiprocess mode, else this one's."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


class _Settings(Collector):
    """The collectors named in settings.METRICS_COLLECTORS, instantiated per scrape."""

    def collect(self) -> Any:
        for path in settings.METRICS_COLLECTORS:
            try:
                collector = import_string(path)()
                yield from collector.collect()
            except Exception:
                # One broken collector (the database is down) must not hide the others.
                logger.exception("metrics collector %s failed", path)


def metrics_text() -> bytes:
    """Everything /metrics serves, in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Settings())
    process = _process_registry()
    return generate_latest(registry) + generate_latest(process)


def _authorized(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_TOKEN:
        return HttpResponse("metrics are off: set METRICS_TOKEN\n", status=404, content_type="text/plain")
    if not _authorized(request):
        response = HttpResponse("a bearer token is required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)


# ----------------------------------------------------------------------------- Celery workers


def worker_exporter_start(port: int | None = None) -> bool:
    """Serve this host's in-process metrics on METRICS_WORKER_PORT (the Celery worker's main
    process calls it once, from the worker_init signal). False when the port is 0 (off)."""
    port = settings.METRICS_WORKER_PORT if port is None else port
    if not port:
        return False
    from prometheus_client import start_http_server

    start_http_server(port, registry=_process_registry())
    logger.info("worker metrics on port %s", port)
    return True


def worker_child_exit(pid: int) -> None:
    """A pool child ended: drop its live gauges from the multiprocess directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
