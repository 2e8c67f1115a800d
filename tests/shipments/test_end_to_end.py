"""End to end against the test bed: real mail APPENDed to Dovecot, `manage.py mailbox poll --once`,
the real classifier, shipments and activities; a reply sent from the shipment page goes out
through the staff member's own mailbox (Dovecot submission, relayed to the aiosmtpd sink) with
the subject tag and threading headers; the customer's answer comes back to the same shipment.
Charlie, of another company, sees none of it."""

from __future__ import annotations

import json
import uuid
from email.message import EmailMessage
from email.utils import formatdate
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from mailboxes.models import InboundMessage, Mailbox, OutboundMessage
from mailboxes.sending import message_deliver
from shipments.models import Activity, Contact, Shipment
from tests.shipments.support import corpus, make_shipment
from tms.accounts.models import Staff, Tenant

PASSWORD = "shipments-pass"


@pytest.fixture
def e2e_settings(settings: Any, certs: Any, smtp_server: Any) -> Any:
    settings.MAILBOX_ALLOW_PRIVATE_HOSTS = True
    settings.MAILBOX_CA_FILE = str(certs.ca)
    settings.REDIS_URL = ""
    settings.RELAY_SMTP_URL = ""
    settings.MAILBOX_MESSAGE_ID_DOMAIN = "tms.shipments.example"
    smtp_server.clear()
    return settings


@pytest.fixture
def bob_mailbox(e2e_settings: Any, dovecot: Any, bob: Staff) -> Mailbox:
    """Bob's own mailbox on Dovecot: IMAP to read, submission to send (Dovecot relays to the sink)."""
    address = f"bob-{uuid.uuid4().hex[:10]}@example.test"
    dovecot.add_user(address, PASSWORD)
    return Mailbox.objects.for_tenant(bob.tenant).create(
        staff=bob, provider="imap", email_address=address, username=address, secret=PASSWORD,
        imap_host="127.0.0.1", imap_port=dovecot.imaps_port, imap_security="ssl",
        smtp_host="127.0.0.1", smtp_port=dovecot.submissions_port, smtp_security="ssl",
        permission=Mailbox.Permission.SEND_AND_READ, post_processing=Mailbox.PostProcessing.NOTHING,
        status=Mailbox.Status.ACTIVE, is_default=True,
    )


def poll(mailbox: Mailbox) -> dict[str, Any]:
    out = StringIO()
    call_command("mailbox", "poll", str(mailbox.pk), "--once", "--json", stdout=out)
    return dict(json.loads(out.getvalue().strip().splitlines()[-1]))


def reply_mail(*, sender: str, to: str, subject: str, body: str, in_reply_to: str, references: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@inlandsawmill.example>"
    msg["In-Reply-To"] = in_reply_to
    msg["References"] = references
    msg.set_content(body)
    return bytes(msg)


def test_it_turns_mail_in_dovecot_into_shipments_and_activities(
    dovecot: Any, bob_mailbox: Mailbox, acme: Tenant, bob: Staff, charlie_client: Client,
) -> None:
    known = make_shipment(acme, sequence=105533)  # the shipment 003.eml writes about
    for name in ("002.eml", "018.eml", "003.eml", "001.eml"):  # pickup, quote, operations, other
        dovecot.append(bob_mailbox.email_address, corpus(name))

    counts = poll(bob_mailbox)
    assert (counts["new"], counts["pickup"], counts["quote"], counts["operations"], counts["other"]) == (4, 1, 1, 1, 1)

    created = Shipment.objects.for_tenant(acme).exclude(pk=known.pk).order_by("sequence")
    pickup, quote = sorted(created, key=lambda s: s.status != "pickup_requested")
    assert pickup.status == "pickup_requested" and quote.status == "quote_requested"
    assert (pickup.origin_city, pickup.origin_state, pickup.origin_postal_code) == ("Spokane", "WA", "99202")
    assert (pickup.destination_city, pickup.destination_state) == ("Boise", "ID")
    assert (pickup.weight_lbs, pickup.equipment) == (46000, "flatbed")
    assert (quote.origin_city, quote.destination_city) == ("Edison", "Charlotte")
    assert pickup.assigned_to == bob and quote.assigned_to == bob
    assert pickup.number == "SHP-105534" and quote.number == "SHP-105535"  # after the imported number
    assert pickup.source_message is not None and pickup.contact is not None
    assert pickup.contact.email == "gus@inlandsawmill.example"

    ops = known.activities.filter(kind=Activity.Kind.EMAIL_IN).select_related("inbound_message")
    assert [a.inbound_message.subject for a in ops if a.inbound_message] == ["Fwd: Shortage on delivery - SHP 105533"]

    # polled again: nothing new, nothing twice
    assert poll(bob_mailbox)["new"] == 0
    assert Shipment.objects.for_tenant(acme).count() == 3
    assert Activity.objects.for_tenant(acme).filter(kind=Activity.Kind.EMAIL_IN).count() == 3

    # the outsider sees none of it
    assert charlie_client.get(f"/shipments/{pickup.public_id}/").status_code == 404
    assert pickup.number not in charlie_client.get("/shipments/").content.decode()
    assert charlie_client.get(f"/api/shipments/{pickup.public_id}/").status_code == 404
    assert charlie_client.get("/api/shipments/").json()["results"] == []
    assert charlie_client.get("/api/activities/").json()["results"] == []
    assert charlie_client.get("/api/contacts/").json()["results"] == []


def test_it_records_an_unknown_shipment_number_and_creates_nothing(
    dovecot: Any, bob_mailbox: Mailbox, acme: Tenant,
) -> None:
    dovecot.append(bob_mailbox.email_address, corpus("003.eml"))  # SHP 105533, which acme does not have
    assert poll(bob_mailbox)["operations"] == 1
    message = InboundMessage.objects.for_tenant(acme).get()
    data = message.result["handlers"]["shipments.intake.handle"]["data"]
    assert data["unknown_refs"] == ["SHP-105533"]
    assert not Shipment.objects.for_tenant(acme).exists()
    assert "unknown" in message.reason


def test_it_sends_a_reply_from_the_shipment_page_and_files_the_answer_on_the_same_shipment(
    dovecot: Any, smtp_server: Any, bob_mailbox: Mailbox, acme: Tenant, bob: Staff, bob_client: Client,
    charlie_client: Client,
) -> None:
    dovecot.append(bob_mailbox.email_address, corpus("002.eml"))
    poll(bob_mailbox)
    shipment = Shipment.objects.for_tenant(acme).get()
    request_id = shipment.source_message.message_id if shipment.source_message else ""

    page = bob_client.get(f"/shipments/{shipment.public_id}/")
    assert page.context["reply_form"].initial["to"] == "gus@inlandsawmill.example"
    response = bob_client.post(f"/shipments/{shipment.public_id}/reply/", {
        "to": "gus@inlandsawmill.example", "subject": "Re: book flatbed next Friday",
        "body": "Booked: flatbed for Friday, $1,450 all in.",
    })
    assert response.status_code == 302
    outbound = OutboundMessage.objects.for_tenant(acme).get()
    assert outbound.related == f"shipment:{shipment.public_id}"
    activity = shipment.activities.get(kind=Activity.Kind.EMAIL_OUT)
    assert (activity.outbound_message, activity.actor) == (outbound, bob)

    assert message_deliver(outbound_id=outbound.pk).status == OutboundMessage.Status.SENT
    received = smtp_server.wait_for(lambda m: m.message_id == outbound.message_id, timeout=15)
    sent = received.message()
    assert received.rcpt_tos == ("gus@inlandsawmill.example",)
    assert received.subject == f"[{shipment.number}] Re: book flatbed next Friday"
    assert str(sent["From"]).endswith(f"<{bob_mailbox.email_address}>")
    assert str(sent["In-Reply-To"]).strip() == request_id
    assert request_id in str(sent["References"])

    # Gus answers in the thread (no shipment number in the body)
    answer = reply_mail(sender="Gus Lindgren <gus@inlandsawmill.example>", to=bob_mailbox.email_address,
                        subject="Re: Re: book flatbed next Friday", body="Great, thanks.",
                        in_reply_to=outbound.message_id, references=f"{request_id} {outbound.message_id}")
    dovecot.append(bob_mailbox.email_address, answer)
    poll(bob_mailbox)
    assert Shipment.objects.for_tenant(acme).count() == 1
    texts = [a.inbound_message.subject for a in shipment.activities.filter(kind=Activity.Kind.EMAIL_IN)
             .select_related("inbound_message").order_by("created_at") if a.inbound_message]
    assert texts == ["book flatbed next Friday", "Re: Re: book flatbed next Friday"]
    assert Contact.objects.for_tenant(acme).count() == 1

    # the timeline shows all three; the outsider can neither see nor send
    html = bob_client.get(f"/shipments/{shipment.public_id}/").content.decode()
    assert "Booked: flatbed for Friday" in html and "Re: Re: book flatbed next Friday" in html
    assert charlie_client.post(f"/shipments/{shipment.public_id}/reply/", {
        "to": "x@example.test", "body": "hi"}).status_code == 404
    assert charlie_client.get(f"/api/activities/{activity.public_id}/").status_code == 404
