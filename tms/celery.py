"""The Celery application. Configuration lives in settings (CELERY_* names)."""

import contextlib
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms.settings")

app = Celery("tms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
def _metrics_exporter(**_: object) -> None:
    """Each worker host serves its in-process metrics on METRICS_WORKER_PORT (tms/metrics.py)."""
    from tms.metrics import worker_exporter_start

    worker_exporter_start()


@signals.worker_init.connect
def _open_files_limit(**_: object) -> None:
    """Raise the soft limit on open files to the hard one before the pool forks: each process keeps
    up to MAILBOX_IMAP_KEEP_CONNECTIONS IMAP connections (mailboxes/sessions.py), and a soft limit
    of 1,024 (a common default) would refuse sockets long before that."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@signals.worker_process_shutdown.connect
def _metrics_child_exit(pid: int | None = None, **_: object) -> None:
    from tms.metrics import worker_child_exit

    worker_child_exit(pid or os.getpid())
