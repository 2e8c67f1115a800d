"""Settings, read from the environment (one file; see README "Settings").

Every value has a development default that runs with nothing installed: SQLite under var/, a
broker on the filesystem under var/, keys generated once under var/. With DEBUG off, secrets must
be given. A bad value stops start-up with ImproperlyConfigured naming the variable.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from tms.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- helpers

def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}: expected a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "filesystem"):
        raise ImproperlyConfigured(f"{name}: expected a URL with scheme {'/'.join(schemes)}, got {value!r}")
    return value


def dev_secret(name: str, path: Path, make: Any) -> str:
    """A development secret kept in var/ so that it survives restarts; never used with DEBUG off."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    print(f"settings: {name} not set; generated one for development in {path}", file=sys.stderr)
    return value


# ----------------------------------------------------------------------------- core

DEBUG = env_bool("DEBUG", True)
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY: required when DEBUG is off")
    from django.core.management.utils import get_random_secret_key

    SECRET_KEY = dev_secret("SECRET_KEY", VAR_DIR / "secret_key", get_random_secret_key)

# Secrets at rest (tms/crypto.py): comma-separated Fernet keys, the first encrypts, all decrypt.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS: required when DEBUG is off")
    FIELD_ENCRYPTION_KEYS = [
        dev_secret("FIELD_ENCRYPTION_KEYS", VAR_DIR / "field_encryption_key", lambda: Fernet.generate_key().decode())
    ]
for _key in FIELD_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes (Fernet.generate_key())"
        ) from None

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS: required when DEBUG is off")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000", schemes=("http", "https")).rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "tms.accounts",
    "mailboxes",
    "shipments",
    "documents",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # serves the collected static files (admin) under gunicorn
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tms.accounts.middleware.StaffMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tms.urls"
WSGI_APPLICATION = "tms.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tms.accounts.context_processors.staff",
                "mailboxes.context_processors.mailbox_alerts",
            ],
            # {% row_url %}: the links of list rows without a resolver walk per link (tms/template_urls.py)
            "libraries": {"tms_urls": "tms.template_urls"},
        },
    },
]

# ----------------------------------------------------------------------------- database


def postgres_options(options: dict[str, Any]) -> dict[str, Any]:
    """A PostgreSQL connection's OPTIONS (tests/conftest.py uses them too): those of DATABASE_URL,
    and what DATABASE_SERVER_SIDE_BINDING and DATABASE_JIT ask for."""
    options = dict(options)
    if env_bool("DATABASE_SERVER_SIDE_BINDING", True):
        # Parameters sent apart from the SQL (psycopg's server-side binding) instead of quoted into
        # it by the client: bytes travel as binary, nothing is escaped (bench/README.md, "Ingest").
        # No statement is prepared (Django's default), so a pooler in transaction mode still works.
        options["server_side_binding"] = True
    jit = env_str("DATABASE_JIT", "off").lower()
    if jit not in ("", "on", "off"):
        raise ImproperlyConfigured("DATABASE_JIT: on, off, or empty for the server's own setting")
    if jit:
        # PostgreSQL compiles a query to machine code (JIT) once its estimated cost passes
        # jit_above_cost, which a big table's lookups do: 20 ms a lookup of a batch's Message-IDs at
        # 100,000 stored messages, against 1-2 ms without (bench/README.md, ingest). Its
        # documentation: JIT pays for long CPU-bound queries; for short ones, all this app runs, the
        # compiling often costs more than it saves. DATABASE_JIT= (empty) leaves the server's setting:
        # needed behind a pooler that refuses the `options` start-up parameter (PgBouncer without
        # `ignore_startup_parameters = options`); then `ALTER DATABASE ... SET jit = off` there.
        options["options"] = f"{options.get('options', '')} -c jit={jit}".strip()
    return options


_default_db = f"sqlite:///{VAR_DIR / 'tms.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _default_db), conn_max_age=60)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: WAL lets readers run beside the writer, IMMEDIATE
    # transactions take the write lock up front instead of failing half-way ("database is locked").
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["OPTIONS"] = postgres_options(DATABASES["default"].get("OPTIONS") or {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ----------------------------------------------------------------------------- auth

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# ModelBackend whose per-request user lookup also loads the Staff and Tenant and whether a mailbox
# needs reconnecting (one query, not three: tms/accounts/backends.py, mailboxes/auth.py).
AUTHENTICATION_BACKENDS = ["mailboxes.auth.StaffMailboxBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on every request when it is missing (before collectstatic)
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# ----------------------------------------------------------------------------- security

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading binds every subdomain of the domain to HTTPS in browsers for months: the
        # domain's owner opts in (SECURE_HSTS_PRELOAD=1); until then the deploy check need not nag.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Health checks and Prometheus talk to the container directly, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

# ----------------------------------------------------------------------------- REST API

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tms.accounts.permissions.IsStaffMember"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TMS mailboxes API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Choice sets shared by several fields, or whose field names clash across apps, named once
    # (without this `check --deploy` warns and the schema gets names like "StatusEe1Enum").
    "ENUM_NAME_OVERRIDES": {
        "SecurityEnum": "mailboxes.models.Security",
        "DocumentKindEnum": "documents.models.Kind",
        "DocumentStatusEnum": "documents.models.Status",
    },
}

# ----------------------------------------------------------------------------- Celery

_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL", "filesystem://", schemes=("filesystem", "redis", "rediss", "amqp", "amqps")
)
if CELERY_BROKER_URL.startswith("filesystem"):
    # kombu's filesystem transport: a broker that needs no server, for development and the demo.
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # kombu's default is ./control
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task leaves the message for another worker
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540, minimum=1)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Processes per worker (the prefork pool); 0: one per CPU. See README "Production" for sizing.
if env_int("CELERY_WORKER_CONCURRENCY", 0):
    CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 0)

MAILBOX_POLL_INTERVAL = env_int("MAILBOX_POLL_INTERVAL", 60, minimum=1)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {}
# Reading mailboxes (mailboxes/reading.py): each due mailbox is polled by its own task.
CELERY_BEAT_SCHEDULE["mailboxes-poll-due"] = {
    "task": "mailboxes.poll_due_mailboxes",
    "schedule": float(MAILBOX_POLL_INTERVAL),
}

# ----------------------------------------------------------------------------- mail integration

# Outgoing connections to user-supplied IMAP/SMTP hosts refuse private and loopback addresses
# (SSRF) unless this is set; tests and the local demo set it.
MAILBOX_ALLOW_PRIVATE_HOSTS = env_bool("MAILBOX_ALLOW_PRIVATE_HOSTS", False)
MAILBOX_CA_FILE = env_str("MAILBOX_CA_FILE")
if MAILBOX_CA_FILE and not Path(MAILBOX_CA_FILE).is_file():
    raise ImproperlyConfigured(f"MAILBOX_CA_FILE: no such file: {MAILBOX_CA_FILE}")
MAILBOX_CONNECT_TIMEOUT = env_int("MAILBOX_CONNECT_TIMEOUT", 20, minimum=1)

# Reading mail (mailboxes/reading.py, intake.py, idle.py).
# Dotted paths of the intake handlers called, in order, for each stored message (see mailboxes/intake.py).
# shipments first (it makes the shipments); the documents handler goes after it, to find them.
MAILBOX_INTAKE_HANDLERS = env_list("MAILBOX_INTAKE_HANDLERS", "shipments.intake.handle,documents.intake.handle")
MAILBOX_INITIAL_WINDOW_DAYS = env_int("MAILBOX_INITIAL_WINDOW_DAYS", 7, minimum=1)  # the first poll's reach
MAILBOX_MAX_MESSAGE_BYTES = env_int("MAILBOX_MAX_MESSAGE_BYTES", 25 * 1024 * 1024, minimum=1024)
MAILBOX_MAX_ATTEMPTS = env_int("MAILBOX_MAX_ATTEMPTS", 3, minimum=1)  # then the message is quarantined
MAILBOX_FETCH_BATCH = env_int("MAILBOX_FETCH_BATCH", 200, minimum=1)  # UIDs per FETCH (PERF-NOTES)
MAILBOX_FETCH_BATCH_BYTES = env_int("MAILBOX_FETCH_BATCH_BYTES", 32 * 1024 * 1024, minimum=1024)
# A poll applies the post-processing action (archive, mark read, delete) to this many processed
# messages at a time (or a tenth of the folder, when that is more), or to fewer once the first of
# them has waited MAILBOX_ACTION_DELAY seconds, and to the rest at the end of the pass
# (mailboxes/reading.py; bench/README.md, "Ingest").
MAILBOX_ACTION_BATCH = env_int("MAILBOX_ACTION_BATCH", 2000, minimum=1)
MAILBOX_ACTION_DELAY = env_int("MAILBOX_ACTION_DELAY", 10, minimum=0)
# Messages whose intake shares one transaction (mailboxes.intake.messages_process), at most a fetch
# batch. 200: a batch's fixed cost (its transaction, ~26 statements, the counter lock taken once) over
# more messages: +13-16% messages/s against 50 at N = 10,000 (bench/README.md, "Ingest"); the tenant's
# shipment counter stays locked until the batch commits (~0.1-0.2 s of a worker here).
MAILBOX_INTAKE_BATCH = env_int("MAILBOX_INTAKE_BATCH", 200, minimum=1)
# Worker processes that run the intake of a poll's new messages (classify, then shipments, activities,
# documents, each batch in its own transaction) when there are more than one intake batch of them
# (mailboxes/prepare.py); 0: all in the polling process. MAILBOX_INTAKE_IN_WORKERS=false: the
# workers only classify. Only `mailbox poll --once` and other non-daemon processes start them.
# Default: one per core (at least 1, at most 4): the polling process itself mostly waits on IMAP
# and on them (bench/README.md, "Ingest": on 2 cores, 2 workers ingest ~1.4x what 1 does).
MAILBOX_INTAKE_PROCESSES = env_int("MAILBOX_INTAKE_PROCESSES", min(max(os.cpu_count() or 1, 1), 4), minimum=0)
MAILBOX_INTAKE_IN_WORKERS = env_bool("MAILBOX_INTAKE_IN_WORKERS", True)  # prepare.py: the workers run the intake too
MAILBOX_POLL_MAX_BACKOFF = env_int("MAILBOX_POLL_MAX_BACKOFF", 3600, minimum=1)  # seconds, after errors
MAILBOX_POLL_LOCK_TTL = env_int("MAILBOX_POLL_LOCK_TTL", 900, minimum=10)  # a crashed poller's lock expires
MAILBOX_IDLE_MAX_CONNECTIONS = env_int("MAILBOX_IDLE_MAX_CONNECTIONS", 50, minimum=1)
MAILBOX_IDLE_RENEW_SECONDS = env_int("MAILBOX_IDLE_RENEW_SECONDS", 25 * 60, minimum=1)  # RFC 2177: < 29 min
MAILBOX_IDLE_REFRESH_SECONDS = env_int("MAILBOX_IDLE_REFRESH_SECONDS", 60, minimum=1)  # new/removed mailboxes
# IMAP connections a poller process keeps open between polls (mailboxes/sessions.py); 0: none.
MAILBOX_IMAP_KEEP_CONNECTIONS = env_int("MAILBOX_IMAP_KEEP_CONNECTIONS", 100, minimum=0)
MAILBOX_IMAP_KEEP_MAX_AGE = env_int("MAILBOX_IMAP_KEEP_MAX_AGE", 600, minimum=1)  # seconds, then a new login
MAILBOX_IMAP_KEEP_IDLE = env_int("MAILBOX_IMAP_KEEP_IDLE", 300, minimum=1)  # seconds unused, then logged out

# The system relay for "Email Assistant" mail and for senders without a connected mailbox.
RELAY_SMTP_URL = env_url("RELAY_SMTP_URL", "", schemes=("smtp", "smtp+starttls", "smtps"))
RELAY_FROM_EMAIL = env_str("RELAY_FROM_EMAIL", "assistant@tms.localhost")
if not re.fullmatch(r"[^@\s]+@[^@\s]+", RELAY_FROM_EMAIL):
    raise ImproperlyConfigured(f"RELAY_FROM_EMAIL: not an e-mail address: {RELAY_FROM_EMAIL!r}")
DEFAULT_FROM_EMAIL = RELAY_FROM_EMAIL
RELAY_FROM_NAME = env_str("RELAY_FROM_NAME", "Email Assistant")
# Everything django.core.mail sends goes through the outbound service (mailboxes/sending.py).
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "mailboxes.mail_backend.EmailBackend")

# Redis for what all workers share (send throttles, poll locks). Empty: the database does it
# (fine for one machine and the demo).
REDIS_URL = env_url("REDIS_URL", "", schemes=("redis", "rediss"))
# With Redis, Django's cache is Redis too, and sessions are "cached_db": a page reads its session from
# Redis instead of the database (bench/README.md, "Pages"); every write still goes to the database,
# so a flushed or restarted Redis logs nobody out (while Redis is down, pages fail as polling and
# sending do). Without Redis: database sessions and a per-process cache (a per-process session
# cache would keep a session alive in one process after a logout in another). tms.cache.RedisCache is
# Django's Redis cache keeping one client object instead of building one per call (~0.14 ms each).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "tms.cache.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": "tms-cache",
                          "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2}}}
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# Outbound mail (mailboxes/sending.py).
OUTBOUND_MAX_ATTEMPTS = env_int("OUTBOUND_MAX_ATTEMPTS", 6, minimum=1)         # SMTP 4xx retries, then FAILED
OUTBOUND_RETRY_SECONDS = env_int("OUTBOUND_RETRY_SECONDS", 60, minimum=1)      # first backoff, doubling, max 1 h
OUTBOUND_SENDING_TIMEOUT = env_int("OUTBOUND_SENDING_TIMEOUT", 900, minimum=60)  # SENDING longer = worker died
MAILBOX_SMTP_MAX_MESSAGE_BYTES = env_int("MAILBOX_SMTP_MAX_MESSAGE_BYTES", 25 * 1024 * 1024, minimum=1024)
RELAY_SEND_PER_MINUTE = env_int("RELAY_SEND_PER_MINUTE", 0)                    # 0: no limit
RELAY_MAX_CONNECTIONS = env_int("RELAY_MAX_CONNECTIONS", 0)                    # 0: no limit
# Message-IDs we generate end in @<this>, so that replies are recognised (sending.is_our_message_id).
MAILBOX_MESSAGE_ID_DOMAIN = env_str(
    "MAILBOX_MESSAGE_ID_DOMAIN", f"tms.{urlsplit(SITE_URL).hostname or 'localhost'}"
).lower()
# Who counts as "a contact known to the company" for mailboxes limited to known contacts: a dotted
# path to f(*, tenant, address) -> bool. The default: its contacts and staff, and anyone it received
# mail from (shipments.selectors.contact_is_known, which falls back to mailboxes.sending.known_contact_default).
MAILBOX_KNOWN_CONTACT_CHECKER = env_str(
    "MAILBOX_KNOWN_CONTACT_CHECKER", "shipments.selectors.contact_is_known"
)
CELERY_BEAT_SCHEDULE["mailboxes-outbound-sweep"] = {
    "task": "mailboxes.outbound_sweep",
    "schedule": env_int("OUTBOUND_SWEEP_INTERVAL", 60, minimum=5),
}

# OAuth providers. Endpoints are settings so that tests point them at a local OAuth server.
GOOGLE_CLIENT_ID = env_str("GOOGLE_CLIENT_ID")
GOOGLE_CLIENT_SECRET = env_str("GOOGLE_CLIENT_SECRET")
GOOGLE_AUTH_URI = env_url("GOOGLE_AUTH_URI", "https://accounts.google.com/o/oauth2/auth", schemes=("https",))
GOOGLE_TOKEN_URI = env_url("GOOGLE_TOKEN_URI", "https://oauth2.googleapis.com/token", schemes=("https",))
GOOGLE_REVOKE_URI = env_url("GOOGLE_REVOKE_URI", "https://oauth2.googleapis.com/revoke", schemes=("https",))
GOOGLE_IMAP_HOST = env_str("GOOGLE_IMAP_HOST", "imap.gmail.com")
GOOGLE_IMAP_PORT = env_int("GOOGLE_IMAP_PORT", 993, minimum=1)
GOOGLE_SMTP_HOST = env_str("GOOGLE_SMTP_HOST", "smtp.gmail.com")
GOOGLE_SMTP_PORT = env_int("GOOGLE_SMTP_PORT", 465, minimum=1)
GOOGLE_SMTP_SECURITY = env_str("GOOGLE_SMTP_SECURITY", "ssl")  # ssl (465) | starttls (587)

MICROSOFT_CLIENT_ID = env_str("MICROSOFT_CLIENT_ID")
MICROSOFT_CLIENT_SECRET = env_str("MICROSOFT_CLIENT_SECRET")
MICROSOFT_AUTHORITY = env_url(
    "MICROSOFT_AUTHORITY", "https://login.microsoftonline.com/common", schemes=("https",)
)
MICROSOFT_IMAP_HOST = env_str("MICROSOFT_IMAP_HOST", "outlook.office365.com")
MICROSOFT_IMAP_PORT = env_int("MICROSOFT_IMAP_PORT", 993, minimum=1)
MICROSOFT_SMTP_HOST = env_str("MICROSOFT_SMTP_HOST", "smtp.office365.com")
MICROSOFT_SMTP_PORT = env_int("MICROSOFT_SMTP_PORT", 587, minimum=1)
MICROSOFT_SMTP_SECURITY = env_str("MICROSOFT_SMTP_SECURITY", "starttls")  # starttls (587) | ssl
for _name in ("GOOGLE_SMTP_SECURITY", "MICROSOFT_SMTP_SECURITY"):
    if globals()[_name] not in {"ssl", "starttls"}:
        raise ImproperlyConfigured(f"{_name}: expected ssl or starttls, got {globals()[_name]!r}")
# Access tokens are refreshed this many seconds before they expire.
MAILBOX_TOKEN_REFRESH_MARGIN = env_int("MAILBOX_TOKEN_REFRESH_MARGIN", 300)
# How long the emailed authorization link of an IMAP/SMTP mailbox stays valid.
MAILBOX_AUTHORIZATION_LINK_HOURS = env_int("MAILBOX_AUTHORIZATION_LINK_HOURS", 24, minimum=1)

# Documents (documents/): attachments stored once per tenant, read, and matched to shipments.
DOCUMENT_STORAGE = env_str("DOCUMENT_STORAGE", "default")  # an alias of STORAGES; never served publicly
DOCUMENT_MAX_BYTES = env_int("DOCUMENT_MAX_BYTES", 20 * 1024 * 1024, minimum=1)  # larger: failed, not kept
DOCUMENT_MAX_PAGES = env_int("DOCUMENT_MAX_PAGES", 50, minimum=1)  # PDF pages read for text
DOCUMENT_MAX_TEXT_CHARS = env_int("DOCUMENT_MAX_TEXT_CHARS", 200_000, minimum=1000)  # text kept per document
# Decompression bombs: no single PDF stream may inflate beyond this; the whole read stops after
# DOCUMENT_EXTRACT_SECONDS (the task's soft time limit adds a margin for a page that will not stop).
DOCUMENT_MAX_DECOMPRESSED_BYTES = env_int("DOCUMENT_MAX_DECOMPRESSED_BYTES", 32 * 1024 * 1024, minimum=1024)
DOCUMENT_EXTRACT_SECONDS = env_int("DOCUMENT_EXTRACT_SECONDS", 30, minimum=1)
CELERY_BEAT_SCHEDULE["documents-process-stale"] = {  # documents whose processing task got lost
    "task": "documents.process_stale",
    "schedule": float(env_int("DOCUMENT_SWEEP_INTERVAL", 300, minimum=10)),
}

# ----------------------------------------------------------------------------- logging

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL: expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
# json: one JSON object a line with tenant/mailbox/message ids (tms/logging.py); plain: for a terminal.
LOG_FORMAT = env_str("LOG_FORMAT", "plain" if DEBUG else "json").lower()
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT: expected json or plain, got {LOG_FORMAT!r}")
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)

# ----------------------------------------------------------------------------- operations

# /metrics (Prometheus) answers only requests with "Authorization: Bearer <METRICS_TOKEN>"; empty: off.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Collectors read from the database at scrape time (right across all worker processes and hosts).
METRICS_COLLECTORS = env_list("METRICS_COLLECTORS", "mailboxes.metrics.DatabaseCollector")
# Celery workers serve their own in-process metrics (poll durations, counters) on this port; 0: off.
# With PROMETHEUS_MULTIPROC_DIR set (prometheus-client's own variable) the pool's children are summed.
METRICS_WORKER_PORT = env_int("METRICS_WORKER_PORT", 0)
# The ops page (/ops/) lists mailboxes not polled for this long, or failing this many times in a row.
OPS_STALE_POLL_MINUTES = env_int("OPS_STALE_POLL_MINUTES", 15, minimum=1)
OPS_FAILURE_THRESHOLD = env_int("OPS_FAILURE_THRESHOLD", 3, minimum=1)

PASSWORD_RESET_TIMEOUT = int(timedelta(hours=24).total_seconds())
