"""Pages: the inbox of unmatched documents, match/ignore actions, and downloads.

Everything is looked up within the logged-in staff member's tenant: another company's document is
simply not found (404). Files are only ever served through `document_download`, which checks the
tenant and sends them as attachments; storage is never exposed as a public URL.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from tms.accounts.models import Staff, Tenant
from tms.accounts.views import staff_required

from . import selectors, services
from .models import Document

PAGE_SIZE = 25


def _staff(request: HttpRequest) -> Staff:
    return request.staff  # type: ignore[attr-defined,no-any-return]


def _tenant(request: HttpRequest) -> Tenant:
    return request.tenant  # type: ignore[attr-defined,no-any-return]


def _document_or_404(request: HttpRequest, id: Any) -> Document:
    document = selectors.document_get(tenant=_tenant(request), public_id=id)
    if document is None:
        raise Http404("No such document.")
    return document


def _back(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return redirect(target)
    return redirect("document-inbox")


@staff_required
@require_GET
def document_inbox(request: HttpRequest) -> HttpResponse:
    tenant = _tenant(request)
    page = Paginator(selectors.documents_inbox(tenant=tenant), PAGE_SIZE).get_page(request.GET.get("page"))
    newest = selectors.shipment_choices(tenant=tenant)
    rows = [{"document": d, "choices": list(dict.fromkeys([*d.candidates, *newest]))} for d in page.object_list]
    return render(request, "documents/inbox.html", {"page": page, "rows": rows})


@staff_required
@require_POST
def document_match(request: HttpRequest, id: Any) -> HttpResponse:
    document = _document_or_404(request, id)
    shipment = selectors.shipment_for_reference(tenant=_tenant(request), value=request.POST.get("shipment", ""))
    if shipment is None:
        messages.error(request, f"{document.filename}: no such shipment.")
        return _back(request)
    try:
        services.document_match(document=document, shipment=shipment, staff=_staff(request))
    except ValidationError:
        messages.error(request, f"{document.filename}: no such shipment.")
    else:
        messages.success(request, f"{document.filename} filed on {shipment.number}.")
    return _back(request)


@staff_required
@require_POST
def document_ignore(request: HttpRequest, id: Any) -> HttpResponse:
    document = _document_or_404(request, id)
    services.document_ignore(document=document, staff=_staff(request))
    messages.success(request, f"{document.filename} taken out of the inbox.")
    return _back(request)


@staff_required
@require_GET
def document_download(request: HttpRequest, id: Any) -> HttpResponse:
    document = _document_or_404(request, id)
    try:
        handle = selectors.document_open(document=document)
    except FileNotFoundError:
        raise Http404("This file was not kept.") from None
    # A streamed response: typed as HttpResponse for the decorators, which only pass it through.
    return cast(HttpResponse, download_response(document, handle))


def download_response(document: Document, handle: Any) -> FileResponse:
    """The file as an attachment: never rendered by the browser in our origin (a stranger's HTML
    or SVG would run as us), whatever content type the sender claimed."""
    response = FileResponse(handle, as_attachment=True, filename=document.filename,
                            content_type="application/octet-stream")
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
