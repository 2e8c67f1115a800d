"""Structured logs: one JSON object a line, carrying which tenant, mailbox and message a line is about.

- `log_context(tenant=..., mailbox=..., inbound=..., outbound=...)` puts ids in a contextvar for
  the code below it (the poll and send paths call it); ContextFilter copies them onto every record
  logged meanwhile, whichever logger logs it (imapclient, celery, ours).
- RedactFilter scrubs what looks like a secret (password=..., token=..., Authorization headers,
  bearer tokens, JWTs, Fernet tokens, credentials in URLs) from the message and the traceback: a
  last line of defence, since the code never logs secrets or bodies on purpose (STYLE.md 9).
- JsonFormatter writes the record as JSON (LOG_FORMAT=json, the default with DEBUG off); the plain
  format adds the same context as `[tenant=acme mailbox=7]`.

Imports nothing of the apps: tms/ is imported by all and imports none of them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The ids a log line may carry: tenant slug, mailbox id, InboundMessage id, OutboundMessage id, task.
# (Not "message": that is the log line's text in the JSON.)
CONTEXT_KEYS = ("tenant", "mailbox", "inbound", "outbound", "task")
MAX_MESSAGE_CHARS = 4000  # a runaway log line (a body pasted into an error) is cut, not shipped whole

_context: ContextVar[dict[str, Any] | None] = ContextVar("tms_log_context", default=None)


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Add ids to every log record made inside the block (nested blocks add to the outer ones).

    `with log_context(tenant=mailbox.tenant.slug, mailbox=mailbox.pk): ...`
    """
    unknown = set(ids) - set(CONTEXT_KEYS)
    if unknown:
        raise ValueError(f"log_context: unknown keys {sorted(unknown)}; use {CONTEXT_KEYS}")
    merged = {**(_context.get() or {}), **{k: v for k, v in ids.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copies the current log_context onto the record (record.tenant, record.mailbox, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get() or {}
        for key in CONTEXT_KEYS:
            if key in context and not hasattr(record, key):
                setattr(record, key, context[key])
        text = " ".join(f"{key}={getattr(record, key)}" for key in CONTEXT_KEYS
                        if getattr(record, key, None) is not None)
        record.context_text = f" [{text}]" if text else ""
        return True


# Words that name secrets, as (part of) a key: password, client_secret, refresh_token, api_key ...
_SECRET_WORDS = r"(?:passw(?:or)?d|pwd|secret|token|api_?key|credentials?)"  # noqa: S105
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Bearer xyz / Basic xyz (HTTP headers, as dicts or text)
    (re.compile(r"(?i)(['\"]?(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(?:bearer|basic|digest)?\s*[^'\"\s,}]+"),
     r"\1[REDACTED]"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1[REDACTED]"),
    # key=value, key: value, "key": "value" for words that name secrets
    (re.compile(rf"(?i)(['\"]?\b\w*{_SECRET_WORDS}\w*['\"]?\s*[:=]\s*)(['\"])(?:(?!\2).)*\2"), r"\1\2[REDACTED]\2"),
    (re.compile(rf"(?i)(['\"]?\b\w*{_SECRET_WORDS}\w*['\"]?\s*[:=]\s*)(?!\[REDACTED\])[^\s,;&'\"}}\]]+"),
     r"\1[REDACTED]"),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]+:)[^/\s@]+@"), r"\1[REDACTED]@"),
    # JWTs (OAuth access and id tokens) and Fernet tokens (our encrypted fields), wherever they appear
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]+"), "[REDACTED-JWT]"),
    (re.compile(r"\bgAAAAA[A-Za-z0-9_\-=]{20,}"), "[REDACTED-FERNET]"),
]


def redact(text: str) -> str:
    """The text with anything that looks like a password, token or credential replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """Formats the message once, redacted, and drops the args (so no handler formats them again)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + f"... [{len(message) - MAX_MESSAGE_CHARS} chars cut]"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


# Attributes every LogRecord has; anything else on a record came from `extra=` or a filter.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "context_text"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the context ids, extras, error."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        for key, value in vars(record).items():
            if key in _STANDARD or key in data or key.startswith("_"):
                continue
            if re.search(_SECRET_WORDS, key, re.IGNORECASE):
                data[key] = "[REDACTED]"
            elif isinstance(value, str):
                data[key] = redact(value)
            elif isinstance(value, int | float | bool | type(None)):
                data[key] = value
            else:
                data[key] = redact(repr(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            data["error"] = record.exc_text
        if record.stack_info:
            data["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(data, ensure_ascii=False, default=str)


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING dict for settings.py: one console handler, context and redaction on every record."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "tms.logging.ContextFilter"},
            "redact": {"()": "tms.logging.RedactFilter"},
        },
        "formatters": {
            "json": {"()": "tms.logging.JsonFormatter"},
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s%(context_text)s %(message)s"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["context", "redact"],
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # Protocol wire dumps carry message bodies (and would carry credentials): never, even at DEBUG.
            "imapclient": {"level": "INFO"},
            "imapclient.imaplib": {"level": "WARNING"},
            "aiosmtplib": {"level": "INFO"},
            "mail.log": {"level": "INFO"},
        },
    }
