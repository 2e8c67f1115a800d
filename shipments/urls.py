from django.urls import path

from . import views

urlpatterns = [
    path("shipments/", views.shipment_list, name="shipment-list"),
    path("shipments/new/", views.shipment_create, name="shipment-create"),
    path("shipments/<uuid:id>/", views.shipment_detail, name="shipment-detail"),
    path("shipments/<uuid:id>/edit/", views.shipment_edit, name="shipment-edit"),
    path("shipments/<uuid:id>/notes/", views.shipment_note, name="shipment-note"),
    path("shipments/<uuid:id>/reply/", views.shipment_reply, name="shipment-reply"),
    path("customers/", views.customer_list, name="customer-list"),
    path("customers/<uuid:id>/", views.customer_detail, name="customer-detail"),
]
