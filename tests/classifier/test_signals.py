"""Auto-replies, bounces and bulk mail, from headers first."""

from __future__ import annotations

import pytest

from classifier import detect_noise, parse_headers, signals_from_headers
from classifier.signals import signals_from_body

from .mail import mail


def signals(headers: dict[str, str], subject: str = "Hello", sender: str = "Pat <pat@x.example>"):
    return signals_from_headers(parse_headers(mail("body", subject=subject, sender=sender, headers=headers)))


@pytest.mark.parametrize(("headers", "subject"), [
    ({"Auto-Submitted": "auto-replied"}, "Re: rate"),
    ({"X-Autoreply": "yes"}, "Re: rate"),
    ({"Precedence": "auto_reply"}, "Re: rate"),
    ({}, "Out of Office: Re: rate request"),
    ({}, "Automatic reply: Rate confirmation"),
    ({}, "Auto: pickup tomorrow"),
    ({}, "Réponse automatique : soumission"),
    ({}, "Respuesta automática: cotización"),
])
def test_it_recognises_auto_replies(headers: dict[str, str], subject: str) -> None:
    found = signals(headers, subject)
    assert found.auto_reply and found.noise and found.reason


def test_it_does_not_treat_a_generated_notification_as_an_auto_reply() -> None:
    assert not signals({"Auto-Submitted": "auto-generated"}, "Status update: SHP-105610").noise


def test_it_recognises_a_delivery_status_report_as_a_bounce() -> None:
    raw = mail("x", headers={"Content-Type": 'multipart/report; report-type="delivery-status"; boundary="b"'})
    raw = raw.replace(b'Content-Type: text/plain; charset="utf-8"\r\n', b"", 1)
    assert detect_noise(raw) == "multipart/report (delivery-status)"


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@mx1.example", "Mail Delivery Subsystem <mailer-daemon@g.example>",
                                    "postmaster@x.example"])
def test_it_recognises_a_bounce_by_its_sender(sender: str) -> None:
    assert signals({}, "Undelivered Mail Returned to Sender", sender).bounce


@pytest.mark.parametrize("headers", [{"Precedence": "bulk"}, {"List-Id": "<weekly.x.example>"},
                                     {"List-Unsubscribe": "<mailto:stop@x.example>"}])
def test_it_recognises_bulk_mail_by_its_headers(headers: dict[str, str]) -> None:
    assert signals(headers).bulk


def test_it_recognises_bulk_mail_by_its_unsubscribe_footer() -> None:
    assert signals_from_body("Trucks available!\nReply STOP to be removed from this list.").bulk
    assert not signals_from_body("Please quote Dallas, TX to Atlanta, GA.").noise


def test_it_finds_no_noise_in_a_person_s_mail() -> None:
    assert detect_noise(mail("Please quote Dallas, TX 75207 to Atlanta, GA 30336.")) is None


def test_it_answers_for_any_bytes() -> None:
    assert detect_noise(b"\xff\x00garbage") is None
