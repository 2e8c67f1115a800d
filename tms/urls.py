from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from documents.api import DocumentViewSet
from mailboxes.api import MailboxViewSet
from mailboxes.ops import ops_mailboxes
from shipments.api import ActivityViewSet, ContactViewSet, CustomerViewSet, ShipmentViewSet
from tms.accounts.api_views import StaffViewSet
from tms.metrics import metrics_view

from . import views

# No ".json" suffix routes: the viewsets' own create/partial_update take no `format` argument, so
# POST /api/<x>.json raised TypeError (a 500). Content negotiation (Accept, ?format=) still works.
router = DefaultRouter()
router.include_format_suffixes = False
router.register("staff", StaffViewSet, basename="staff")
router.register("mailboxes", MailboxViewSet, basename="mailbox")
router.register("shipments", ShipmentViewSet, basename="shipment")
router.register("activities", ActivityViewSet, basename="activity")
router.register("customers", CustomerViewSet, basename="customer")
router.register("contacts", ContactViewSet, basename="contact")
router.register("documents", DocumentViewSet, basename="document-api")

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("ops/", ops_mailboxes, name="ops-mailboxes"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/", include(router.urls)),
    # mailboxes first: its "profile/" (the profile with the mailbox list) replaces the plain one
    path("settings/sending/", include("mailboxes.urls_sending")),
    path("", include("mailboxes.urls")),
    path("", include("shipments.urls")),
    path("", include("documents.urls")),
    path("", include("tms.accounts.urls")),
]
