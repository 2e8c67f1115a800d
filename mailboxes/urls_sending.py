from django.urls import path

from . import views_sending

urlpatterns = [
    path("", views_sending.sending_settings, name="sending-settings"),
    path("consent/", views_sending.sending_consent, name="sending-settings-consent"),
    path("callback/", views_sending.sending_consent_callback, name="sending-settings-callback"),
]
