from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

from .models import Staff


class StaffMiddleware:
    """Puts the logged-in user's Staff and Tenant on the request (None for outsiders and platform admins).

    A user whose tenant is deactivated is logged out: an inactive company's staff keep no access.
    The Staff and Tenant come with the user (tms.accounts.backends.StaffModelBackend: one query);
    a user loaded some other way costs one query here.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        staff = None
        if request.user.is_authenticated:
            try:
                staff = request.user.staff  # type: ignore[union-attr]
            except Staff.DoesNotExist:
                staff = None
            if staff is not None and not staff.tenant.active:
                logout(request)
                staff = None
        request.staff = staff  # type: ignore[attr-defined]
        request.tenant = staff.tenant if staff else None  # type: ignore[attr-defined]
        return self.get_response(request)
