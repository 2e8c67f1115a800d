"""The shipments services, given a classification (the classifier itself is tested elsewhere)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from mailboxes.models import OutboundMessage
from shipments import services
from shipments.models import Activity, Contact, FiledMessage, Shipment
from tests.factories import make_mailbox
from tests.shipments.support import build_mail, make_shipment, store_inbound, verdict_for
from tms.accounts.models import Staff, Tenant

QUOTE_FIELDS = {
    "origin": {"city": "Dallas", "state": "TX", "postal_code": "75201", "country": "US"},
    "destination": {"city": "Atlanta", "state": "GA", "postal_code": None, "country": "US"},
    "pickup_date": "2026-11-24", "delivery_date": None, "weight_lbs": 1200, "pieces": 2,
    "equipment": "dry_van", "commodity": "auto parts", "hazmat": False,
}


@pytest.fixture
def mailbox(bob: Staff):  # type: ignore[no-untyped-def]
    return make_mailbox(bob, "bob@acme.test")


def quote_message(mailbox, sender="Gus <gus@sawmill.example>", subject="Quote Dallas to Atlanta"):  # type: ignore[no-untyped-def]
    raw = build_mail(sender=sender, to=mailbox.email_address, subject=subject, body="Rate please.")
    return store_inbound(mailbox, raw)


# ----------------------------------------------------------------------------- numbers


def test_it_numbers_shipments_per_tenant_with_the_prefix_and_six_digits(acme: Tenant, globex: Tenant) -> None:
    first = make_shipment(acme)
    second = make_shipment(acme)
    other = make_shipment(globex)
    assert (first.number, second.number, other.number) == ("SHP-000001", "SHP-000002", "SHP-000001")


def test_it_continues_after_an_imported_number(acme: Tenant) -> None:
    assert make_shipment(acme, sequence=104233).number == "SHP-104233"
    assert make_shipment(acme).number == "SHP-104234"
    with pytest.raises(ValidationError):
        make_shipment(acme, sequence=104233)


@pytest.mark.django_db(transaction=True)
def test_it_never_gives_two_concurrent_shipments_the_same_number() -> None:
    from tests.factories import make_tenant

    tenant = make_tenant("race", "Race Freight")
    numbers: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def create() -> None:
        try:
            start.wait(5)
            for _ in range(5):
                numbers.append(services.shipment_create(tenant=tenant).number)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(numbers) == [f"SHP-{n:06d}" for n in range(1, 21)]


# ----------------------------------------------------------------------------- intake


def test_it_creates_a_quote_shipment_assigned_to_the_mailbox_owner(mailbox, bob: Staff) -> None:  # type: ignore[no-untyped-def]
    message = quote_message(mailbox)
    outcome = services.message_intake(message=message, classification=verdict_for(message, "quote", fields=QUOTE_FIELDS))
    [shipment] = outcome.created
    assert shipment.status == Shipment.Status.QUOTE_REQUESTED
    assert shipment.assigned_to == bob
    assert shipment.source_message == message
    assert (shipment.origin_city, shipment.origin_state, shipment.origin_postal_code) == ("Dallas", "TX", "75201")
    assert (shipment.destination_city, shipment.destination_postal_code) == ("Atlanta", "")
    assert str(shipment.pickup_date) == "2026-11-24"
    assert (shipment.weight_lbs, shipment.pieces, shipment.equipment, shipment.commodity) == (
        1200, 2, "dry_van", "auto parts")
    [activity] = shipment.activities.all()
    assert activity.kind == Activity.Kind.EMAIL_IN and activity.inbound_message == message
    assert "Created from e-mail" in activity.text
    assert shipment.contact is not None and shipment.contact.email == "gus@sawmill.example"


def test_it_creates_a_pickup_shipment_in_pickup_requested(mailbox) -> None:  # type: ignore[no-untyped-def]
    message = quote_message(mailbox, subject="book a truck")
    outcome = services.message_intake(message=message, classification=verdict_for(message, "pickup", fields=QUOTE_FIELDS))
    assert outcome.created[0].status == Shipment.Status.PICKUP_REQUESTED


def test_it_never_creates_twice_for_the_same_message(mailbox) -> None:  # type: ignore[no-untyped-def]
    message = quote_message(mailbox)
    verdict = verdict_for(message, "quote", fields=QUOTE_FIELDS)
    services.message_intake(message=message, classification=verdict)
    again = services.message_intake(message=message, classification=verdict)
    assert again.created == [] and again.activities == []
    assert Shipment.objects.for_tenant(mailbox.tenant).count() == 1
    assert Activity.objects.for_tenant(mailbox.tenant).count() == 1


def test_it_still_validates_what_a_new_shipment_is_given(acme: Tenant) -> None:
    with pytest.raises(ValidationError) as refused:
        services.shipment_create(tenant=acme, extraction_confidence={"origin": object()})
    assert "extraction_confidence" in refused.value.message_dict
    assert not Shipment.objects.for_tenant(acme).exists()


def test_it_still_refuses_a_value_that_outgrows_its_column_when_upper_cased(acme: Tenant) -> None:
    # "aß"[:2] upper-cased is "ASS": longer than the country column, which full_clean catches.
    with pytest.raises(ValidationError) as refused:
        services.shipment_create(tenant=acme, fields={"origin": {"country": "aß"}})
    assert "origin_country" in refused.value.message_dict
    assert not Shipment.objects.for_tenant(acme).exists()


@pytest.mark.parametrize(("name", "value"), [
    ("status", "quote_requested"), ("status", Shipment.Status.PICKUP_REQUESTED), ("status", "lost"), ("status", ""),
    ("sequence", 7), ("sequence", -1), ("sequence", 2**63), ("sequence", True), ("sequence", None),
    ("source_message_key", "<a@b>"), ("source_message_key", "x" * 999), ("source_message_key", ""),
    ("origin_country", "US"), ("origin_country", "USA"), ("equipment", "reefer"), ("equipment", "boat"),
    ("pickup_date", dt.date(2026, 1, 2)), ("pickup_date", "2026-01-02"), ("pickup_date", None),
    ("weight_lbs", 40000), ("weight_lbs", 2**31), ("weight_lbs", "12"), ("hazmat", True), ("hazmat", "yes"),
    ("extraction_confidence", {}), ("extraction_confidence", {"a": 0.5}), ("extraction_confidence", {"a": object()}),
])
def test_its_quick_field_check_never_passes_what_full_clean_refuses(acme: Tenant, name: str, value: object) -> None:
    shipment = Shipment(tenant=acme, sequence=1, number="SHP-000001")
    setattr(shipment, name, value)
    others = [f.name for f in Shipment._meta.concrete_fields if f.name != name]
    try:
        shipment.full_clean(exclude=others, validate_unique=False, validate_constraints=False)
        valid = True
    except ValidationError:
        valid = False
    assert not services._passes_clean(shipment, name) or valid


def test_the_fields_a_new_shipment_leaves_at_their_defaults_are_valid(acme: Tenant) -> None:
    # shipment_create validates only what it was given: this is why the rest needs no checking.
    Shipment(tenant=acme, sequence=1, number="SHP-000001").full_clean(exclude=["tenant"], validate_unique=False)
    # And it skips the constraints, which full_clean would skip anyway with the tenant excluded.
    assert all("tenant" in getattr(c, "fields", ()) for c in Shipment._meta.constraints)


def test_it_files_a_message_once_however_often_it_is_filed(mailbox, acme: Tenant) -> None:  # type: ignore[no-untyped-def]
    customer = services.customer_create(tenant=acme, name="Inland Sawmill")
    contact = services.contact_create(tenant=acme, email="gus@sawmill.example", customer=customer)
    message, other = quote_message(mailbox), quote_message(mailbox)
    services._filed_insert([(acme.pk, message.pk, contact.pk, customer.pk, "quote"),
                            (acme.pk, other.pk, contact.pk, None, "other")])
    services._filed_insert([(acme.pk, message.pk, contact.pk, None, "operations")])
    rows = FiledMessage.objects.for_tenant(acme).order_by("id")
    assert [(f.inbound_message, f.contact, f.customer, f.category) for f in rows] == [
        (message, contact, customer, "quote"), (other, contact, None, "other")]
    assert len({f.public_id for f in rows}) == 2 and all(f.created_at for f in rows)


def test_it_lets_the_database_refuse_a_second_shipment_or_activity_for_a_message(mailbox) -> None:  # type: ignore[no-untyped-def]
    message = quote_message(mailbox)
    shipment = services.message_intake(
        message=message, classification=verdict_for(message, "quote", fields=QUOTE_FIELDS)).created[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        Shipment.objects.for_tenant(mailbox.tenant).create(number="SHP-999999", sequence=999999,
                                                           source_message=message)
    with pytest.raises(IntegrityError), transaction.atomic():
        Activity.objects.for_tenant(mailbox.tenant).create(shipment=shipment, kind="email_in", inbound_message=message)


def test_it_files_an_operations_message_on_every_referenced_shipment(mailbox, acme: Tenant, globex: Tenant) -> None:  # type: ignore[no-untyped-def]
    one = make_shipment(acme, sequence=105533)
    two = make_shipment(acme, sequence=105534)
    theirs = make_shipment(globex, sequence=105535)
    raw = build_mail(sender="ops@shipper.example", to="bob@acme.test", subject="Status?", body="where are they")
    message = store_inbound(mailbox, raw)
    verdict = verdict_for(message, "operations", shipment_refs=["SHP-105533", "SHP-105534", "SHP-105535", "SHP-777777"])
    outcome = services.message_intake(message=message, classification=verdict)
    assert sorted(outcome.touched) == ["SHP-105533", "SHP-105534"]
    assert outcome.unknown_refs == ["SHP-105535", "SHP-777777"]
    assert outcome.created == []
    assert {a.shipment for a in outcome.activities} == {one, two}
    assert not theirs.activities.filter(kind=Activity.Kind.EMAIL_IN).exists()


def test_it_files_a_reply_to_our_mail_on_its_shipment_without_a_ref(mailbox, acme: Tenant, bob: Staff) -> None:  # type: ignore[no-untyped-def]
    shipment = make_shipment(acme)
    ours = OutboundMessage.objects.for_tenant(acme).create(
        staff=bob, mailbox=mailbox, from_address="bob@acme.test", message_id="<abc123@tms.test>",
        related=shipment.related_key, subject=f"{shipment.subject_tag} Your quote",
    )
    raw = build_mail(sender="gus@sawmill.example", to="bob@acme.test", subject="Re: Your quote",
                     body="Thanks, looks good.", in_reply_to=ours.message_id, references=ours.message_id)
    message = store_inbound(mailbox, raw)
    outcome = services.message_intake(
        message=message, classification=verdict_for(message, "other", in_reply_to="<abc123@tms.test>",
                                                    references=("<abc123@tms.test>",)))
    assert outcome.thread == [shipment.number]
    assert [a.shipment for a in outcome.activities] == [shipment]


def test_its_one_thread_lookup_finds_what_the_orms_two_queries_find(
    mailbox, acme: Tenant, globex: Tenant, bob: Staff, charlie: Staff  # type: ignore[no-untyped-def]
) -> None:
    # Both halves of the UNION ALL, each scoped to the tenant: another tenant's mail of the same
    # Message-IDs, our mail about something else than a shipment, ids without an angle bracket.
    theirs_box = make_mailbox(charlie, "charlie@globex.test")
    for tenant, staff, box in ((acme, bob, mailbox), (globex, charlie, theirs_box)):
        first, second = make_shipment(tenant), make_shipment(tenant)
        for message_id, related in (("<out-{}@tms.test>", first.related_key), ("out2-{}@tms.test", second.related_key),
                                    ("<note-{}@tms.test>", "invoice:1")):  # (outbound Message-IDs are unique)
            OutboundMessage.objects.for_tenant(tenant).create(
                staff=staff, mailbox=box, from_address="x@tms.test", message_id=message_id.format(tenant.pk),
                related=related, subject="s")
        inbound = store_inbound(box, build_mail(sender="gus@sawmill.example", to="x@tms.test", subject="s",
                                                body="b", message_id="<in@customer.example>"))
        for shipment in (first, second):
            services.activity_record_inbound(shipment=shipment, message=inbound, text="b")
    variants = services._id_variants([f"<{name}-{tenant.pk}@tms.test>" for tenant in (acme, globex)
                                      for name in ("out", "out2", "note")] + ["<in@customer.example>", "<none@x>"])
    outbound: dict[str, set[str]] = {}
    for message_id, related in OutboundMessage.objects.for_tenant(acme).filter(
            message_id__in=variants, related__startswith="shipment:").values_list("message_id", "related"):
        outbound.setdefault(message_id, set()).add(related.partition(":")[2])
    filed: dict[str, set[int]] = {}
    for message_id, shipment_id in Activity.objects.for_tenant(acme).filter(
            inbound_message__message_id__in=variants).values_list("inbound_message__message_id", "shipment_id"):
        filed.setdefault(message_id, set()).add(shipment_id)
    assert len(outbound) == 2 and len(filed["<in@customer.example>"]) == 2
    assert services._thread_links(tenant=acme, variants=variants) == (outbound, filed)


def test_it_files_a_reply_by_the_subject_tag(mailbox, acme: Tenant) -> None:  # type: ignore[no-untyped-def]
    shipment = make_shipment(acme, sequence=123)
    raw = build_mail(sender="gus@sawmill.example", to="bob@acme.test", subject="RE: [SHP-000123] Your quote",
                     body="ok")
    message = store_inbound(mailbox, raw)
    outcome = services.message_intake(message=message, classification=verdict_for(message, "quote", fields=QUOTE_FIELDS))
    assert outcome.created == []  # a reply in a shipment's thread is filed there, not made a new shipment
    assert [a.shipment for a in outcome.activities] == [shipment]


def test_it_does_nothing_for_other_mail(mailbox, acme: Tenant) -> None:  # type: ignore[no-untyped-def]
    raw = build_mail(sender="news@carrier.example", to="bob@acme.test", subject="Our fall rates", body="...")
    message = store_inbound(mailbox, raw)
    outcome = services.message_intake(message=message, classification=verdict_for(message, "other"))
    assert (outcome.created, outcome.activities, outcome.contact) == ([], [], None)
    assert not Contact.objects.for_tenant(acme).exists()
    assert not FiledMessage.objects.for_tenant(acme).exists()


# ----------------------------------------------------------------------------- customers and contacts


def test_it_files_mail_from_a_known_contact_under_their_customer(mailbox, acme: Tenant) -> None:  # type: ignore[no-untyped-def]
    customer = services.customer_create(tenant=acme, name="Inland Sawmill")
    services.contact_create(tenant=acme, email="Gus@Gmail.com", customer=customer)
    message = quote_message(mailbox, sender="gus@gmail.com")
    outcome = services.message_intake(message=message, classification=verdict_for(message, "quote", fields=QUOTE_FIELDS))
    assert outcome.created[0].customer == customer
    assert not outcome.new_contact
    assert FiledMessage.objects.for_tenant(acme).get().customer == customer


def test_it_makes_an_unknown_sender_a_contact_of_the_customer_of_their_domain(mailbox, acme: Tenant) -> None:  # type: ignore[no-untyped-def]
    customer = services.customer_create(tenant=acme, name="Inland Sawmill", email_domains=["@SAWMILL.example"])
    message = quote_message(mailbox, sender="Gus Lindgren <gus@sawmill.example>")
    outcome = services.message_intake(message=message, classification=verdict_for(message, "quote", fields=QUOTE_FIELDS))
    assert outcome.new_contact
    contact = Contact.objects.for_tenant(acme).get()
    assert (contact.email, contact.name, contact.customer) == ("gus@sawmill.example", "Gus Lindgren", customer)
    assert outcome.created[0].customer == customer


def test_it_never_lets_a_free_mail_domain_name_a_customer(mailbox, acme: Tenant) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError):
        services.customer_create(tenant=acme, name="Someone", email_domains=["gmail.com"])
    services.customer_create(tenant=acme, name="Sawmill", email_domains=["sawmill.example"])
    message = quote_message(mailbox, sender="gus@gmail.com")
    services.message_intake(message=message, classification=verdict_for(message, "quote", fields=QUOTE_FIELDS))
    assert Contact.objects.for_tenant(acme).get().customer is None


def test_it_keeps_contacts_unique_per_tenant_ignoring_case(acme: Tenant, globex: Tenant) -> None:
    services.contact_create(tenant=acme, email="gus@sawmill.example")
    services.contact_create(tenant=globex, email="gus@sawmill.example")
    with pytest.raises(ValidationError):
        services.contact_create(tenant=acme, email="GUS@sawmill.example")
    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.for_tenant(acme).create(email="Gus@Sawmill.Example")


def test_it_refuses_a_domain_another_customer_has(acme: Tenant) -> None:
    services.customer_create(tenant=acme, name="A", email_domains=["a.example"])
    with pytest.raises(ValidationError):
        services.customer_create(tenant=acme, name="B", email_domains=["a.example"])


def test_it_logs_a_status_change(acme: Tenant, bob: Staff) -> None:
    shipment = make_shipment(acme)
    services.shipment_update(shipment=shipment, actor=bob, changes={"status": "booked", "po_number": "PO-1"})
    shipment.refresh_from_db()
    assert (shipment.status, shipment.po_number) == ("booked", "PO-1")
    change = shipment.activities.get(kind=Activity.Kind.STATUS_CHANGE)
    assert change.actor == bob and "Booked" in change.text


def test_it_refuses_another_tenants_staff_on_a_shipment(acme: Tenant, charlie: Staff) -> None:
    shipment = make_shipment(acme)
    with pytest.raises(ValidationError):
        services.shipment_update(shipment=shipment, actor=None, changes={"assigned_to": charlie})
    with pytest.raises(ValidationError):
        services.activity_note_add(shipment=shipment, actor=charlie, text="hi")


def test_it_keeps_the_new_text_of_a_reply_for_the_timeline() -> None:
    from shipments.excerpt import message_excerpt

    raw = build_mail(sender="gus@sawmill.example", to="bob@acme.test", subject="Re: rates",
                     body="Sounds good, book it.\n\nOn Mon, Bob wrote:\n> Rate is $1,450\n> all in\n")
    assert message_excerpt(raw) == "Sounds good, book it."
    assert isinstance(message_excerpt(b"\xff\xfe not mail"), str)  # garbage in: no exception
    assert message_excerpt(None) == ""


def test_it_makes_one_shipment_of_the_same_mail_in_two_staff_mailboxes(mailbox, alice: Staff, acme: Tenant) -> None:  # type: ignore[no-untyped-def]
    other = make_mailbox(alice, "alice@acme.test")
    raw = build_mail(sender="gus@sawmill.example", to="bob@acme.test, alice@acme.test", subject="Quote please",
                     body="Dallas TX to Atlanta GA")
    first, copy = store_inbound(mailbox, raw), store_inbound(other, raw)
    made = services.message_intake(message=first, classification=verdict_for(first, "quote", fields=QUOTE_FIELDS))
    again = services.message_intake(message=copy, classification=verdict_for(copy, "quote", fields=QUOTE_FIELDS))
    assert again.created == [] and again.touched == [made.created[0].number]
    assert Shipment.objects.for_tenant(acme).count() == 1
    ops = store_inbound(mailbox, build_mail(sender="gus@sawmill.example", to="x", subject="SHP-000001?", body="?",
                                            message_id="<ops-1@sawmill.example>"))
    ops_copy = store_inbound(other, bytes(ops.raw or b""))
    for message in (ops, ops_copy):
        services.message_intake(message=message, classification=verdict_for(message, "operations",
                                                                             shipment_refs=["SHP-000001"]))
    assert made.created[0].activities.filter(kind=Activity.Kind.EMAIL_IN).count() == 2  # the request + one ops
