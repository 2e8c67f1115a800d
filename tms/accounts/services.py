"""Tenant and staff services: the only code that creates or changes them."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.text import slugify

from .models import Staff, Tenant


def tenant_create(*, slug: str, name: str, shipment_prefix: str = "SHP-") -> Tenant:
    tenant = Tenant(slug=slugify(slug), name=name.strip(), shipment_prefix=shipment_prefix)
    if tenant.slug != slug:
        raise ValidationError({"slug": f"use lower-case letters, digits and hyphens (e.g. {tenant.slug!r})"})
    tenant.full_clean()
    tenant.save()
    return tenant


def staff_create(
    *, tenant: Tenant, email: str, name: str, role: str = Staff.Role.STAFF, password: str | None = None
) -> Staff:
    """A login and its membership of `tenant`. Without a password the user cannot log in yet."""
    email = email.strip()
    validate_email(email)
    if role not in Staff.Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Staff.Role.values)}"})
    User = get_user_model()
    username = email.lower()
    if User.objects.filter(username=username).exists():
        raise ValidationError({"email": "a user with this e-mail address already exists"})
    user = User(username=username, email=email, first_name=name.strip()[:150])
    if password:
        validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    with transaction.atomic():
        user.save()
        staff = Staff(tenant=tenant, user=user, email=email, name=name.strip(), role=role)
        staff.full_clean(exclude=["user"])
        staff.save()
    return staff


def staff_update(*, staff: Staff, name: str, role: str, active: bool) -> Staff:
    if role not in Staff.Role.values:
        raise ValidationError({"role": f"must be one of {', '.join(Staff.Role.values)}"})
    staff.name = name.strip()
    staff.role = role
    staff.full_clean(exclude=["user"])
    with transaction.atomic():
        staff.save(update_fields=["name", "role"])
        staff.user.is_active = active
        staff.user.save(update_fields=["is_active"])
    return staff


def tenant_rules_update(*, tenant: Tenant, lane_precision: str, required_fields: list[str]) -> Tenant:
    tenant.lane_precision = lane_precision
    tenant.required_fields = sorted(set(required_fields))
    tenant.full_clean()
    tenant.save(update_fields=["lane_precision", "required_fields"])
    return tenant
