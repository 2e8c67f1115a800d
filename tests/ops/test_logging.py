"""Structured logs: JSON lines carrying tenant, mailbox and message ids, never bodies or secrets.

The unit tests drive tms/logging.py directly; the end-to-end ones run a real poll against Dovecot
and a real send to aiosmtpd through the production handler configuration (settings.LOGGING)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailboxes import reading, sending
from tests.factories import make_staff, make_tenant
from tests.mailboxes.reading_support import PASSWORD, append, make_reader, message
from tests.mailboxes.sending_support import PASSWORD as SMTP_PASSWORD
from tests.mailboxes.sending_support import imap_mailbox
from tms.logging import ContextFilter, JsonFormatter, RedactFilter, log_context, logging_config, redact

ROOT = Path(__file__).resolve().parents[2]


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def captured() -> Iterator[Captured]:
    """The production handler (settings.LOGGING's console: context + redaction + JSON) on the root logger."""
    out = Captured()
    config = logging_config(log_format="json", level="DEBUG")["handlers"]["console"]
    handler = logging.StreamHandler(out.stream)
    handler.setFormatter(JsonFormatter())
    assert config["filters"] == ["context", "redact"]
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_it_writes_one_json_object_a_line_with_the_context_ids(captured: Captured) -> None:
    log = logging.getLogger("tms.test")
    with log_context(tenant="acme", mailbox=7):
        log.info("outer %s", "line")
        with log_context(inbound=42):
            log.warning("inner")
        log.info("after inner")
    log.info("outside")
    lines = captured.lines()
    assert [line["message"] for line in lines] == ["outer line", "inner", "after inner", "outside"]
    assert (lines[0]["tenant"], lines[0]["mailbox"], "inbound" in lines[0]) == ("acme", 7, False)
    assert (lines[1]["tenant"], lines[1]["mailbox"], lines[1]["inbound"], lines[1]["level"]) == ("acme", 7, 42, "WARNING")
    assert "inbound" not in lines[2] and lines[2]["mailbox"] == 7
    assert "tenant" not in lines[3] and "mailbox" not in lines[3]
    assert lines[0]["logger"] == "tms.test" and lines[0]["time"].endswith("+00:00")


def test_it_refuses_unknown_context_keys() -> None:
    with pytest.raises(ValueError, match="unknown keys"), log_context(body="x"):
        pass


@pytest.mark.parametrize(("text", "secret"), [
    ("login failed for alice password=hunter2x", "hunter2x"),
    ("config {'password': 'hunter2x', 'host': 'imap'}", "hunter2x"),
    ('{"client_secret": "s3cr3t-value"}', "s3cr3t-value"),
    ("refresh_token=1//0gAbCdEf-very-long", "1//0gAbCdEf-very-long"),
    ("headers {'Authorization': 'Bearer abc.def.ghi'}", "abc.def.ghi"),
    ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("sent auth=Bearer ya29.a0AfH6SMB", "ya29.a0AfH6SMB"),
    ("relay smtp://user:topsecret@relay.example:587 refused", "topsecret"),
    ("token eyJhbGciOiJSUzI1NiJ9.eyJlbWFpbCI6ImFAYi5jIn0.c2lnbmF0dXJl seen", "eyJhbGciOiJSUzI1NiJ9"),
    ("value gAAAAABkZXJ0eXVpb3Bhc2RmZ2hqa2x6eGN2Ym5tMTIzNDU2Nzg5MA== stored", "gAAAAABkZXJ0eXVp"),
])
def test_it_redacts_what_looks_like_a_secret(captured: Captured, text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert "REDACTED" in redact(text)
    logging.getLogger("tms.test").info("%s", text)
    assert secret not in captured.text


def test_it_keeps_ordinary_lines_as_they_are() -> None:
    for text in ("mailbox 7: polled {'mailbox': 7, 'fetched': 3}", "token refresh failed: invalid_grant",
                 "outbound 12 sent via mailbox", "IMAP: [AUTHENTICATIONFAILED] Authentication failed."):
        assert redact(text) == text


def test_it_redacts_tracebacks_and_extras(captured: Captured) -> None:
    try:
        raise RuntimeError("connect smtp://bob:pa55word@mail.example failed")
    except RuntimeError:
        logging.getLogger("tms.test").exception("send failed", extra={"access_token": "tok-123456", "rows": 3})
    line = captured.lines()[-1]
    assert "pa55word" not in captured.text and "tok-123456" not in captured.text
    assert "RuntimeError" in line["error"] and line["access_token"] == "[REDACTED]" and line["rows"] == 3


def test_it_cuts_a_runaway_line(captured: Captured) -> None:
    logging.getLogger("tms.test").info("x" * 20_000)
    assert len(captured.lines()[-1]["message"]) < 4200


def test_it_defaults_to_json_with_debug_off_and_plain_with_debug_on(tmp_path: Path) -> None:
    code = "from django.conf import settings as s; print(s.LOG_FORMAT, s.LOGGING['handlers']['console']['formatter'])"
    base = {"PATH": str(Path(sys.executable).parent), "VAR_DIR": str(tmp_path), "HOME": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "tms.settings"}
    prod = {**base, "DEBUG": "0", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "a.example",
            "FIELD_ENCRYPTION_KEYS": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    outputs = []
    for env in (prod, {**base, "DEBUG": "1"}, {**prod, "LOG_FORMAT": "plain"}):
        result = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.split())
    assert outputs == [["json", "json"], ["plain", "plain"], ["plain", "plain"]]


def test_the_plain_format_carries_the_context_too() -> None:
    config = logging_config(log_format="plain", level="INFO")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(config["formatters"]["plain"]["format"]))
    handler.addFilter(ContextFilter())
    record = logging.LogRecord("tms.test", logging.INFO, __file__, 1, "hello", None, None)
    with log_context(tenant="acme", mailbox=3):
        handler.handle(record)
    assert "tms.test [tenant=acme mailbox=3] hello" in stream.getvalue()


# ----------------------------------------------------------------------------- the real paths


@pytest.mark.django_db
def test_a_real_poll_logs_ids_but_neither_bodies_nor_passwords(
    reading_settings: Any, handler_log: Any, dovecot: Any, captured: Captured,
) -> None:
    tenant = make_tenant("logco", "Log Co")
    staff = make_staff(tenant, "reader@logco.example")
    mailbox = make_reader(staff, dovecot)
    body = "SECRET-BODY-TEXT the customer's private details\n"
    for n in range(2):
        append(dovecot, mailbox.email_address, message(f"quote {n}", body=body))
    handler_log.raise_for.add("quote 1")  # one fails: its error is logged with its id

    result = reading.mailbox_poll(mailbox_id=mailbox.pk)

    assert result.new == 2 and result.failed == 1
    lines = captured.lines()
    ours = [line for line in lines if line.get("mailbox") == mailbox.pk]
    assert ours and all(line["tenant"] == "logco" for line in ours)
    assert any("polled" in line["message"] for line in ours)
    failed_id = next(m.pk for m in mailbox.inbound_messages.all() if m.subject == "quote 1")
    failure = [line for line in ours if line.get("inbound") == failed_id and line["level"] == "ERROR"]
    assert failure and "intake failed" in failure[0]["message"] and "RuntimeError" in failure[0]["error"]
    assert "SECRET-BODY-TEXT" not in captured.text
    assert PASSWORD not in captured.text


@pytest.mark.django_db
def test_a_real_send_logs_the_outbound_id_and_no_body(
    send_settings: Any, dovecot: Any, smtp_server: Any, captured: Captured,
) -> None:
    tenant = make_tenant("sendlog", "Send Log")
    staff = make_staff(tenant, "sender@sendlog.example")
    mailbox = imap_mailbox(staff, dovecot, smtp_port=smtp_server.submission_port, smtp_users=smtp_server)
    outbound = sending.message_queue(tenant=tenant, staff=staff, mailbox=mailbox, to=["x@example.net"],
                                     subject="Rate", body_text="PRIVATE-BODY-TEXT\n", enqueue=False)
    result = sending.message_deliver(outbound_id=outbound.pk)
    assert result.status == "sent"
    sent_lines = [line for line in captured.lines() if line["message"] == f"outbound {outbound.pk} sent via mailbox"]
    assert sent_lines and sent_lines[0]["outbound"] == outbound.pk
    assert sent_lines[0]["mailbox"] == mailbox.pk and sent_lines[0]["tenant"] == "sendlog"
    assert "PRIVATE-BODY-TEXT" not in captured.text and SMTP_PASSWORD not in captured.text
