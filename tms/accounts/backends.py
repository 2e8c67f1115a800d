"""The authentication backend: Django's ModelBackend, whose per-request user lookup also brings the
user's Staff and Tenant (one LEFT JOIN query instead of two; see StaffMiddleware)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db.models import QuerySet


class StaffModelBackend(ModelBackend):
    """Same passwords, permissions and is_active rule as ModelBackend.

    `get_user` runs on every request that carries a session: with `select_related("staff__tenant")`
    the membership and its tenant come in the same row, so `request.user.staff` costs no query.
    A user without a Staff row (a platform admin) still loads: the join is an outer one.
    Subclasses add what every page needs of the user to `user_queryset` (mailboxes.auth).
    """

    def user_queryset(self) -> QuerySet[Any]:
        return get_user_model()._default_manager.select_related("staff__tenant")

    def get_user(self, user_id: Any) -> Any:
        model = get_user_model()
        try:
            user = self.user_queryset().get(pk=user_id)
        except model.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None
