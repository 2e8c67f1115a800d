from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

from .scoping import TenantOwned

prefix_validator = RegexValidator(
    r"^[A-Z]{2,6}-?$", "2 to 6 capital letters, optionally followed by a hyphen (e.g. SHP-)."
)


class Tenant(models.Model):
    """A customer company (a freight broker or LSP)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    active = models.BooleanField(default=True)
    shipment_prefix = models.CharField(
        max_length=7, default="SHP-", validators=[prefix_validator],
        help_text="Shipment numbers are this prefix plus digits, e.g. SHP-000123.",
    )
    # What counts as "enough detail" for a quote or pickup request to create a shipment
    # (classifier.Rules). The default is the labelled schema's rule.
    class LanePrecision(models.TextChoices):
        CITY_STATE_OR_POSTAL = "city_state_or_postal", "City and state, or a postal code, for each end"
        CITY_STATE = "city_state", "City and state for each end"
        POSTAL = "postal", "A postal code for each end"

    lane_precision = models.CharField(
        max_length=24, choices=LanePrecision.choices, default=LanePrecision.CITY_STATE_OR_POSTAL
    )
    required_fields = models.JSONField(
        default=list, blank=True,
        help_text="Further fields a request must state, e.g. [\"pickup_date\", \"equipment\"].",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        allowed = {"pickup_date", "delivery_date", "weight_lbs", "pieces", "equipment", "commodity"}
        if not isinstance(self.required_fields, list) or not set(self.required_fields) <= allowed:
            raise ValidationError({"required_fields": f"a list of: {', '.join(sorted(allowed))}"})

    @property
    def ref_prefix(self) -> str:
        """The letters of the shipment prefix, as the classifier matches them (SHP for SHP-)."""
        return self.shipment_prefix.rstrip("-")


class Staff(TenantOwned):
    """A user's membership of a tenant. One per user: a login belongs to one company."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        STAFF = "staff", "Staff"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.STAFF)
    name = models.CharField(max_length=200)
    email = models.EmailField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(TenantOwned.Meta):
        verbose_name_plural = "staff"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="staff_email_unique_ci"),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    @property
    def is_admin(self) -> bool:
        return self.role == self.Role.ADMIN

    def clean(self) -> None:
        if self.email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.email):
            raise ValidationError({"email": "Enter a valid e-mail address."})
