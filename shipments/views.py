"""Pages staff work in. Thin: parse the input, call one service or selector, render.

Everything is looked up within the logged-in staff member's tenant: another company's shipment
or customer is simply not found (404).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from tms.accounts.models import Staff, Tenant
from tms.accounts.views import add_validation_errors, staff_required

from . import selectors, services
from .forms import CustomerForm, NoteForm, ReplyForm, ShipmentFilterForm, ShipmentForm
from .list_rows import shipment_rows_html
from .models import Customer, Shipment

PAGE_SIZE = 50


def _staff(request: HttpRequest) -> Staff:
    return request.staff  # type: ignore[attr-defined,no-any-return]


def _tenant(request: HttpRequest) -> Tenant:
    return request.tenant  # type: ignore[attr-defined,no-any-return]


def _shipment_or_404(request: HttpRequest, id: Any) -> Shipment:
    shipment = selectors.shipment_get(tenant=_tenant(request), public_id=id)
    if shipment is None:
        raise Http404("No such shipment.")
    return shipment


def _customer_or_404(request: HttpRequest, id: Any) -> Customer:
    customer = selectors.customer_get(tenant=_tenant(request), public_id=id)
    if customer is None:
        raise Http404("No such customer.")
    return customer


# ----------------------------------------------------------------------------- shipments


@staff_required
def shipment_list(request: HttpRequest) -> HttpResponse:
    tenant = _tenant(request)
    form = ShipmentFilterForm(request.GET or None, customers=selectors.customer_choices(tenant=tenant))
    filters = selectors.ShipmentFilters()
    if form.is_valid():
        data = form.cleaned_data
        filters = selectors.ShipmentFilters(
            mine=bool(data["mine"]), status=data["status"], customer=data["customer"], q=data["q"]
        )
    qs = selectors.shipment_list(tenant=tenant, staff=_staff(request), filters=filters)
    if form.is_bound and not form.is_valid():
        qs = qs.none()  # a bad filter value (an unknown status or customer) matches nothing
    page = Paginator(selectors.shipment_list_values(qs), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    shipments = [selectors.shipment_list_row(v) for v in page.object_list]
    return render(request, "shipments/shipment_list.html", {
        "form": form, "page": page, "shipments": shipments, "shipment_rows": shipment_rows_html(shipments),
        "query": query.urlencode(),
    })


@staff_required
@require_http_methods(["GET", "POST"])
def shipment_create(request: HttpRequest) -> HttpResponse:
    tenant = _tenant(request)
    form = ShipmentForm(request.POST or None, tenant=tenant, initial={"assigned_to": _staff(request)})
    if request.method == "POST" and form.is_valid():
        data = form.changes()
        try:
            shipment = services.shipment_create(
                tenant=tenant, status=data.pop("status"), assigned_to=data.pop("assigned_to"),
                customer=data.pop("customer"), fields=data, actor=_staff(request),
            )
        except ValidationError as exc:
            add_validation_errors(form, exc)
        else:
            messages.success(request, f"Created {shipment.number}.")
            return redirect("shipment-detail", id=shipment.public_id)
    return render(request, "shipments/shipment_form.html", {"form": form})


def _render_detail(
    request: HttpRequest, shipment: Shipment, *, edit_form: ShipmentForm | None = None,
    note_form: NoteForm | None = None, reply_form: ReplyForm | None = None, status: int = 200,
) -> HttpResponse:
    timeline = selectors.shipment_timeline(shipment=shipment)
    defaults = selectors.reply_defaults(shipment=shipment, timeline=timeline)
    return render(request, "shipments/shipment_detail.html", {
        "shipment": shipment,
        "timeline": timeline,
        "edit_form": edit_form or ShipmentForm(instance=shipment, tenant=shipment.tenant),
        "note_form": note_form or NoteForm(),
        "reply_form": reply_form or ReplyForm(initial={"to": defaults.to, "subject": defaults.subject}),
        "reply_defaults": defaults,
    }, status=status)


@staff_required
def shipment_detail(request: HttpRequest, id: Any) -> HttpResponse:
    return _render_detail(request, _shipment_or_404(request, id))


@staff_required
@require_POST
def shipment_edit(request: HttpRequest, id: Any) -> HttpResponse:
    shipment = _shipment_or_404(request, id)
    # A ModelForm writes its values onto its instance while validating: give it a copy, so that the
    # service sees the shipment as it was (and logs the status change).
    form = ShipmentForm(request.POST, instance=_shipment_or_404(request, id), tenant=shipment.tenant)
    if form.is_valid():
        try:
            services.shipment_update(shipment=shipment, actor=_staff(request), changes=form.changes())
        except ValidationError as exc:
            add_validation_errors(form, exc)
        else:
            messages.success(request, f"Saved {shipment.number}.")
            return redirect("shipment-detail", id=shipment.public_id)
    return _render_detail(request, _shipment_or_404(request, id), edit_form=form, status=400)


@staff_required
@require_POST
def shipment_note(request: HttpRequest, id: Any) -> HttpResponse:
    shipment = _shipment_or_404(request, id)
    form = NoteForm(request.POST)
    if form.is_valid():
        try:
            services.activity_note_add(shipment=shipment, actor=_staff(request), text=form.cleaned_data["text"])
        except ValidationError as exc:
            add_validation_errors(form, exc)
        else:
            return redirect("shipment-detail", id=shipment.public_id)
    return _render_detail(request, shipment, note_form=form, status=400)


@staff_required
@require_POST
def shipment_reply(request: HttpRequest, id: Any) -> HttpResponse:
    from mailboxes.sending import SendRefused

    shipment = _shipment_or_404(request, id)
    form = ReplyForm(request.POST)
    if form.is_valid():
        try:
            services.shipment_reply_send(
                shipment=shipment, staff=_staff(request), to=form.cleaned_data["to"],
                subject=form.cleaned_data["subject"], body=form.cleaned_data["body"],
            )
        except SendRefused as exc:
            form.add_error(None, f"Not sent: {exc}")
        else:
            messages.success(request, "Your message is on its way.")
            return redirect("shipment-detail", id=shipment.public_id)
    return _render_detail(request, shipment, reply_form=form, status=400)


# ----------------------------------------------------------------------------- customers


@staff_required
@require_http_methods(["GET", "POST"])
def customer_list(request: HttpRequest) -> HttpResponse:
    tenant = _tenant(request)
    form = CustomerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            customer = services.customer_create(tenant=tenant, **form.cleaned_data)
        except ValidationError as exc:
            add_validation_errors(form, exc)
        else:
            messages.success(request, f"Added {customer.name}.")
            return redirect("customer-detail", id=customer.public_id)
    q = request.GET.get("q", "")
    page = Paginator(selectors.customer_list(tenant=tenant, q=q), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "shipments/customer_list.html", {"form": form, "page": page, "q": q})


@staff_required
@require_http_methods(["GET", "POST"])
def customer_detail(request: HttpRequest, id: Any) -> HttpResponse:
    customer = _customer_or_404(request, id)
    initial = {"name": customer.name, "notes": customer.notes,
               "email_domains": ", ".join(d.domain for d in customer.domains.all())}
    form = CustomerForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.customer_update(customer=customer, **form.cleaned_data)
        except ValidationError as exc:
            add_validation_errors(form, exc)
        else:
            messages.success(request, f"Saved {customer.name}.")
            return redirect("customer-detail", id=customer.public_id)
    shipments = Paginator(selectors.customer_shipments(customer=customer), PAGE_SIZE).get_page(request.GET.get("page"))
    mail = Paginator(selectors.customer_mail(customer=customer), PAGE_SIZE).get_page(request.GET.get("mail_page"))
    return render(request, "shipments/customer_detail.html", {
        "customer": customer, "form": form, "shipments": shipments, "mail": mail,
        "contacts": selectors.customer_contacts(customer=customer),
    }, status=400 if form.is_bound and form.errors else 200)
