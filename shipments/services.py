"""Shipment, activity, customer and contact services: the only code that creates or changes them.

Every function is keyword-only and typed; views, the API and the intake handler call these and
nothing else to write.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import lru_cache
from typing import Any, cast

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Field, Q, Value
from django.db.models.constants import OnConflict
from django.db.models.functions import Greatest, Lower
from django.utils import timezone

from mailboxes.intake import BatchFlushConflict, jsonable
from mailboxes.models import InboundMessage, OutboundMessage
from tms.accounts.models import Staff, Tenant
from tms.db import AnyOf, by_each_key, columns_insert, model_rows, rows_insert

from .domains import domain_normalise, domain_of, is_free_mail
from .excerpt import message_excerpt
from .models import Activity, Contact, Customer, CustomerDomain, FiledMessage, Shipment, ShipmentCounter, Status
from .selectors import contact_by_email, reply_defaults, shipment_timeline, thread_references

logger = logging.getLogger(__name__)

# Fields staff may edit on a shipment (the form and the API use this list).
EDITABLE_FIELDS = (
    "status", "customer", "contact", "assigned_to",
    "origin_city", "origin_state", "origin_postal_code", "origin_country",
    "destination_city", "destination_state", "destination_postal_code", "destination_country",
    "pickup_date", "delivery_date", "weight_lbs", "pieces", "equipment", "commodity", "hazmat",
    "bol_number", "po_number", "pro_number",
)
NUMBER_DIGITS = 6


# ----------------------------------------------------------------------------- customers and contacts


def _set_domains(*, customer: Customer, domains: Iterable[str]) -> None:
    wanted: list[str] = []
    for value in domains:
        if value.strip():
            domain = domain_normalise(value)
            if domain not in wanted:
                wanted.append(domain)
    taken = (
        CustomerDomain.objects.filter(tenant=customer.tenant, domain__in=wanted)
        .exclude(customer=customer).values_list("domain", flat=True)
    )
    if taken:
        raise ValidationError({"email_domains": f"already used by another customer: {', '.join(sorted(taken))}"})
    CustomerDomain.objects.filter(customer=customer).exclude(domain__in=wanted).delete()
    have = set(CustomerDomain.objects.filter(customer=customer).values_list("domain", flat=True))
    CustomerDomain.objects.bulk_create(
        CustomerDomain(tenant=customer.tenant, customer=customer, domain=d) for d in wanted if d not in have
    )


def customer_create(*, tenant: Tenant, name: str, email_domains: Iterable[str] = (), notes: str = "") -> Customer:
    """A customer; contacts of its domains without a customer are filed against it from now on."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "a customer needs a name"})
    if Customer.objects.for_tenant(tenant).filter(name__iexact=name).exists():
        raise ValidationError({"name": f"a customer named {name!r} already exists"})
    try:
        with transaction.atomic():
            customer = Customer.objects.for_tenant(tenant).create(name=name, notes=notes)
            _set_domains(customer=customer, domains=email_domains)
            _adopt_contacts(customer=customer)
    except IntegrityError:
        raise ValidationError({"name": f"a customer named {name!r} already exists"}) from None
    return customer


def customer_update(
    *, customer: Customer, name: str | None = None, email_domains: Iterable[str] | None = None,
    notes: str | None = None,
) -> Customer:
    with transaction.atomic():
        if name is not None:
            name = name.strip()
            if not name:
                raise ValidationError({"name": "a customer needs a name"})
            clash = Customer.objects.for_tenant(customer.tenant).filter(name__iexact=name).exclude(pk=customer.pk)
            if clash.exists():
                raise ValidationError({"name": f"a customer named {name!r} already exists"})
            customer.name = name
        if notes is not None:
            customer.notes = notes
        customer.save()
        if email_domains is not None:
            _set_domains(customer=customer, domains=email_domains)
            _adopt_contacts(customer=customer)
    return customer


def _adopt_contacts(*, customer: Customer) -> None:
    """Contacts without a customer whose address is at one of the customer's domains join it."""
    for domain in CustomerDomain.objects.filter(customer=customer).values_list("domain", flat=True):
        Contact.objects.for_tenant(customer.tenant).filter(
            customer__isnull=True, email__iendswith=f"@{domain}"
        ).update(customer=customer)


def customer_for_domain(*, tenant: Tenant, domain: str) -> Customer | None:
    """The customer that lists this domain; free-mail domains never name one."""
    if not domain or is_free_mail(domain):
        return None
    row = CustomerDomain.objects.filter(tenant=tenant, domain=domain.lower()).select_related("customer").first()
    return row.customer if row else None


def contact_create(*, tenant: Tenant, email: str, name: str = "", customer: Customer | None = None) -> Contact:
    email = email.strip()
    validate_email(email)
    if customer is not None and customer.tenant_id != tenant.pk:
        raise ValidationError({"customer": "no such customer"})
    if customer is None:
        customer = customer_for_domain(tenant=tenant, domain=domain_of(email))
    if Contact.objects.for_tenant(tenant).filter(email__iexact=email).exists():
        raise ValidationError({"email": f"a contact with the address {email} already exists"})
    try:
        with transaction.atomic():
            return Contact.objects.for_tenant(tenant).create(email=email, name=name.strip()[:200], customer=customer)
    except IntegrityError:
        raise ValidationError({"email": f"a contact with the address {email} already exists"}) from None


UNCHANGED: Any = object()


def contact_update(*, contact: Contact, name: str | None = None, customer: Customer | None = UNCHANGED) -> Contact:
    """Rename a contact or move it to another customer (None: no customer; left out: unchanged)."""
    if name is not None:
        contact.name = name.strip()[:200]
    if customer is not UNCHANGED:
        if customer is not None and customer.tenant_id != contact.tenant_id:
            raise ValidationError({"customer": "no such customer"})
        contact.customer = customer
    contact.save()
    return contact


def contact_for_sender(*, tenant: Tenant, email: str, name: str = "") -> Contact | None:
    """The contact for a sender's address, made on first sight (and filed under the customer that
    lists the sender's domain). None for an address that is not one, or one of our own staff."""
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        return None
    found = contact_by_email(tenant=tenant, email=email)
    if found is not None:
        if not found.name and name.strip():
            found.name = name.strip()[:200]
            found.save(update_fields=["name"])
        return found
    return _contact_make(tenant=tenant, email=email, name=name)


def _contact_make(*, tenant: Tenant, email: str, name: str, cache: dict[str, Any] | None = None) -> Contact | None:
    """contact_for_sender once the address is known valid and to have no contact yet. `cache`: an
    intake batch's (see _customer_cached)."""
    contacts = Contact.objects.for_tenant(tenant)
    if _is_staff(tenant=tenant, email=email, cache=cache):
        return None
    if cache is None:
        customer = customer_for_domain(tenant=tenant, domain=domain_of(email))
    else:
        customer = _customer_cached(tenant=tenant, domain=domain_of(email), cache=cache)
    if transaction.get_connection().vendor == "postgresql":
        # A concurrent intake of another message from the same sender may win the race on the
        # unique (tenant, lower(email)) constraint: then nothing is inserted and its row is used.
        # ON CONFLICT DO NOTHING says so without the savepoint (and its two statements) below.
        contact = Contact(tenant=tenant, email=email, name=name.strip()[:200], customer=customer)
        if rows_insert([contact], ignore_conflicts=True, key="public_id"):
            return contact
        return contact_by_email(tenant=tenant, email=email)
    try:
        # A savepoint: a concurrent intake of another message from the same sender may win the
        # race on the unique (tenant, lower(email)) constraint; then use its row.
        with transaction.atomic():
            return contacts.create(email=email, name=name.strip()[:200], customer=customer)
    except IntegrityError:
        return contact_by_email(tenant=tenant, email=email)


_STAFF = "shipments.staff"


def _is_staff(*, tenant: Tenant, email: str, cache: dict[str, Any] | None) -> bool:
    """Is `email` (case-insensitively, as email__iexact compares) one of the tenant's staff? In an
    intake batch on PostgreSQL, the first question of a tenant asks it of all the batch's senders
    (their From addresses) in one query; most batches never ask (their senders are contacts)."""
    staff = Staff.objects.for_tenant(tenant)
    connection = transaction.get_connection()
    if cache is not None and connection.vendor == "postgresql":
        known: dict[int, tuple[set[str], set[str]]] = cache.setdefault(_STAFF, {})
        if tenant.pk not in known:
            wanted = {_parsed_address(m.from_address or "")[1].strip() for m in _batch_messages(cache, tenant)}
            wanted = {address for address in wanted if address} | {email}
            with connection.cursor() as cursor:
                # UPPER(email::text) = UPPER(%s): email__iexact's own comparison, one address a row.
                cursor.execute(
                    f"SELECT w FROM unnest(%s::text[]) AS w WHERE EXISTS (SELECT 1 FROM {Staff._meta.db_table} s"  # noqa: S608
                    " WHERE s.tenant_id = %s AND UPPER(s.email::text) = UPPER(w))",  # (the table's name, no input)
                    [sorted(wanted), tenant.pk],
                )
                known[tenant.pk] = (wanted, {str(row[0]) for row in cursor.fetchall()})
        covered, found = known[tenant.pk]
        if email in covered:
            return email in found
    return bool(staff.filter(email__iexact=email).exists())


# ----------------------------------------------------------------------------- shipments


def shipment_number_format(*, tenant: Tenant, sequence: int) -> str:
    return f"{tenant.shipment_prefix}{sequence:0{NUMBER_DIGITS}d}"


def shipment_sequence_allocate(*, tenant: Tenant, sequence: int | None = None) -> int:
    """The next sequence number of the tenant, or `sequence` itself (importing existing numbers).

    The counter row is locked (SELECT ... FOR UPDATE) until the caller's transaction ends, so two
    concurrent intakes never get the same number; the unique constraint on (tenant, sequence)
    backs it up. Must run inside a transaction.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("shipment_sequence_allocate() must run inside a transaction")
    if sequence is None:
        # One round trip: the UPDATE locks the row until the caller's transaction ends, like
        # SELECT ... FOR UPDATE would.
        with transaction.get_connection().cursor() as cursor:
            cursor.execute(
                f"UPDATE {ShipmentCounter._meta.db_table} SET last_value = last_value + 1"  # noqa: S608 (no input)
                " WHERE tenant_id = %s RETURNING last_value", [tenant.pk],
            )
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
    counter, _ = ShipmentCounter.objects.select_for_update().get_or_create(tenant=tenant)
    if sequence is None:
        counter.last_value += 1
        sequence = counter.last_value
    elif sequence < 1:
        raise ValidationError({"sequence": "must be a positive number"})
    elif sequence > counter.last_value:
        counter.last_value = sequence
    counter.save(update_fields=["last_value"])
    return sequence


def shipment_create(
    *, tenant: Tenant, status: str = Status.QUOTE_REQUESTED, assigned_to: Staff | None = None,
    customer: Customer | None = None, contact: Contact | None = None,
    source_message: InboundMessage | None = None, fields: Mapping[str, Any] | None = None,
    extraction_confidence: Mapping[str, Any] | None = None, sequence: int | None = None,
    actor: Staff | None = None, note: str = "",
) -> Shipment:
    """A new shipment with the next number of its tenant (SHP-000123), and its first activity."""
    _shipment_check(tenant=tenant, status=status, assigned_to=assigned_to, customer=customer, contact=contact,
                    source_message=source_message)
    values = _clean_fields(fields or {})
    allocated: list[int] = []
    try:
        # One savepoint (inside a caller's transaction) for the whole of it: an IntegrityError rolls
        # back the number, the shipment and its activity together and leaves the caller's
        # transaction usable.
        with transaction.atomic():
            seq = shipment_sequence_allocate(tenant=tenant, sequence=sequence)
            allocated.append(seq)
            shipment = _shipment_instance(
                tenant=tenant, sequence=seq, status=status, assigned_to=assigned_to, customer=customer,
                contact=contact, source_message=source_message, values=values,
                extraction_confidence=extraction_confidence,
            )
            shipment.save()
            _first_activity(shipment, source_message=source_message, actor=actor, note=note).save()
    except IntegrityError:
        if allocated and Shipment.objects.for_tenant(tenant).filter(sequence=allocated[0]).exists():
            number = shipment_number_format(tenant=tenant, sequence=allocated[0])
            raise ValidationError({"sequence": f"shipment number {number} is taken"}) from None
        raise  # the message already made a shipment: the caller decides
    return shipment


# Status.values builds its list anew on every read (~25 us: the enum's choices, then their values).
_STATUSES = frozenset(Status.values)


def _shipment_check(*, tenant: Tenant, status: str, assigned_to: Staff | None, customer: Customer | None,
                    contact: Contact | None, source_message: InboundMessage | None) -> None:
    if status not in _STATUSES:
        raise ValidationError({"status": f"must be one of {', '.join(Status.values)}"})
    for name, related in (("assigned_to", assigned_to), ("customer", customer), ("contact", contact),
                          ("source_message", source_message)):
        if related is not None and related.tenant_id != tenant.pk:
            raise ValidationError({name: "belongs to another company"})


def _shipment_instance(
    *, tenant: Tenant, sequence: int, status: str, assigned_to: Staff | None, customer: Customer | None,
    contact: Contact | None, source_message: InboundMessage | None, values: dict[str, Any],
    extraction_confidence: Mapping[str, Any] | None,
) -> Shipment:
    """The unsaved, validated shipment (the caller has run _shipment_check)."""
    shipment = Shipment(
        tenant=tenant, sequence=sequence, number=shipment_number_format(tenant=tenant, sequence=sequence),
        status=status, assigned_to=assigned_to, customer=customer, contact=contact,
        source_message=source_message, extraction_confidence=dict(extraction_confidence or {}),
        source_message_key=_message_key(source_message), **values,
    )
    # Validated: what varies with the input. The related rows were checked (same tenant; saved ones
    # need no existence query per key); every other field holds the model's default, valid by
    # construction (tests/shipments/test_services.py checks that it is).
    checked = {"status", "sequence", "source_message_key", "extraction_confidence", *values}
    checked.update(name for name, related in (("assigned_to", assigned_to), ("customer", customer),
                                              ("contact", contact)) if related is not None and not related.pk)
    if all(_passes_clean(shipment, name) for name in checked):
        return shipment  # what full_clean would find of these fields: nothing (its cost: ~0.3 ms)
    # Every constraint of Shipment names the tenant, which is excluded: full_clean would skip them all.
    shipment.full_clean(exclude=[name for name in _shipment_field_names() if name not in checked],
                        validate_unique=False, validate_constraints=False)
    return shipment


@lru_cache(maxsize=1)
def _shipment_field_names() -> tuple[str, ...]:
    return tuple(f.name for f in Shipment._meta.concrete_fields)


def _passes_clean(shipment: Shipment, name: str) -> bool:
    """True when Field.clean would accept the shipment's value of field `name` as it is: the
    checks clean_fields runs (blank, null, choices, max_length, the integer range, JSON), done on
    values of the types _clean_fields and the callers give. False means "not sure": full_clean
    then judges, with its own errors."""
    kind, attname, max_length, blank, choices, bounds, encoder = _clean_rule(name)
    value = getattr(shipment, attname)
    if kind == "?" or value is None or value == "" or (kind == "JSONField" and value in ({}, [])):
        # clean_fields skips an empty value of a blank field; validate() refuses the rest.
        return kind != "?" and blank
    if kind == "CharField":
        ok = isinstance(value, str) and len(value) <= max_length and (not choices or value in choices)
    elif kind == "DateField":
        ok = type(value) is dt.date
    elif kind == "BooleanField":
        ok = type(value) is bool
    elif bounds is not None:
        ok = type(value) is int and bounds[0] <= value <= bounds[1]
    else:  # JSONField: what its validate() tries
        try:
            json.dumps(value, cls=encoder)
            ok = True
        except (TypeError, ValueError):
            ok = False
    return ok


@lru_cache(maxsize=64)
def _clean_rule(name: str) -> tuple[str, str, int, bool, frozenset[str], tuple[int, int] | None, Any]:
    """What _passes_clean needs of a Shipment field, read once from the model (and, for the integer
    range its validators check, from the database's operations)."""
    model_field = cast("Field[Any, Any]", Shipment._meta.get_field(name))
    kind = model_field.get_internal_type()
    bounds: tuple[int, int] | None = None
    if kind in ("PositiveIntegerField", "PositiveBigIntegerField", "IntegerField", "BigIntegerField"):
        low, high = transaction.get_connection().ops.integer_field_range(kind)
        bounds = (max(low, 0) if kind.startswith("Positive") else low, high)
    choices = frozenset(str(value) for value, _ in model_field.flatchoices) if model_field.choices else frozenset()
    if kind not in ("CharField", "DateField", "BooleanField", "JSONField") and bounds is None:
        kind = "?"  # anything else (a relation): always full_clean
    return (kind, model_field.attname, int(getattr(model_field, "max_length", None) or 0), model_field.blank,
            choices, bounds, getattr(model_field, "encoder", None))


def _first_activity(shipment: Shipment, *, source_message: InboundMessage | None, actor: Staff | None,
                    note: str) -> Activity:
    if source_message is not None:
        return Activity(tenant=shipment.tenant, shipment=shipment, kind=Activity.Kind.EMAIL_IN,
                        inbound_message=source_message, message_key=_message_key(source_message),
                        text=note or "Created from e-mail.")
    return Activity(tenant=shipment.tenant, shipment=shipment, kind=Activity.Kind.NOTE, actor=actor,
                    text=note or "Created.")


def _clean_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Shipment field values from a mapping (a form, the API, or the classifier's extraction):
    only known fields, strings trimmed to their column, dates parsed, bad values dropped."""
    values: dict[str, Any] = {}
    for name in ("origin", "destination"):
        place = fields.get(name)
        if isinstance(place, Mapping):
            for part in ("city", "state", "postal_code", "country"):
                if place.get(part) is not None:
                    values[f"{name}_{part}"] = place[part]
    for name in EDITABLE_FIELDS:
        if name in fields and name not in ("status", "customer", "contact", "assigned_to"):
            values[name] = fields[name]
    return {name: _clean_value(name, value) for name, value in values.items()}


def _clean_value(name: str, value: Any) -> Any:
    kind, max_length = _field_kind(name)
    if kind == "DateField":
        return _as_date(value)
    if kind in ("PositiveIntegerField", "PositiveBigIntegerField"):
        return _as_count(value)
    if kind == "BooleanField":
        return bool(value)
    text = "" if value is None else str(value).strip()[:max_length]
    if name == "equipment" and text not in _equipment_values():
        return ""
    return text.upper() if name.endswith(("_state", "_country")) else text


@lru_cache(maxsize=64)
def _field_kind(name: str) -> tuple[str, int]:
    """The internal type of a Shipment field and the length a text value is cut to."""
    model_field = Shipment._meta.get_field(name)
    return model_field.get_internal_type(), getattr(model_field, "max_length", None) or 200


@lru_cache(maxsize=1)
def _equipment_values() -> frozenset[str]:
    return frozenset(Shipment.Equipment.values)


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def _as_count(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number <= 2_000_000_000 else None


def shipment_update(*, shipment: Shipment, actor: Staff | None, changes: Mapping[str, Any]) -> Shipment:
    """Change editable fields; a status change is logged as an activity."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"not editable: {', '.join(sorted(unknown))}")
    tenant_id = shipment.tenant_id
    for name in ("assigned_to", "customer", "contact"):
        related = changes.get(name)
        if related is not None and related.tenant_id != tenant_id:
            raise ValidationError({name: "belongs to another company"})
    old_status = shipment.status
    if "status" in changes and changes["status"] not in Status.values:
        raise ValidationError({"status": f"must be one of {', '.join(Status.values)}"})
    for name in ("status", "assigned_to", "customer", "contact"):
        if name in changes:
            setattr(shipment, name, changes[name])
    # A field left empty on a form comes as "" or None: clear it rather than drop it.
    plain = {k: v for k, v in changes.items() if k not in ("status", "assigned_to", "customer", "contact")}
    cleaned = _clean_fields(plain)
    for name in plain:
        if name not in cleaned:
            continue
        setattr(shipment, name, cleaned[name])
    shipment.full_clean(exclude=["tenant", "source_message", "number"], validate_unique=False)
    with transaction.atomic():
        shipment.save()
        if shipment.status != old_status:
            Activity.objects.for_tenant(shipment.tenant).create(
                shipment=shipment, kind=Activity.Kind.STATUS_CHANGE, actor=actor,
                text=f"Status: {Status(old_status).label} → {Status(shipment.status).label}",
            )
    return shipment


# ----------------------------------------------------------------------------- activities


def activity_note_add(*, shipment: Shipment, actor: Staff, text: str) -> Activity:
    text = text.strip()
    if not text:
        raise ValidationError({"text": "a note needs some text"})
    if actor.tenant_id != shipment.tenant_id:
        raise ValidationError("not your company's shipment")
    return Activity.objects.for_tenant(shipment.tenant).create(
        shipment=shipment, kind=Activity.Kind.NOTE, actor=actor, text=text[:20000]
    )


def _message_key(message: InboundMessage | None) -> str:
    return (message.message_id or "").strip() if message is not None else ""


def activity_record_inbound(*, shipment: Shipment, message: InboundMessage, text: str) -> tuple[Activity, bool]:
    """The email_in activity of a message on a shipment, once: (activity, created). A copy of the
    same mail (same Message-ID) in another staff mailbox finds the first one's activity."""
    key = _message_key(message)
    same = Q(inbound_message=message) | (Q(message_key=key) if key else Q(pk__in=[]))
    mine = Activity.objects.for_tenant(shipment.tenant).filter(shipment=shipment)
    existing = mine.filter(same).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            created = mine.create(shipment=shipment, kind=Activity.Kind.EMAIL_IN, inbound_message=message,
                                  message_key=key, text=text)
    except IntegrityError:  # a concurrent intake of a copy won the race
        return mine.filter(same).get(), False
    return created, True


def shipment_reply_send(*, shipment: Shipment, staff: Staff, to: list[str], subject: str, body: str) -> Activity:
    """Send mail about a shipment through the staff member's own mailbox (mailboxes.sending picks
    it; the company mailbox or the relay when they have none), tagged "[SHP-000123]" and threaded
    under the latest mail of the shipment, and log it on the timeline as email_out.

    Raises mailboxes.sending.SendRefused (a ValueError) with the reason when it may not go.
    """
    from mailboxes.sending import SendRefused, message_queue

    if staff.tenant_id != shipment.tenant_id:
        raise SendRefused("not your company's shipment")
    if not body.strip():
        raise SendRefused("the message is empty")
    defaults = reply_defaults(shipment=shipment, timeline=shipment_timeline(shipment=shipment))
    parent = defaults.in_reply_to
    references = thread_references(shipment=shipment, parent_message_id=parent) if parent else []
    with transaction.atomic():
        outbound = message_queue(
            tenant=shipment.tenant, staff=staff, to=to, subject=subject.strip() or defaults.subject,
            body_text=body, in_reply_to=parent, references=references,
            related=shipment.related_key, subject_tag=shipment.subject_tag,
        )
        return activity_record_outbound(shipment=shipment, message=outbound, actor=staff, text=body.strip()[:20000])


def activity_record_outbound(*, shipment: Shipment, message: OutboundMessage, actor: Staff | None,
                             text: str) -> Activity:
    activity, _ = Activity.unscoped.get_or_create(
        shipment=shipment, outbound_message=message,
        defaults={"tenant_id": shipment.tenant_id, "kind": Activity.Kind.EMAIL_OUT, "actor": actor, "text": text},
    )
    return activity


# ----------------------------------------------------------------------------- intake


@dataclass
class IntakeOutcome:
    """What one inbound message did to the shipments of its tenant (plain data for the handler)."""

    category: str
    reason: str = ""
    created: list[Shipment] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)  # numbers of shipments the message was filed on
    touched_ids: list[str] = field(default_factory=list)  # and their public ids
    unknown_refs: list[str] = field(default_factory=list)
    thread: list[str] = field(default_factory=list)  # numbers found through the reply headers or tag
    contact: Contact | None = None
    new_contact: bool = False


_MAX_THREAD_IDS = 50


def _id_variants(ids: Iterable[str]) -> list[str]:
    """Message-IDs as stored anywhere: with and without the angle brackets."""
    out: list[str] = []
    for value in ids:
        bare = value.strip().strip("<>").strip()
        if bare:
            out += [f"<{bare}>", bare]
    return out


def _digits_to_number(tenant: Tenant, digits: str) -> str:
    # By value: "SHP-98812" and "SHP 0098812" both name sequence 98812, which is SHP-098812 here.
    return shipment_number_format(tenant=tenant, sequence=int(digits))


def shipment_numbers_for_refs(*, tenant: Tenant, refs: Iterable[str]) -> dict[str, str]:
    """{ref as the classifier wrote it: the number it would have here} ("SHP-104233" -> "SHP-104233"
    whatever the tenant's hyphen style)."""
    out: dict[str, str] = {}
    for ref in refs:
        digits = re.sub(r"\D", "", ref)
        if digits:
            out[ref] = _digits_to_number(tenant, digits)
    return out


def subject_tag_numbers(*, tenant: Tenant, subject: str) -> list[str]:
    """Shipment numbers in subject tags like "[SHP-000123]" (what our replies carry)."""
    if not subject or "[" not in subject:
        return []
    return [_digits_to_number(tenant, digits) for digits in _subject_tag_pattern(tenant.ref_prefix).findall(subject)]


@lru_cache(maxsize=64)
def _subject_tag_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"\[\s*{re.escape(prefix)}\s*[-#]?\s*(\d{{1,12}})\s*\]", re.IGNORECASE)


def _thread_ids(in_reply_to: str | None, references: Iterable[str]) -> list[str]:
    """The Message-IDs a message replies to, as stored anywhere (see _id_variants)."""
    return _id_variants([i for i in [in_reply_to, *references] if i][-_MAX_THREAD_IDS:])


def shipments_for_thread(
    *, tenant: Tenant, in_reply_to: str | None, references: Iterable[str], subject: str,
    cache: dict[str, Any] | None = None,
) -> list[Shipment]:
    """The shipments a message replies to: In-Reply-To/References naming mail we sent about a
    shipment or mail already filed on one, or our subject tag. Oldest first, no duplicates.
    `cache`: an intake batch's (see _thread_prefetched)."""
    variants = _thread_ids(in_reply_to, references)
    shipment_ids: set[int] = set()
    public_ids: set[str] = set()
    if variants:
        found = _thread_prefetched(tenant=tenant, variants=variants, cache=cache)
        if found is None:
            found = _thread_links(tenant=tenant, variants=variants)
        public_ids = {p for v in variants for p in found[0].get(v, ())}
        shipment_ids = {s for v in variants for s in found[1].get(v, ())}
    numbers = subject_tag_numbers(tenant=tenant, subject=subject)
    valid_uuids = [p for p in public_ids if _is_uuid(p)]
    if not (shipment_ids or valid_uuids or numbers):
        return []
    query = Q(pk__in=shipment_ids) | Q(public_id__in=valid_uuids) | Q(number__in=numbers)
    return list(Shipment.objects.for_tenant(tenant).filter(query).order_by("created_at", "id"))


# Message-ID -> the public ids of the shipments our outbound mail of that id was about, and the
# shipments an inbound message of that id is filed on (has an activity on).
_ThreadLinks = tuple[dict[str, set[str]], dict[str, set[int]]]


def _thread_links(*, tenant: Tenant, variants: Iterable[str]) -> _ThreadLinks:
    outbound: dict[str, set[str]] = {}
    filed: dict[str, set[int]] = {}
    for message_id, related, shipment_id in _thread_rows(tenant=tenant, variants=list(variants)):
        if related is not None:
            outbound.setdefault(message_id, set()).add(related.partition(":")[2])
        else:
            filed.setdefault(message_id, set()).add(shipment_id)
    return outbound, filed


def _thread_rows(*, tenant: Tenant, variants: list[str]) -> list[tuple[Any, Any, Any]]:
    """(Message-ID, "shipment:<public id>", None) of the tenant's outbound mail about a shipment and
    (Message-ID, None, shipment id) of its shipments' activities of inbound mail, for these
    Message-IDs. On PostgreSQL ONE statement of its own (the two lookups as a UNION ALL), the
    tenant named in each half: what the ORM's two queries (kept for the demo's SQLite) say,
    without their ~0.35 ms each of building and compiling a batch, nor a second round trip."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        outbound = OutboundMessage.objects.for_tenant(tenant).filter(
            message_id__in=variants, related__startswith="shipment:").values_list("message_id", "related")
        filed = Activity.objects.for_tenant(tenant).filter(inbound_message__message_id__in=variants).values_list(
            "inbound_message__message_id", "shipment_id")
        return [(m, related, None) for m, related in outbound] + [(m, None, shipment) for m, shipment in filed]
    if not variants:
        return []
    # Table names come from the models, never from input. `related` is never NULL in the first
    # half (LIKE refuses NULL): NULL there says "the second half". The second half walks from each
    # Message-ID to its inbound messages, then to their activities, each step one lookup by its own
    # index (LATERAL ... OFFSET 0: planned as such, never turned into a join). Planned as a join,
    # PostgreSQL without statistics (a first import: autovacuum has not analysed the tables yet)
    # read the tenant's every activity a batch (7.6 ms at 10,000 messages, growing with the
    # tenant; this way 0.85 ms). The tenant is checked on every row; `+ 0` only keeps the planner
    # from reaching the rows through the tenant's index, i.e. all of them.
    sql = (f"SELECT message_id, related, NULL::bigint FROM {OutboundMessage._meta.db_table}"  # noqa: S608
           " WHERE tenant_id = %s AND message_id = ANY(%s::varchar[]) AND related LIKE 'shipment:%%'"
           " UNION ALL SELECT v.message_id, NULL, a.shipment_id FROM unnest(%s::varchar[]) AS v(message_id)"
           f" CROSS JOIN LATERAL (SELECT m.id FROM {InboundMessage._meta.db_table} m"
           "  WHERE m.message_id = v.message_id AND m.tenant_id + 0 = %s OFFSET 0) m"
           f" CROSS JOIN LATERAL (SELECT a.shipment_id FROM {Activity._meta.db_table} a"
           "  WHERE a.inbound_message_id = m.id AND a.tenant_id + 0 = %s OFFSET 0) a")
    distinct = sorted(set(variants))  # one walk a Message-ID: a repeated one would repeat its rows
    with connection.cursor() as cursor:
        cursor.execute(sql, [tenant.pk, variants, distinct, tenant.pk, tenant.pk])
        return [tuple(row) for row in cursor.fetchall()]


_THREAD = "shipments.thread"


def _thread_prefetched(*, tenant: Tenant, variants: list[str], cache: dict[str, Any] | None) -> _ThreadLinks | None:
    """_thread_links covering `variants` from the batch's one lookup of the reply ids of all its
    messages (those whose verdicts the workers computed, BATCH_CLASSIFICATIONS), or None (query
    yourself). The batch's own activities of inbound mail are added to it as they are inserted
    (_thread_filed), or it is dropped (_refs_forget), so it never misses one made since."""
    from mailboxes.intake import BATCH_CLASSIFICATIONS

    verdicts = (cache or {}).get(BATCH_CLASSIFICATIONS)
    if not verdicts or cache is None:
        return None
    entry: tuple[set[str], _ThreadLinks] | None = cache.setdefault(_THREAD, {}).get(tenant.pk)
    if entry is None:
        wanted = set(variants)
        for message in _batch_messages(cache, tenant):
            verdict = verdicts.get(message.pk)
            if verdict is not None:
                wanted.update(_thread_ids(getattr(verdict, "in_reply_to", None),
                                          getattr(verdict, "references", None) or ()))
        entry = (wanted, _thread_links(tenant=tenant, variants=wanted))
        cache[_THREAD][tenant.pk] = entry
    covered, found = entry
    return found if covered.issuperset(variants) else None


def _thread_filed(*, message: InboundMessage, shipment: Shipment, cache: dict[str, Any]) -> None:
    """An activity of `message` on `shipment` was inserted: what _thread_links would now find too."""
    entry = (cache.get(_THREAD) or {}).get(shipment.tenant_id)
    if entry is not None and message.message_id:
        entry[1][1].setdefault(message.message_id, set()).add(shipment.pk)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _email_text(classification: Any) -> str:
    subject = str(getattr(classification, "subject", "") or "").strip()
    return subject[:1000] or "(no subject)"


def message_intake(*, message: InboundMessage, classification: Any, batch: dict[str, Any] | None = None,
                   excerpt: str | None = None) -> IntakeOutcome:
    """Act on a classified inbound message (inside the caller's transaction).

    - a reply to mail we sent about a shipment (In-Reply-To/References, or the subject tag), or to
      mail already filed on one: an email_in activity there, whatever the category;
    - otherwise quote/pickup: a new shipment (quote_requested/pickup_requested) assigned to the
      mailbox's owner, filled from the extraction, with an activity "created from e-mail";
    - operations: an activity on every referenced shipment of the tenant; unknown refs are listed;
    - other: nothing (mail from a known contact is still filed under their customer).
    The sender becomes a contact (unless it is one already) for anything but "other".
    Safe to run twice: the one-to-one source message and the unique (shipment, inbound message)
    activity make a second run find what the first made instead of making it again.
    `batch`: the intake batch's cache (IntakeContext.batch, one transaction): senders' contacts
    are looked up once per batch there. `excerpt`: message_excerpt(message.raw) when computed
    already (the intake workers).
    """
    cache: dict[str, Any] = {} if batch is None else batch
    tenant = message.tenant
    category = str(classification.category)
    sender = _sender(message, classification)
    outcome = IntakeOutcome(category=category, reason=str(getattr(classification, "reason", "") or ""))
    if category != "other":
        outcome.contact, outcome.new_contact = _sender_contact(tenant=tenant, sender=sender, cache=cache)
    in_reply_to = getattr(classification, "in_reply_to", None)
    references = list(getattr(classification, "references", None) or ())
    subject = str(getattr(classification, "subject", "") or "")
    # Shipments this batch made and has not inserted yet are looked for too (by the same evidence
    # as the query); when the message names one, they are inserted now, so all reads below see them.
    _pending_flush_if_named(tenant=tenant, cache=cache, ids=[in_reply_to, *references], numbers=[
        *subject_tag_numbers(tenant=tenant, subject=subject),
        *(shipment_numbers_for_refs(tenant=tenant, refs=getattr(classification, "shipment_refs", None) or ())
          .values() if category == "operations" else ()),
    ])
    thread = shipments_for_thread(tenant=tenant, in_reply_to=in_reply_to, references=references, subject=subject,
                                  cache=cache)
    if thread:  # a reply to a shipment of this batch names it by its refs too: insert before reading
        _pending_flush_if_named(tenant=tenant, cache=cache, ids=[], numbers=shipment_numbers_for_refs(
            tenant=tenant, refs=getattr(classification, "shipment_refs", None) or ()).values())
    if thread and outcome.contact is None:
        outcome.contact, outcome.new_contact = _sender_contact(tenant=tenant, sender=sender, cache=cache)
    outcome.thread = [s.number for s in thread]
    targets = list(thread)
    if not thread and category in ("quote", "pickup"):
        shipment, created = _shipment_from_message(
            message=message, classification=classification, contact=outcome.contact, cache=cache, excerpt=excerpt,
        )
        if created:
            outcome.created.append(shipment)
        outcome.touched.append(shipment.number)
        outcome.touched_ids.append(str(shipment.public_id))
    if category == "operations" or thread:
        known, unknown = _referenced_shipments(tenant=tenant, classification=classification, cache=cache)
        targets += [s for s in known if s not in targets]
        if category == "operations":
            outcome.unknown_refs = unknown
    text = _email_text(classification)
    if targets:
        text = (message_excerpt(message.raw) if excerpt is None else excerpt) or text
    for shipment in targets:
        activity, created = activity_record_inbound(shipment=shipment, message=message, text=text)
        if created:
            outcome.activities.append(activity)
            _thread_filed(message=message, shipment=shipment, cache=cache)
        if shipment.number not in outcome.touched:
            outcome.touched.append(shipment.number)
            outcome.touched_ids.append(str(shipment.public_id))
    contact = outcome.contact or (_contact_cached(tenant=tenant, email=sender[0], cache=cache) if sender[0] else None)
    if contact is not None:
        _filed_add((tenant.pk, message.pk, contact.pk, contact.customer_id, category), cache=batch)
    return outcome


_FILED = "shipments.filed"
_FILED_DONE = "shipments.filed.done"
# A FiledMessage as the row to insert: (tenant id, inbound message id, contact id, customer id, category).
_Filing = tuple[int, int, int, "int | None", str]


def _filed_add(filed: _Filing, *, cache: dict[str, Any] | None) -> None:
    """File the message under the contact, once (one-to-one with the message: a second run's INSERT
    does nothing, without a savepoint). In an intake batch (mailboxes.intake runs its BATCH_FLUSH
    callables), one INSERT for the whole batch at its end, inside its transaction."""
    from mailboxes.intake import BATCH_FLUSH, BATCH_MESSAGES

    if cache is None or BATCH_MESSAGES not in cache or cache.get(_FILED_DONE):
        _filed_insert([filed])
        return
    rows: list[_Filing] | None = cache.get(_FILED)
    if rows is None:
        pending: list[_Filing] = []
        cache[_FILED] = rows = pending

        def flush() -> None:
            cache[_FILED_DONE] = True
            _filed_insert(pending)

        cache.setdefault(BATCH_FLUSH, []).append(flush)
    rows.append(filed)


_FILED_COLUMNS = ("public_id", "tenant", "inbound_message", "contact", "customer", "category", "created_at")
_FILED_CHUNK = 100  # rows per INSERT: 700 parameters, within SQLite's limit too


def _filed_insert(rows: Sequence[_Filing]) -> None:
    """INSERT FiledMessage rows, a message filed already keeping its own: what
    FiledMessage.unscoped.bulk_create(..., ignore_conflicts=True) writes (ON CONFLICT DO NOTHING,
    INSERT OR IGNORE on SQLite), without a model instance per row or the ORM's compiling of it. On
    PostgreSQL one statement of one array a column (tms.db.columns_insert)."""
    if not rows:
        return
    connection = transaction.get_connection()
    ops = connection.ops
    meta = FiledMessage._meta
    fields = [cast("Field[Any, Any]", meta.get_field(name)) for name in _FILED_COLUMNS]
    public_id, created_at = fields[0], fields[-1]
    if connection.vendor == "postgresql":
        # The values each row would get from the ORM: a uuid4 and its own timezone.now().
        arrays: list[list[Any]] = [[] for _ in fields]
        for row in rows:
            made = (public_id.get_db_prep_save(uuid.uuid4(), connection), *row,
                    created_at.get_db_prep_save(timezone.now(), connection))
            for array, value in zip(arrays, made, strict=True):
                array.append(value)
        columns_insert(FiledMessage, field_names=_FILED_COLUMNS, columns=arrays, ignore_conflicts=True)
        return
    columns = ", ".join(ops.quote_name(f.column) for f in fields)
    suffix = ops.on_conflict_suffix_sql(fields, OnConflict.IGNORE, None, None)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _FILED_CHUNK):
            chunk = rows[start:start + _FILED_CHUNK]
            params: list[Any] = []
            for tenant_id, message_id, contact_id, customer_id, category in chunk:
                params += [public_id.get_db_prep_save(uuid.uuid4(), connection), tenant_id, message_id, contact_id,
                           customer_id, category, created_at.get_db_prep_save(timezone.now(), connection)]
            values = ", ".join([f"({', '.join(['%s'] * len(fields))})"] * len(chunk))
            cursor.execute(
                f"{ops.insert_statement(on_conflict=OnConflict.IGNORE)} {ops.quote_name(meta.db_table)}"
                f" ({columns}) VALUES {values} {suffix}", params,  # names from the model, never from input
            )


_REFS = "shipments.refs"


def _referenced_shipments(*, tenant: Tenant, classification: Any, cache: dict[str, Any] | None = None
                          ) -> tuple[list[Shipment], list[str]]:
    """The tenant's shipments the classifier found refs to, and the refs that name none.

    In an intake batch whose verdicts the workers computed (BATCH_CLASSIFICATIONS), the first
    call looks up the refs of all of them in one query; the answer is dropped whenever the batch
    inserts shipments (_refs_forget), so it never misses one made since."""
    refs = shipment_numbers_for_refs(tenant=tenant, refs=getattr(classification, "shipment_refs", None) or ())
    wanted = set(refs.values())
    found = _refs_prefetched(tenant=tenant, wanted=wanted, cache=cache)
    if found is None:
        found = {s.number: s for s in Shipment.objects.for_tenant(tenant).filter(number__in=wanted)}
    known = [found[n] for n in dict.fromkeys(refs.values()) if n in found]
    return known, [ref for ref, number in refs.items() if number not in found]


def _refs_prefetched(*, tenant: Tenant, wanted: set[str], cache: dict[str, Any] | None) -> dict[str, Shipment] | None:
    """{number: shipment} covering `wanted` from the batch's one lookup, or None (query yourself)."""
    from mailboxes.intake import BATCH_CLASSIFICATIONS

    verdicts = (cache or {}).get(BATCH_CLASSIFICATIONS)
    if not wanted or not verdicts or cache is None:
        return None
    entry: tuple[set[str], dict[str, Shipment]] | None = cache.setdefault(_REFS, {}).get(tenant.pk)
    if entry is None:
        numbers = set(wanted)
        for verdict in verdicts.values():
            numbers.update(shipment_numbers_for_refs(
                tenant=tenant, refs=getattr(verdict, "shipment_refs", None) or ()).values())
        if transaction.get_connection().vendor == "postgresql":  # the ORM's query, written once
            rows = model_rows(Shipment, "tenant_id = %s AND number = ANY(%s::varchar[])", [tenant.pk, list(numbers)])
        else:
            rows = list(Shipment.objects.for_tenant(tenant).filter(number__in=numbers))
        entry = (numbers, {s.number: s for s in rows})
        cache[_REFS][tenant.pk] = entry
    covered, found = entry
    return found if wanted <= covered else None


def _refs_forget(*, tenant_id: int, cache: dict[str, Any]) -> None:
    """The batch inserted shipments (with their first activities): drop its lookups by ref and by
    reply id, which might miss them."""
    (cache.get(_REFS) or {}).pop(tenant_id, None)
    (cache.get(_THREAD) or {}).pop(tenant_id, None)


def _sender(message: InboundMessage, classification: Any) -> tuple[str, str]:
    """The sender's address (the classifier's, else the stored From) and display name."""
    name, header_address = _parsed_address(message.from_address or "")
    address = str(getattr(classification, "from_addr", "") or "") or header_address
    return _parsed_address(address)[1].strip() or address.strip(), name.strip().strip('"')


@lru_cache(maxsize=4096)
def _parsed_address(value: str) -> tuple[str, str]:
    """email.utils.parseaddr, remembered: a batch asks it of each message's From several times
    over, and the same senders write again and again (it is pure, and slow: a tokenizer in Python)."""
    return parseaddr(value)


_CONTACTS = "shipments.contacts"


def _batch_messages(cache: dict[str, Any], tenant: Tenant) -> list[InboundMessage]:
    from mailboxes.intake import BATCH_MESSAGES

    return [m for m in cache.get(BATCH_MESSAGES) or () if m.tenant_id == tenant.pk]


def _contact_cached(*, tenant: Tenant, email: str, cache: dict[str, Any]) -> Contact | None:
    """contact_by_email, remembered in the batch's cache (None too: no contact of this address).
    The first lookup of a tenant in a batch fetches the contacts of all the batch's senders (their
    From addresses) in one query."""
    known: dict[tuple[int, str], Contact | None] = cache.setdefault(_CONTACTS, {})
    key = (tenant.pk, email.strip().lower())
    if key in known:
        return known[key]
    prefetched = cache.setdefault(_CONTACTS + ".tenants", set())
    if tenant.pk not in prefetched:
        prefetched.add(tenant.pk)
        wanted = {_parsed_address(m.from_address or "")[1].strip().lower() for m in _batch_messages(cache, tenant)}
        wanted = {address for address in wanted if address} | {key[1]}
        for address in wanted:
            known.setdefault((tenant.pk, address), None)
        if transaction.get_connection().vendor == "postgresql":  # the ORM's query, written once
            rows = model_rows(Contact, "tenant_id = %s AND LOWER(email) = ANY(%s::varchar[])",
                              [tenant.pk, sorted(wanted)], annotations=[("email_lower", "LOWER(email)")])
        else:
            query = Contact.objects.for_tenant(tenant).annotate(email_lower=Lower("email"))
            rows = [cast(Contact, row) for row in query.filter(AnyOf(Lower("email"), sorted(wanted)))]
        for row in rows:
            known[(tenant.pk, str(row.email_lower))] = cast(Contact, row)  # type: ignore[attr-defined]
        if key in known:
            return known[key]
    known[key] = contact_by_email(tenant=tenant, email=email)
    return known[key]


_CUSTOMERS = "shipments.customers"


def _customer_cached(*, tenant: Tenant, domain: str, cache: dict[str, Any]) -> Customer | None:
    """customer_for_domain, from one lookup per batch of the domains of all its senders (made when
    the batch first makes a contact: most batches make none)."""
    if not domain or is_free_mail(domain):
        return None
    domain = domain.lower()
    entry: tuple[set[str], dict[str, Customer]] | None = cache.setdefault(_CUSTOMERS, {}).get(tenant.pk)
    if entry is None:
        wanted = {domain_of(_parsed_address(m.from_address or "")[1]) for m in _batch_messages(cache, tenant)}
        wanted = {d for d in wanted if d and not is_free_mail(d)} | {domain}
        rows = CustomerDomain.objects.filter(tenant=tenant, domain__in=wanted).select_related("customer")
        entry = (wanted, {row.domain: row.customer for row in rows})
        cache[_CUSTOMERS][tenant.pk] = entry
    covered, found = entry
    if domain not in covered:
        return customer_for_domain(tenant=tenant, domain=domain)
    return found.get(domain)


def _sender_contact(*, tenant: Tenant, sender: tuple[str, str], cache: dict[str, Any]
                    ) -> tuple[Contact | None, bool]:
    address, name = sender
    if not address:
        return None, False
    existed = _contact_cached(tenant=tenant, email=address, cache=cache)
    if existed is not None:
        return existed, False
    try:
        validate_email(address.strip())
    except ValidationError:
        return None, False
    # In an intake batch the tenant's counter is locked before its first new contact: every batch
    # then takes its locks in one order (counter, contacts, the documents' stored files). Else two
    # workers of one tenant deadlock - one inserts a new sender's contact and waits for the counter
    # the other holds, which then inserts the same contact - and PostgreSQL finds it only after
    # deadlock_timeout (1 s) and rolls a batch back to be run again.
    _pending_for(tenant=tenant, cache=cache)
    contact = _contact_make(tenant=tenant, email=address.strip(), name=name, cache=cache)
    if contact is not None:
        cache[_CONTACTS][(tenant.pk, address.strip().lower())] = contact
    return contact, contact is not None


_SOURCES = "shipments.sources"


def _same_source(message: InboundMessage) -> Q:
    """The shipments made from this message or a copy of it (same Message-ID)."""
    key = _message_key(message)
    return Q(source_message=message) | (Q(source_message_key=key) if key else Q(pk__in=[]))


def _shipment_of_source(*, message: InboundMessage, cache: dict[str, Any]) -> Shipment | None:
    """The shipment already made from this message or a copy of it (same Message-ID). The first
    call of a tenant in an intake batch fetches those of all the batch's messages in one query."""
    tenant = message.tenant
    sources: dict[int, tuple[set[int], dict[tuple[str, Any], Shipment]]] = cache.setdefault(_SOURCES, {})
    if tenant.pk not in sources:
        batch = _batch_messages(cache, tenant)
        covered = {m.pk for m in batch}
        found: dict[tuple[str, Any], Shipment] = {}
        if covered:
            keys = [k for k in (_message_key(m) for m in batch) if k]
            if transaction.get_connection().vendor == "postgresql":  # the ORM's query, written once
                # One lookup a message id and a Message-ID, each by its own index (by_each_key).
                source = by_each_key(
                    Shipment, ("bigint", "source_message_id = each_key.value AND tenant_id + 0 = %s"),
                    ("varchar", "source_message_key = each_key.value AND source_message_key <> ''"
                                " AND tenant_id + 0 = %s"),
                )
                rows = model_rows(Shipment, "TRUE", [sorted(covered), tenant.pk, keys, tenant.pk], order_by="id",
                                  source=source)
            else:
                rows = list(Shipment.objects.for_tenant(tenant).filter(
                    Q(AnyOf("source_message_id", sorted(covered))) | Q(AnyOf("source_message_key", keys))
                ).order_by("id"))
            for row in rows:
                found.setdefault(("pk", row.source_message_id), row)
                if row.source_message_key:
                    found.setdefault(("key", row.source_message_key), row)
        sources[tenant.pk] = (covered, found)
    covered, found = sources[tenant.pk]
    if message.pk not in covered:
        return cast(Shipment | None, Shipment.objects.for_tenant(tenant).filter(_same_source(message)).first())
    key = _message_key(message)
    return found.get(("pk", message.pk)) or (found.get(("key", key)) if key else None)


def _source_remember(*, shipment: Shipment, cache: dict[str, Any]) -> None:
    entry = cache.get(_SOURCES, {}).get(shipment.tenant_id)
    if entry is not None:
        entry[1].setdefault(("pk", shipment.source_message_id), shipment)
        if shipment.source_message_key:
            entry[1].setdefault(("key", shipment.source_message_key), shipment)


def _shipment_from_message(
    *, message: InboundMessage, classification: Any, contact: Contact | None, cache: dict[str, Any],
    excerpt: str | None = None,
) -> tuple[Shipment, bool]:
    existing = _shipment_of_source(message=message, cache=cache)
    if existing is not None:
        return existing, False
    status = Status.PICKUP_REQUESTED if classification.category == "pickup" else Status.QUOTE_REQUESTED
    extracted = getattr(classification, "fields", None)
    to_dict = getattr(extracted, "to_dict", None)
    fields = to_dict() if callable(to_dict) else dict(extracted or {})
    confidence = getattr(classification, "confidence", None) or {}
    staff = message.mailbox.staff
    if excerpt is None:
        excerpt = message_excerpt(message.raw)
    pending = _pending_for(tenant=message.tenant, cache=cache)
    if pending is not None:
        customer = contact.customer if contact else None
        _shipment_check(tenant=message.tenant, status=status, assigned_to=staff, customer=customer,
                        contact=contact, source_message=message)
        shipment = _shipment_instance(
            tenant=message.tenant, sequence=pending.allocate(), status=status, assigned_to=staff,
            customer=customer, contact=contact, source_message=message, values=_clean_fields(fields),
            extraction_confidence=jsonable(confidence),
        )
        note = "\n\n".join(p for p in ("Created from e-mail.", excerpt) if p)
        pending.add(shipment, _first_activity(shipment, source_message=message, actor=None, note=note))
        _source_remember(shipment=shipment, cache=cache)
        return shipment, True
    try:  # shipment_create's own atomic block is the savepoint that an IntegrityError rolls back to
        shipment = shipment_create(
            tenant=message.tenant, status=status, assigned_to=staff,
            customer=contact.customer if contact else None, contact=contact,
            source_message=message, fields=fields, extraction_confidence=jsonable(confidence),
            note="\n\n".join(p for p in ("Created from e-mail.", excerpt) if p),
        )
    except IntegrityError:
        # Another transaction filed this message (or a copy of it) first: the unique source said no.
        return Shipment.objects.for_tenant(message.tenant).get(_same_source(message)), False
    _source_remember(shipment=shipment, cache=cache)
    _refs_forget(tenant_id=message.tenant_id, cache=cache)
    return shipment, True




# ----------------------------------------------------------------------------- a batch's new shipments

_PENDING = "shipments.pending"


class _Pending:
    """The shipments (and their first activities) an intake batch made for one tenant and has not
    inserted yet: numbered from the tenant's counter, which stays locked from the first one to the
    end of the transaction (so the numbers are the batch's alone, no gaps), and inserted with one
    INSERT each for shipments and activities at the batch's end (BATCH_FLUSH) - or earlier, when
    a later message of the batch names one of them (_pending_flush_if_named). The unique
    constraints still judge at the INSERT: a conflict (a copy of the mail filed by a concurrent
    intake) fails the batch as a BatchFlushConflict - the batch's error, not that of the message
    that happened to be running when a write was brought forward - and the batch then runs one
    message at a time through shipment_create's savepoints (mailboxes.intake.messages_process)."""

    def __init__(self, tenant: Tenant, last_value: int) -> None:
        self.tenant = tenant
        self.last_value = last_value
        self.shipments: list[Shipment] = []
        self.activities: list[Activity] = []

    def allocate(self) -> int:
        self.last_value += 1
        return self.last_value

    def add(self, shipment: Shipment, activity: Activity) -> None:
        self.shipments.append(shipment)
        self.activities.append(activity)

    def named(self, *, ids: set[str], numbers: set[str]) -> bool:
        """Does a message with these reply ids / shipment numbers name one of the shipments here?"""
        for shipment in self.shipments:
            if shipment.number in numbers:
                return True
            if ids and shipment.source_message_key and set(_id_variants([shipment.source_message_key])) & ids:
                return True
        return False

    def write(self) -> None:
        if not self.shipments:
            return
        try:
            # bulk_create's statements without its compiler (tms.db.rows_insert: one INSERT each).
            rows_insert(self.shipments)
            rows_insert(self.activities)
        except IntegrityError as exc:
            raise BatchFlushConflict(
                f"inserting {len(self.shipments)} shipments of the batch conflicted with existing rows"
            ) from exc
        connection = transaction.get_connection()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {ShipmentCounter._meta.db_table} SET last_value = GREATEST(last_value, %s)"  # noqa: S608
                    " WHERE tenant_id = %s", [self.last_value, self.tenant.pk],  # (the table's name, no input)
                )
        else:  # the demo's SQLite has no GREATEST: the ORM writes MAX()
            ShipmentCounter.objects.filter(tenant_id=self.tenant.pk).update(
                last_value=Greatest(F("last_value"), Value(self.last_value))
            )
        self.shipments, self.activities = [], []


def _pending_for(*, tenant: Tenant, cache: dict[str, Any]) -> _Pending | None:
    """The batch's pending shipments of the tenant, its counter row locked (made first when the
    tenant has none yet); None outside a batch of several messages (one message alone keeps
    shipment_create's savepoint)."""
    from mailboxes.intake import BATCH_FLUSH, BATCH_MESSAGES

    if len(cache.get(BATCH_MESSAGES) or ()) < 2:
        return None
    pendings: dict[int, _Pending] = cache.setdefault(_PENDING, {})
    found = pendings.get(tenant.pk)
    if found is not None:
        return found
    row = _counter_lock(tenant)
    if row is None:
        # The tenant's first shipments: its counter row, made here (a concurrent intake making it
        # too waits for this one, then finds it) and then locked.
        ShipmentCounter.objects.bulk_create([ShipmentCounter(tenant=tenant)], ignore_conflicts=True)
        row = _counter_lock(tenant)
        assert row is not None
    if not pendings:
        def flush() -> None:
            for pending in pendings.values():
                pending.write()

        cache.setdefault(BATCH_FLUSH, []).append(flush)
    pendings[tenant.pk] = found = _Pending(tenant, int(row[0]))
    return found


def _counter_lock(tenant: Tenant) -> tuple[Any, ...] | None:
    """Lock the tenant's counter row until the transaction ends, as shipment_sequence_allocate
    does; (last_value,), or None when the tenant has no counter row yet."""
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {ShipmentCounter._meta.db_table} SET last_value = last_value"  # noqa: S608 (no input)
            " WHERE tenant_id = %s RETURNING last_value", [tenant.pk],
        )
        return cast(tuple[Any, ...] | None, cursor.fetchone())


def _pending_flush_if_named(*, tenant: Tenant, cache: dict[str, Any], ids: Iterable[str | None],
                            numbers: Iterable[str]) -> None:
    pending = (cache.get(_PENDING) or {}).get(tenant.pk)
    if pending is None or not pending.shipments:
        return
    variants = set(_id_variants(i for i in ids if i))
    if pending.named(ids=variants, numbers=set(numbers)):
        pending.write()
        _refs_forget(tenant_id=tenant.pk, cache=cache)
