"""API permissions. Kept apart from api.py: DRF imports the default permission classes while
rest_framework.views is still loading, so this module may import nothing but permissions."""

from typing import Any

from rest_framework import permissions


class IsStaffMember(permissions.BasePermission):
    """Logged in and a member of an active tenant. Platform admins use Django admin, not the API."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return getattr(request._request, "staff", None) is not None


class IsTenantAdmin(IsStaffMember):
    def has_permission(self, request: Any, view: Any) -> bool:
        staff = getattr(request._request, "staff", None)
        return staff is not None and staff.is_admin
