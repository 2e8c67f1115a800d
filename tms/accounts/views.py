from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from . import services
from .forms import ClassificationRulesForm, LoginForm, StaffCreateForm, StaffUpdateForm
from .models import Staff

View = Callable[..., HttpResponse]


def add_validation_errors(form: forms.BaseForm, exc: ValidationError) -> None:
    """Show a service's ValidationError on the form: on its field when the form has one."""
    errors = exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}
    for field, messages_ in errors.items():
        for message in messages_:
            form.add_error(field if field in form.fields else None, message)


def staff_required(view: View) -> View:
    """Logged in as a member of an active tenant (platform admins without a tenant are sent to admin)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if getattr(request, "staff", None) is None:
            if request.user.is_staff:
                return redirect("admin:index")
            raise PermissionDenied("This login is not a member of any company.")
        return view(request, *args, **kwargs)

    return wrapper


def tenant_admin_required(view: View) -> View:
    @staff_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.staff.is_admin:  # type: ignore[attr-defined]
            raise PermissionDenied("Only your company's admins can manage staff.")
        return view(request, *args, **kwargs)

    return wrapper


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True


@staff_required
def home(request: HttpRequest) -> HttpResponse:
    """Where a staff member lands after login: their work."""
    return redirect("shipment-list")


@staff_required
def profile(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/profile.html", {"profile_staff": request.staff})  # type: ignore[attr-defined]


@tenant_admin_required
def staff_list(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    form = StaffCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.staff_create(tenant=tenant, **form.cleaned_data)
        except ValidationError as exc:
            add_validation_errors(form, exc)
        else:
            messages.success(request, f"Added {created.name}.")
            return redirect("staff-list")
    members = Staff.objects.for_tenant(tenant).select_related("user").order_by("name")
    return render(request, "accounts/staff_list.html", {"members": members, "form": form})


@tenant_admin_required
def staff_edit(request: HttpRequest, id: str) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    member = get_object_or_404(Staff.objects.for_tenant(tenant).select_related("user"), public_id=id)
    initial = {"name": member.name, "role": member.role, "active": member.user.is_active}
    form = StaffUpdateForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        if member == request.staff and (  # type: ignore[attr-defined]
            form.cleaned_data["role"] != Staff.Role.ADMIN or not form.cleaned_data["active"]
        ):
            form.add_error(None, "You cannot remove your own admin role or deactivate yourself.")
        else:
            services.staff_update(staff=member, **form.cleaned_data)
            messages.success(request, f"Saved {member.name}.")
            return redirect("staff-list")
    return render(request, "accounts/staff_edit.html", {"member": member, "form": form})


@tenant_admin_required
def company_rules(request: HttpRequest) -> HttpResponse:
    """The tenant's "enough detail" rule for turning quote and pickup requests into shipments."""
    tenant = request.tenant  # type: ignore[attr-defined]
    initial = {"lane_precision": tenant.lane_precision, "required_fields": tenant.required_fields}
    form = ClassificationRulesForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        services.tenant_rules_update(tenant=tenant, **form.cleaned_data)
        messages.success(request, "Saved. New mail is classified with these rules.")
        return redirect("company-rules")
    return render(request, "accounts/company_rules.html", {"form": form})
