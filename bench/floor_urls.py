"""The app's URLs plus /bench/floor/: a logged-in view that answers 5 bytes (bench/floor_settings.py)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import path

from tms.urls import urlpatterns as app_urlpatterns

FLOOR_PATH = "/bench/floor/"


@login_required
def floor(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"hello", content_type="text/plain")


urlpatterns = [path(FLOOR_PATH.strip("/") + "/", floor), *app_urlpatterns]
