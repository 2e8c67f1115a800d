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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

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
