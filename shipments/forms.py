from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import validate_email
from django.forms.utils import flatatt
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from tms.accounts.models import Staff, Tenant

from .models import Customer, Shipment, Status

SHIPMENT_FORM_FIELDS = (
    "status", "customer", "assigned_to",
    "origin_city", "origin_state", "origin_postal_code", "origin_country",
    "destination_city", "destination_state", "destination_postal_code", "destination_country",
    "pickup_date", "delivery_date", "weight_lbs", "pieces", "equipment", "commodity", "hazmat",
    "bol_number", "po_number", "pro_number",
)


class ListSelect(forms.Select):
    """A <select> of flat choices written in Python. Django's own renders a template per option
    (~37 µs each here): the shipment list's filter lists every customer of the tenant, and 300 of
    them cost 11 ms a page (bench/README.md, "Pages"); this writes the same HTML in about 2 ms."""

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> SafeString:
        chosen = set(self.format_value(value))
        options = "".join(
            f'<option value="{escape(key)}"{" selected" if str(key) in chosen else ""}>{escape(label)}</option>'
            for key, label in self.choices
        )
        return format_html('<select name="{}"{}>{}</select>', name, flatatt(self.build_attrs(self.attrs, attrs)),
                           mark_safe(options))  # noqa: S308 (every value and label is escaped above)


class ShipmentFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search", widget=forms.TextInput(attrs={"placeholder": "Number or city"}))
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Status.choices], widget=ListSelect)
    customer = forms.ChoiceField(required=False, choices=[("", "Any customer")], widget=ListSelect)
    mine = forms.BooleanField(required=False, label="Assigned to me")

    def __init__(self, *args: Any, customers: list[tuple[str, str]], **kwargs: Any) -> None:
        """`customers`: (public id, name) pairs (selectors.customer_choices)."""
        super().__init__(*args, **kwargs)
        customer = self.fields["customer"]
        assert isinstance(customer, forms.ChoiceField)
        customer.choices = [("", "Any customer"), *customers]


class ShipmentForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Shipment
        fields = SHIPMENT_FORM_FIELDS
        widgets = {
            "pickup_date": forms.DateInput(attrs={"type": "date"}),
            "delivery_date": forms.DateInput(attrs={"type": "date"}),
        }

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        customer = self.fields["customer"]
        assigned = self.fields["assigned_to"]
        assert isinstance(customer, forms.ModelChoiceField) and isinstance(assigned, forms.ModelChoiceField)
        customer.queryset = Customer.objects.for_tenant(tenant).order_by("name")
        assigned.queryset = Staff.objects.for_tenant(tenant).order_by("name")

    def changes(self) -> dict[str, Any]:
        return {name: self.cleaned_data.get(name) for name in SHIPMENT_FORM_FIELDS}


class NoteForm(forms.Form):
    text = forms.CharField(label="Note", widget=forms.Textarea(attrs={"rows": 3}), max_length=20000)


class ReplyForm(forms.Form):
    to = forms.CharField(label="To", max_length=2000, help_text="One or more addresses, separated by commas.")
    subject = forms.CharField(max_length=300, required=False)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), max_length=100_000)

    def clean_to(self) -> list[str]:
        addresses = [a.strip() for a in str(self.cleaned_data["to"]).replace(";", ",").split(",") if a.strip()]
        if not addresses:
            raise forms.ValidationError("Give at least one address.")
        for address in addresses:
            try:
                validate_email(address)
            except forms.ValidationError:
                raise forms.ValidationError(f"{address} is not an e-mail address.") from None
        return addresses


class CustomerForm(forms.Form):
    name = forms.CharField(max_length=200)
    email_domains = forms.CharField(
        required=False, max_length=2000, label="E-mail domains",
        help_text="Mail from these domains is filed under this customer (comma-separated, e.g. acme.com).",
    )
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_email_domains(self) -> list[str]:
        raw = str(self.cleaned_data.get("email_domains") or "")
        return [d.strip() for d in raw.replace(";", ",").replace(" ", ",").split(",") if d.strip()]
