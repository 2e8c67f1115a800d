from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "tms.accounts"
    label = "accounts"
    verbose_name = "Tenants and staff"

    def ready(self) -> None:
        from django.core import checks

        from tms.checks import sqlite_version_check

        checks.register(sqlite_version_check)
