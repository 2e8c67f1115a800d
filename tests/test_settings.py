"""Settings are read from the environment; a bad value stops start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "x4Qb0cJ8s8hFQvVhV1Lr3y1E2ZJgkqX8Wm6c5o0g0aQ="


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "SECRET_KEY",
                                                                      "FIELD_ENCRYPTION", "DEBUG", "ALLOWED"))}
    base.update({"VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "tms.settings"}, **env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                               "print(settings.DATABASES['default']['ENGINE'])"],
        cwd=ROOT, env=base, capture_output=True, text=True, timeout=60, check=False,
    )


def test_it_starts_with_nothing_set_and_keeps_generated_keys_under_var(tmp_path: Path) -> None:
    result = start(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout
    assert "generated one for development" in result.stderr
    assert (tmp_path / "var" / "secret_key").exists() and (tmp_path / "var" / "field_encryption_key").exists()
    again = start(tmp_path)
    assert "generated" not in again.stderr  # kept, not regenerated


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DEBUG": "0"}, "SECRET_KEY"),
        ({"DEBUG": "0", "SECRET_KEY": "k" * 50}, "FIELD_ENCRYPTION_KEYS"),
        ({"DEBUG": "0", "SECRET_KEY": "k" * 50, "FIELD_ENCRYPTION_KEYS": GOOD_KEY, "ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
        ({"FIELD_ENCRYPTION_KEYS": "not-a-key"}, "FIELD_ENCRYPTION_KEYS"),
        ({"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL"),
        ({"CELERY_BROKER_URL": "http://broker"}, "CELERY_BROKER_URL"),
        ({"MAILBOX_CA_FILE": "/nonexistent/ca.pem"}, "MAILBOX_CA_FILE"),
        ({"MAILBOX_ALLOW_PRIVATE_HOSTS": "perhaps"}, "MAILBOX_ALLOW_PRIVATE_HOSTS"),
        ({"MAILBOX_POLL_INTERVAL": "soon"}, "MAILBOX_POLL_INTERVAL"),
        ({"RELAY_SMTP_URL": "ftp://relay"}, "RELAY_SMTP_URL"),
        ({"GOOGLE_TOKEN_URI": "http://insecure/token"}, "GOOGLE_TOKEN_URI"),
        ({"DATABASE_URL": "postgres://u@db.example/tms", "DATABASE_JIT": "off; DROP"}, "DATABASE_JIT"),
    ],
)
def test_it_stops_on_a_bad_value_naming_the_variable(tmp_path: Path, env: dict[str, str], named: str) -> None:
    result = start(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and f"{named}:" in result.stderr


def test_it_accepts_production_settings(tmp_path: Path) -> None:
    result = start(tmp_path, DEBUG="0", SECRET_KEY="k" * 50, FIELD_ENCRYPTION_KEYS=f"{GOOD_KEY},{GOOD_KEY}",
                   ALLOWED_HOSTS="tms.example.com", DATABASE_URL="postgres://u@db.example:5432/tms")
    assert result.returncode == 0, result.stderr
    assert "postgresql" in result.stdout


@pytest.mark.parametrize(("jit", "options"), [(None, "-c jit=off"), ("on", "-c jit=on"), ("", None)])
def test_postgresql_runs_without_jit_unless_asked(tmp_path: Path, jit: str | None, options: str | None) -> None:
    env = {"DATABASE_URL": "postgres://u@db.example:5432/tms", **({"DATABASE_JIT": jit} if jit is not None else {})}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                               "print(settings.DATABASES['default']['OPTIONS'].get('options'))"],
        cwd=ROOT, env={**base, "VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "tms.settings", **env},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(options)
