"""What a Celery worker sets up for itself at start (tms/celery.py)."""

from __future__ import annotations

import resource
import subprocess
import sys

from django.conf import settings

SCRIPT = """
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
from tms.celery import _open_files_limit
_open_files_limit()
print(*resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def test_it_raises_the_open_files_soft_limit_to_the_hard_one_for_kept_connections() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=settings.BASE_DIR, capture_output=True, text=True,
                          timeout=60, check=True)
    soft_after, hard_after = (int(x) for x in done.stdout.split()[-2:])
    assert hard_after == hard
    assert soft_after == hard or (hard == resource.RLIM_INFINITY and soft_after > 256)
