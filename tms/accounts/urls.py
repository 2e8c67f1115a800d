from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.home, name="home"),
    path("profile/", views.profile, name="profile"),
    path("staff/", views.staff_list, name="staff-list"),
    path("staff/<uuid:id>/", views.staff_edit, name="staff-edit"),
    path("company/rules/", views.company_rules, name="company-rules"),
]
