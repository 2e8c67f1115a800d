from django.urls import path

from . import views, views_inbound

# Included by tms/urls.py before tms.accounts.urls: "profile/" here replaces the plain profile page
# with one that lists the staff member's mailboxes (same URL, same name).
urlpatterns = [
    path("profile/", views.profile, name="profile"),
    path("mailboxes/connect/", views.connect, name="mailbox-connect"),
    path("mailboxes/oauth/callback/", views.oauth_callback, name="mailbox-oauth-callback"),
    path("mailboxes/authorize/<str:token>/", views.authorize, name="mailbox-authorize"),
    path("mailboxes/<uuid:id>/edit/", views.edit, name="mailbox-edit"),
    path("mailboxes/<uuid:id>/check/", views.check, name="mailbox-check"),
    path("mailboxes/<uuid:id>/send-test/", views.send_test, name="mailbox-send-test"),
    path("mailboxes/<uuid:id>/default/", views.make_default, name="mailbox-default"),
    path("mailboxes/<uuid:id>/disable/", views.disable, name="mailbox-disable"),
    path("mailboxes/<uuid:id>/enable/", views.enable, name="mailbox-enable"),
    path("mailboxes/<uuid:id>/reconnect/", views.reconnect, name="mailbox-reconnect"),
    path("mailboxes/<uuid:id>/remove/", views.remove, name="mailbox-remove"),
    path("mailboxes/<uuid:id>/inbound/", views_inbound.inbound_list, name="mailbox-inbound"),
    path("mailboxes/<uuid:id>/inbound/<uuid:message_id>/retry/", views_inbound.inbound_retry,
         name="mailbox-inbound-retry"),
]
