from django.urls import path

from . import views

urlpatterns = [
    path("documents/inbox/", views.document_inbox, name="document-inbox"),
    path("documents/<uuid:id>/match/", views.document_match, name="document-match"),
    path("documents/<uuid:id>/ignore/", views.document_ignore, name="document-ignore"),
    path("documents/<uuid:id>/download/", views.document_download, name="document-download"),
]
