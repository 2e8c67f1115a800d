from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from .models import Staff, Tenant


class LoginForm(AuthenticationForm):
    """E-mail (or username) and password; e-mail addresses are matched case-insensitively."""

    username = forms.CharField(label="E-mail", max_length=254, widget=forms.TextInput(attrs={"autofocus": True}))

    def clean_username(self) -> str:
        return str(self.cleaned_data["username"]).strip().lower()


def single_line(value: str) -> None:
    """A staff member's name ends up in From and Reply-To headers: no CR, LF or other control characters."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise forms.ValidationError("The name must be one line, without control characters.")


class StaffCreateForm(forms.Form):
    name = forms.CharField(max_length=200, validators=[single_line])
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Staff.Role.choices, initial=Staff.Role.STAFF)
    password = forms.CharField(
        widget=forms.PasswordInput, required=False, min_length=8,
        help_text="Leave empty to create the login without a password (it cannot sign in yet).",
    )


class ClassificationRulesForm(forms.Form):
    """What a tenant admin decides: how much detail a request needs before it becomes a shipment."""

    REQUIRABLE = [
        ("pickup_date", "Pickup date"), ("delivery_date", "Delivery date"), ("weight_lbs", "Weight"),
        ("pieces", "Pieces"), ("equipment", "Equipment"), ("commodity", "Commodity"),
    ]
    lane_precision = forms.ChoiceField(choices=Tenant.LanePrecision.choices, label="Each end of the lane needs")
    required_fields = forms.MultipleChoiceField(
        choices=REQUIRABLE, required=False, widget=forms.CheckboxSelectMultiple,
        label="The request must also state",
    )


class StaffUpdateForm(forms.Form):
    name = forms.CharField(max_length=200, validators=[single_line])
    role = forms.ChoiceField(choices=Staff.Role.choices)
    active = forms.BooleanField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
