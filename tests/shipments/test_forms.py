"""The shipment list's filter: ListSelect writes what Django's Select writes, escaped the same way."""

from __future__ import annotations

import re

import pytest
from django import forms

from shipments.forms import ListSelect, ShipmentFilterForm

CHOICES = [("", "Any customer"), ("6c1f", "Acme & Sons"), ("x\"><script>", "<b>Bold</b> 'quoted'"), ("7", "Seven")]


def _same(html: str) -> str:
    return re.sub(r">\s+<", "><", html.strip())


@pytest.mark.parametrize("value", [None, "", "6c1f", "x\"><script>", ["7"], "not-a-choice"])
def test_it_writes_what_djangos_select_writes(value: object) -> None:
    ours = ListSelect(choices=CHOICES).render("customer", value, attrs={"id": "id_customer"})
    django = forms.Select(choices=CHOICES).render("customer", value, attrs={"id": "id_customer"})
    assert _same(ours) == _same(django)
    assert "<script>" not in ours and "<b>" not in ours


def test_it_keeps_the_chosen_filters_on_the_page() -> None:
    customers = [("0b9a1f2e-0000-4000-8000-000000000001", "Acme & Sons")]
    form = ShipmentFilterForm({"status": "booked", "customer": customers[0][0], "q": "Dallas"}, customers=customers)
    assert form.is_valid()
    html = str(form["status"]) + str(form["customer"])
    assert '<option value="booked" selected>' in html
    assert f'<option value="{customers[0][0]}" selected>Acme &amp; Sons</option>' in html
    assert html.count(" selected") == 2
