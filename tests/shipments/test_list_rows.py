"""shipments.list_rows writes the shipment list's rows byte for byte as the template's loop did."""

from __future__ import annotations

import datetime as dt
import uuid

from django.template import engines

from shipments.list_rows import shipment_rows_html
from tms.rows import Row

# The loop templates/shipments/shipment_list.html had, as it was.
TEMPLATE_LOOP = """{% load tms_urls %}{% for s in shipments %}
      <tr data-number="{{ s.number }}">
        <td class="num"><a href="{% row_url 'shipment-detail' s.public_id %}">{{ s.number }}</a></td>
        <td><span class="badge {{ s.status }}">{{ s.status_label }}</span></td>
        <td>{% if s.customer_public_id %}<a href="{% row_url 'customer-detail' s.customer_public_id %}">{{ s.customer_name }}</a>{% else %}<span class="muted">—</span>{% endif %}</td>
        <td>{{ s.origin|default:"—" }}</td>
        <td>{{ s.destination|default:"—" }}</td>
        <td>{{ s.pickup_date|date:"M j, Y"|default:"—" }}</td>
        <td>{{ s.assigned_to_name|default:"—" }}</td>
      </tr>
    {% endfor %}"""


def row(n: int, **values: object) -> Row:
    base = {
        "public_id": uuid.UUID(int=n), "number": f"SHP-{n:06d}", "status": "quote_requested",
        "status_label": "Quote requested", "pickup_date": dt.date(2026, 1 + n % 12, 1 + n % 28),
        "origin": "Dallas, TX 75201", "destination": "Memphis, TN 38116",
        "customer_public_id": uuid.UUID(int=1000 + n), "customer_name": "Acme Freight",
        "assigned_to_name": "Alice Dispatcher",
    }
    return Row({**base, **values})


def test_the_rows_are_the_templates_byte_for_byte() -> None:
    rows = [
        row(1),
        row(2, customer_public_id=None, customer_name="", origin="", destination="", pickup_date=None,
            assigned_to_name=""),
        # Everything a value could hold that HTML would take for markup, in every cell.
        row(3, number='S<1>&"\'', status='x" onmouseover="y', status_label="<b>Booked</b>",
            customer_name="O'Brien & <Sons>", origin='"Quoted" <city>', destination="A & B",
            assigned_to_name="<script>alert(1)</script>"),
        row(4, pickup_date=dt.date(2026, 12, 31)),
    ]

    expected = engines["django"].from_string(TEMPLATE_LOOP).render({"shipments": rows})

    assert shipment_rows_html(rows) == expected
    assert "<script>" not in expected and "&lt;script&gt;" in expected  # the loop escaped: so does this
    assert shipment_rows_html([]) == ""
