"""A URL configuration with an ampersand in a path, for tests/test_template_urls.py."""

from django.http import HttpResponse
from django.urls import path

urlpatterns = [
    path("a&b/<uuid:id>/", lambda request, id: HttpResponse(), name="odd"),
    path("elsewhere/<uuid:id>/", lambda request, id: HttpResponse(), name="shipment-detail"),
]
