"""`manage.py check --deploy` with the production example settings (.env.example filled in as an
operator would) passes with no warning; missing production secrets stop start-up by name."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def production_env(tmp_path: Path) -> dict[str, str]:
    """The uncommented lines of .env.example, blanks filled as the comments ask, plus what
    docker-compose.yml adds: exactly what a production container starts with."""
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), "VAR_DIR": str(tmp_path / "var")}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            env[match.group(1)] = match.group(2)
    env.update({
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "METRICS_TOKEN": secrets.token_hex(16),
        # docker-compose.yml's environment (no connection is made by `check`)
        "DATABASE_URL": "postgres://tms:pw@postgres:5432/tms",
        "CELERY_BROKER_URL": "redis://redis:6379/0",
        "REDIS_URL": "redis://redis:6379/1",
        "MEDIA_ROOT": str(tmp_path / "media"),
    })
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_it_passes_the_deploy_check_with_the_production_example(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    assert env["DEBUG"] == "0"
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout + result.stderr
    assert "WARNING" not in result.stderr


def test_it_has_https_cookies_hsts_and_the_proxy_header_in_production(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    code = (
        "from django.conf import settings as s;"
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
        " s.SECURE_HSTS_SECONDS >= 31536000, s.SECURE_PROXY_SSL_HEADER, s.ALLOWED_HOSTS, s.LOG_FORMAT)"
    )
    result = manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "False True True True True ('HTTP_X_FORWARDED_PROTO', 'https') ['tms.example.com'] json"
    )


def test_the_deploy_check_warns_when_a_protection_is_turned_off(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    env["SESSION_COOKIE_SECURE"] = "0"
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W012" in result.stderr  # SESSION_COOKIE_SECURE


def test_it_refuses_to_start_without_production_secrets(tmp_path: Path) -> None:
    for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "ALLOWED_HOSTS"):
        env = production_env(tmp_path)
        env[name] = ""
        result = manage(env, "check")
        assert result.returncode != 0, name
        assert f"{name}: required when DEBUG is off" in result.stderr


def test_it_refuses_an_unknown_log_format(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    env["LOG_FORMAT"] = "xml"
    result = manage(env, "check")
    assert result.returncode != 0
    assert "LOG_FORMAT: expected json or plain" in result.stderr
