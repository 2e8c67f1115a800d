"""django.core.mail through the outbound service (EMAIL_BACKEND = mailboxes.mail_backend.EmailBackend)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.mail import EmailMultiAlternatives, get_connection

from mailboxes import sending
from mailboxes.models import OutboundMessage
from tests.factories import make_mailbox
from tms.accounts.models import Staff

pytestmark = pytest.mark.django_db
BACKEND = "mailboxes.mail_backend.EmailBackend"


def test_the_settings_route_django_mail_through_the_service() -> None:
    from tms import settings as configured

    assert configured.EMAIL_BACKEND == BACKEND


def test_mail_from_a_staff_member_is_queued_through_their_mailbox(
    send_settings: Any, bob: Staff, django_capture_on_commit_callbacks: Any
) -> None:
    mailbox = make_mailbox(bob, "bob.box@example.test", is_default=True)
    message = EmailMultiAlternatives("Quote", "Plain text", "Bob <bob@acme.test>", ["c@example.test"],
                                     cc=["cc@example.test"], connection=get_connection(BACKEND),
                                     headers={"X-TMS-Related": "shipment:123"})
    message.attach_alternative("<p>HTML</p>", "text/html")
    message.attach("rate.csv", "a,b\n1,2\n", "text/csv")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert message.send() == 1

    outbound = OutboundMessage.objects.for_tenant(bob.tenant).get()
    assert outbound.mailbox == mailbox and outbound.related == "shipment:123" and len(callbacks) == 1
    raw = bytes(outbound.raw)
    assert b"X-TMS-Related" not in raw and b"rate.csv" in raw and b"text/html" in raw


def test_system_mail_without_a_company_goes_through_the_relay_now(send_settings: Any, smtp_server: Any) -> None:
    send_settings.RELAY_SMTP_URL = f"smtp://127.0.0.1:{smtp_server.sink_port}"
    message = EmailMultiAlternatives("Reset your password", "Click", "Email Assistant <assistant@tms.localhost>",
                                     ["someone@example.test"], connection=get_connection(BACKEND))
    assert message.send() == 1
    got = smtp_server.wait_for(lambda m: m.subject == "Reset your password" and "someone@example.test" in m.rcpt_tos)
    assert sending.is_our_message_id(got.message_id)
    assert not OutboundMessage.unscoped.exists()


def test_company_system_mail_is_logged_and_the_tenant_header_removed(
    send_settings: Any, acme: Any, django_capture_on_commit_callbacks: Any
) -> None:
    send_settings.RELAY_SMTP_URL = "smtp://127.0.0.1:25"
    message = EmailMultiAlternatives("Mailbox needs you", "Reconnect", None, ["x@example.test"],
                                     headers={"X-TMS-Tenant": "acme"}, connection=get_connection(BACKEND))
    with django_capture_on_commit_callbacks(execute=False):
        message.send()
    outbound = OutboundMessage.objects.for_tenant(acme).get()
    assert outbound.route == "relay" and b"X-TMS-Tenant" not in bytes(outbound.raw)


def test_a_refused_message_raises_unless_fail_silently(send_settings: Any) -> None:
    message = EmailMultiAlternatives("s", "b", None, ["x@example.test"], connection=get_connection(BACKEND))
    with pytest.raises(sending.SendRefused, match="RELAY_SMTP_URL"):
        message.send()
    assert EmailMultiAlternatives("s", "b", None, ["x@example.test"],
                                  connection=get_connection(BACKEND, fail_silently=True)).send() == 0


def test_send_messages_from_one_staff_member_is_one_batch_and_a_refused_one_fails_alone(
    send_settings: Any, bob: Staff, django_capture_on_commit_callbacks: Any
) -> None:
    mailbox = make_mailbox(bob, "bob.batch@example.test", is_default=True)
    backend = get_connection(BACKEND, fail_silently=True)

    def message(subject: str) -> EmailMultiAlternatives:
        return EmailMultiAlternatives(subject, "Plain text", "Bob <bob@acme.test>", ["c@example.test"])

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert backend.send_messages([message(f"Quote {i}") for i in range(3)]) == 3
    assert len(callbacks) == 1  # one delivery task for the batch (one SMTP connection)
    assert sorted(OutboundMessage.objects.for_tenant(bob.tenant).values_list("subject", flat=True)) == [
        "Quote 0", "Quote 1", "Quote 2"]
    assert {o.mailbox_id for o in OutboundMessage.objects.for_tenant(bob.tenant)} == {mailbox.pk}

    with django_capture_on_commit_callbacks(execute=False):
        assert backend.send_messages([message("Quote 3"), message("Bad\nBcc: x@example.test"), message("Quote 4")]) == 2
    assert OutboundMessage.objects.for_tenant(bob.tenant).filter(subject__in=["Quote 3", "Quote 4"]).count() == 2
