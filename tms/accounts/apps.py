from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "tms.accounts"
    label = "accounts"
    verbose_name = "Tenants and staff"
