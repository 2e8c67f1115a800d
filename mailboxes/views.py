"""The staff member's side: the profile's mailbox list, the "Edit Mailbox Connection" dialog, the
OAuth callback, the emailed authorization link and the per-mailbox buttons.

Every mailbox is looked up among the logged-in staff member's own mailboxes: anyone else's,
in this tenant or another, is a 404.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import get_script_prefix
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from tms.accounts.models import Staff
from tms.accounts.views import add_validation_errors, staff_required

from . import oauth, selectors, services
from .auth import needs_reconnect
from .forms import MailboxConnectForm, MailboxEditForm, initial_for
from .models import Mailbox, Provider
from .providers import ProviderError

SESSION_PREFIX = "mailbox_oauth:"
PROFILE_PAGE_SIZE = 50
MAX_PENDING_SIGNINS = 5
SIGNIN_MAX_AGE = 30 * 60


def _staff(request: HttpRequest) -> Staff:
    return request.staff  # type: ignore[attr-defined,no-any-return]


def _own_mailbox(request: HttpRequest, id: Any) -> Mailbox:
    mailbox = selectors.mailbox_of_staff(staff=_staff(request), public_id=id)
    if mailbox is None:
        raise Http404("No such mailbox.")
    return mailbox


def _profile_page(request: HttpRequest, form: MailboxConnectForm | None = None, status: int = 200) -> HttpResponse:
    staff = _staff(request)
    # A page of mailboxes (a staff member has one to three; a shared inbox account may have many):
    # the page's cost stays that of PROFILE_PAGE_SIZE rows (bench/README.md, "Pages").
    rows = selectors.mailbox_list_values(selectors.mailboxes_of_staff(staff=staff))
    page = Paginator(rows, PROFILE_PAGE_SIZE).get_page(request.GET.get("page"))
    dialog = {
        "connect_form": form or MailboxConnectForm(),
        "dialog_open": form is not None,
        "google_ready": oauth.is_configured(oauth.GOOGLE),
        "microsoft_ready": oauth.is_configured(oauth.MICROSOFT),
    }
    context = {
        "profile_staff": staff,
        "page": page,
        "mailboxes": [selectors.mailbox_list_row(values) for values in page.object_list],
        # the banners, on every page of the list; none to look for when the user's query said so
        "reauth": list(selectors.mailboxes_needing_reconnect(staff=staff)) if needs_reconnect(request.user) else [],
        **dialog,
        "connect_dialog": _empty_connect_dialog(request, dialog) if form is None else None,
        "now": timezone.now(),
    }
    return render(request, "mailboxes/profile.html", context, status=status)


# A stand-in for the CSRF token while the dialog is rendered once (letters only: escaping keeps it).
_CSRF_STAND_IN = "csrftokenstandinforthemailboxdialog"
_empty_dialogs: dict[tuple[bool, bool, str], str] = {}


def _empty_connect_dialog(request: HttpRequest, dialog: dict[str, Any]) -> str | None:
    """The "Edit Mailbox Connection" dialog with its empty form, as `{% include %}` would render it.

    It is the same HTML on every profile page but the CSRF token, and its 17 form widgets (each a
    template of Django's form renderer) were a third of the page's CPU (bench/README.md, "Pages"):
    rendered once per process and setting with a stand-in token, then the request's token put in.
    Not with DEBUG (templates edited while the server runs) or a form with errors (rendered whole)."""
    if settings.DEBUG:
        return None
    key = (bool(dialog["google_ready"]), bool(dialog["microsoft_ready"]), get_script_prefix())
    html = _empty_dialogs.get(key)
    if html is None:
        html = _empty_dialogs[key] = render_to_string(
            "mailboxes/_connect_dialog.html", {**dialog, "csrf_token": _CSRF_STAND_IN})
    return mark_safe(html.replace(_CSRF_STAND_IN, get_token(request)))  # noqa: S308 - our own template's HTML


@staff_required
def profile(request: HttpRequest) -> HttpResponse:
    return _profile_page(request)


def _remember_signin(request: HttpRequest, state: str, pending: dict[str, Any]) -> None:
    keys = sorted((k for k in request.session.keys() if k.startswith(SESSION_PREFIX)),  # noqa: SIM118
                  key=lambda k: request.session[k].get("started", 0))
    for old in keys[: max(0, len(keys) - MAX_PENDING_SIGNINS + 1)]:
        del request.session[old]
    request.session[SESSION_PREFIX + state] = pending


@staff_required
@require_POST
def connect(request: HttpRequest) -> HttpResponse:
    """The dialog's buttons: "Sign in with Google/Microsoft" or "Request Authorization Token"."""
    form = MailboxConnectForm(request.POST)
    chosen = request.POST.get("connect") or request.POST.get("provider")
    if form.is_valid() and chosen != form.cleaned_data["provider"]:
        form.add_error("provider", "Choose the platform, then use its button.")
    if not form.is_valid():
        return _profile_page(request, form, status=400)
    data = form.cleaned_data
    staff = _staff(request)
    try:
        if data["provider"] in services.OAUTH_PROVIDERS:
            url, state, pending = services.mailbox_oauth_start(
                staff=staff, provider=data["provider"], email_address=data["email_address"],
                permission=data["permission"], post_processing=data["post_processing"])
            _remember_signin(request, state, pending)
            return redirect(url)
        mailbox = services.mailbox_connect_imap(
            staff=staff, email_address=data["email_address"], imap_host=data["imap_host"],
            imap_port=data["imap_port"] or 993, imap_security=data["imap_security"],
            smtp_host=data["smtp_host"], smtp_port=data["smtp_port"], smtp_security=data["smtp_security"],
            username=data["username"], password=data["password"], permission=data["permission"],
            post_processing=data["post_processing"], display_name=data["display_name"],
            from_address=data["from_address"], actor=staff)
    except ValidationError as exc:
        add_validation_errors(form, exc)
        return _profile_page(request, form, status=400)
    except ProviderError as exc:  # saved, but the authorization e-mail did not go out
        messages.error(request, str(exc))
        return redirect("profile")
    messages.success(request, f"We sent an authorization link to {mailbox.email_address}. "
                              "Open it while logged in to activate the mailbox.")
    return redirect("profile")


@staff_required
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Where Google and Microsoft send the browser back. The state must be one this session started,
    for this staff member, and it works once."""
    state = request.GET.get("state", "")
    pending = request.session.pop(SESSION_PREFIX + state, None) if state else None
    if (not pending or pending.get("staff") != str(_staff(request).public_id)
            or time.time() - float(pending.get("started", 0)) > SIGNIN_MAX_AGE):
        messages.error(request, "This sign-in is not valid, has expired or was already used. "
                                "Please start again from Add Mailbox Config. Nothing was saved.")
        return redirect("profile")
    try:
        mailbox = services.mailbox_oauth_complete(staff=_staff(request), pending=pending,
                                                  params=request.GET.dict())
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("profile")
    messages.success(request, f"{mailbox.email_address} is connected.")
    return redirect("profile")


@staff_required
@require_GET
def authorize(request: HttpRequest, token: str) -> HttpResponse:
    """The link from the Email Assistant's e-mail (IMAP/SMTP mailboxes)."""
    try:
        mailbox = services.mailbox_authorize_link(token=token, staff=_staff(request))
    except services.AuthorizationLinkError as exc:
        return render(request, "mailboxes/authorize_failed.html", {"reason": str(exc)}, status=400)
    messages.success(request, f"{mailbox.email_address} is authorized and active.")
    return redirect("profile")


@staff_required
def edit(request: HttpRequest, id: Any) -> HttpResponse:
    mailbox = _own_mailbox(request, id)
    form = MailboxEditForm(request.POST or None, mailbox=mailbox, initial=initial_for(mailbox))
    if request.method == "POST" and form.is_valid():
        try:
            services.mailbox_update(mailbox=mailbox, actor=_staff(request),
                                    password=form.cleaned_data.get("password") or "", **form.changes())
        except ValidationError as exc:
            add_validation_errors(form, exc)
        else:
            messages.success(request, f"Saved {mailbox.email_address}.")
            return redirect("profile")
    return render(request, "mailboxes/edit.html", {"mailbox": mailbox, "form": form},
                  status=400 if request.method == "POST" else 200)


@staff_required
@require_POST
def check(request: HttpRequest, id: Any) -> HttpResponse:
    mailbox = _own_mailbox(request, id)
    result = services.mailbox_check(mailbox, actor=_staff(request))
    if result.ok:
        messages.success(request, f"{mailbox.email_address}: {result.message}.")
    else:
        messages.error(request, f"{mailbox.email_address}: check failed at {result.stage}: {result.message}")
    return redirect("profile")


@staff_required
@require_POST
def send_test(request: HttpRequest, id: Any) -> HttpResponse:
    mailbox = _own_mailbox(request, id)
    try:
        outcome = services.mailbox_send_test(mailbox=mailbox, actor=_staff(request))
    except (ProviderError, ValidationError) as exc:
        messages.error(request, f"{mailbox.email_address}: the test e-mail was not sent: {exc}")
    else:
        messages.success(request, outcome)
    return redirect("profile")


@staff_required
@require_POST
def make_default(request: HttpRequest, id: Any) -> HttpResponse:
    mailbox = _own_mailbox(request, id)
    services.mailbox_make_default(mailbox=mailbox, actor=_staff(request))
    messages.success(request, f"{mailbox.email_address} is now your default mailbox.")
    return redirect("profile")


@staff_required
@require_POST
def disable(request: HttpRequest, id: Any) -> HttpResponse:
    mailbox = _own_mailbox(request, id)
    services.mailbox_disable(mailbox=mailbox, actor=_staff(request))
    messages.success(request, f"{mailbox.email_address} is disabled.")
    return redirect("profile")


@staff_required
@require_POST
def enable(request: HttpRequest, id: Any) -> HttpResponse:
    mailbox = _own_mailbox(request, id)
    services.mailbox_enable(mailbox=mailbox, actor=_staff(request))
    messages.success(request, f"{mailbox.email_address} is enabled.")
    return redirect("profile")


@staff_required
@require_POST
def reconnect(request: HttpRequest, id: Any) -> HttpResponse:
    """OAuth: sign in again. IMAP/SMTP: a new authorization link while pending, else edit the password."""
    mailbox = _own_mailbox(request, id)
    staff = _staff(request)
    if mailbox.provider in services.OAUTH_PROVIDERS:
        try:
            url, state, pending = services.mailbox_oauth_start(staff=staff, provider=mailbox.provider,
                                                               mailbox=mailbox)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect("profile")
        _remember_signin(request, state, pending)
        return redirect(url)
    if mailbox.provider == Provider.IMAP and mailbox.status == Mailbox.Status.PENDING_AUTHORIZATION:
        try:
            services.mailbox_request_authorization(mailbox=mailbox, actor=staff)
        except ProviderError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"We sent a new authorization link to {mailbox.email_address}.")
        return redirect("profile")
    messages.info(request, "Enter the mailbox's current password to reconnect it.")
    return redirect("mailbox-edit", id=mailbox.public_id)


@staff_required
@require_POST
def remove(request: HttpRequest, id: Any) -> HttpResponse:
    mailbox = _own_mailbox(request, id)
    address = mailbox.email_address
    services.mailbox_remove(mailbox=mailbox, actor=_staff(request))
    messages.success(request, f"{address} was removed.")
    return redirect("profile")
