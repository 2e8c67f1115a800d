"""Mail that no person wrote to us: auto-replies, bounces and bulk mail.

Headers decide where they can (RFC 3834 Auto-Submitted, Precedence, RFC 2369 List-* headers,
RFC 3464 multipart/report); subjects and sender addresses catch the clients that set none.
A notification a system generates on purpose (Auto-Submitted: auto-generated, a tracking update,
a load tender) is not noise by itself: it can carry real work. For the same reason
X-Auto-Response-Suppress alone is no signal: Exchange sets it on out-of-office replies, but TMS and
tracking systems set it on the tenders and status mail they send too.

Noise keeps a message from being a quote or a pickup; a shipment number still makes it
operations (SCHEMA.md's rules are ordered, and rule 3 comes before "everything else").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .caseless import Caseless
from .parse import Headers, parse_headers


@dataclass(frozen=True, slots=True)
class Signals:
    auto_reply: bool = False
    bounce: bool = False
    bulk: bool = False
    reason: str | None = None

    @property
    def noise(self) -> bool:
        return self.auto_reply or self.bounce or self.bulk

    def to_dict(self) -> dict[str, object]:
        return {"auto_reply": self.auto_reply, "bounce": self.bounce, "bulk": self.bulk, "reason": self.reason}


_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver(?:able|ed)\b|undelivered\s+mail|delivery\s+status\s+notification|delivery\s+(?:has\s+)?failed"
    r"|delivery\s+failure|mail\s+delivery\s+(?:failed|failure|subsystem)|returned\s+mail|failure\s+notice"
    r"|message\s+not\s+delivered|non\s+remis|no\s+se\s+puede\s+entregar|unzustellbar)", re.IGNORECASE)
_BOUNCE_SENDER = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|bounce[s]?)(?:[@+]|$)", re.IGNORECASE)
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:(?:re|aw|fw|fwd)\s*:\s*)*(?:out\s+of\s+(?:the\s+)?office|automatic\s+reply|auto(?:matic)?[\s-]?reply"
    r"|auto\s*:|autoreply|auto-response|autoresponse|ooo\b|away\s+from\s+(?:the\s+)?office|on\s+vacation"
    r"|vacation\s+(?:reply|notice|message)|abwesenheit|r[ée]ponse\s+automatique|absent\s+du\s+bureau"
    r"|respuesta\s+autom[áa]tica|fuera\s+de\s+(?:la\s+)?oficina)", re.IGNORECASE)
_BULK_PRECEDENCE = frozenset(("bulk", "list", "junk"))
_BULK_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post", "X-Campaign-Id", "X-Mailchimp-Campaign")
_BULK_BODY = Caseless(
    r"\bunsubscribe\b|\bto\s+be\s+removed\s+from\s+(?:this|our|the)\s+(?:mailing\s+)?list\b"
    r"|\breply\s+stop\b|\bdarse\s+de\s+baja\b|\bse\s+d[ée]sabonner\b|\bd[ée]sinscri")


def signals_from_headers(headers: Headers, *, subject: str | None = None, from_addr: str | None = None) -> Signals:
    subject = headers.get("Subject") if subject is None else subject
    if from_addr is None:
        from_addr = headers.get("From")
        if "<" in from_addr:
            from_addr = from_addr.split("<", 1)[1].split(">", 1)[0]
    return _bounce(headers, subject, from_addr or "") or _auto_reply(headers, subject) or _bulk(headers) or Signals()


def _bounce(headers: Headers, subject: str, from_addr: str) -> Signals | None:
    report_type = headers.report_type
    if headers.content_type == "multipart/report" and report_type in ("delivery-status", "", "feedback-report"):
        return Signals(bounce=True, reason=f"multipart/report ({report_type or 'no report-type'})")
    if _BOUNCE_SENDER.match(from_addr):
        return Signals(bounce=True, reason=f"sender is {from_addr.split('@', maxsplit=1)[0].lower()}")
    if _BOUNCE_SUBJECT.match(subject) and headers.get("Return-Path") in ("<>", ""):
        return Signals(bounce=True, reason="delivery-failure subject from the null sender")
    return None


def _auto_reply(headers: Headers, subject: str) -> Signals | None:
    reason = None
    auto = headers.get("Auto-Submitted").lower()
    if headers.content_type == "multipart/report" and headers.report_type == "disposition-notification":
        reason = "read receipt (disposition-notification)"
    elif auto.startswith("auto-replied"):
        reason = f"Auto-Submitted: {auto}"
    elif headers.get("Precedence").lower() == "auto_reply":
        reason = "Precedence: auto_reply"
    elif _AUTO_SUBJECT.match(subject):
        reason = "auto-reply subject"
    else:
        for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Reply", "X-Autoresponder"):
            value = headers.get(name).lower()
            if value and value not in ("no", "false", "0"):
                reason = f"{name}: {value}"
                break
    return Signals(auto_reply=True, reason=reason) if reason else None


def _bulk(headers: Headers) -> Signals | None:
    precedence = headers.get("Precedence").lower()
    if precedence in _BULK_PRECEDENCE:
        return Signals(bulk=True, reason=f"Precedence: {precedence}")
    for name in _BULK_HEADERS:
        if name in headers:
            return Signals(bulk=True, reason=f"{name} header")
    return None


def signals_from_body(text: str) -> Signals:
    """Bulk mail sent without list headers still tells readers how to unsubscribe."""
    if _BULK_BODY.search(text):
        return Signals(bulk=True, reason="unsubscribe instructions in the body")
    return Signals()


def detect_noise(raw: bytes) -> str | None:
    """Why a message is an auto-reply, a bounce or bulk mail, from its headers alone; None if it is not."""
    try:
        signals = signals_from_headers(parse_headers(raw))
    except Exception:
        return None
    return signals.reason if signals.noise else None
