from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tms.accounts import services
from tms.accounts.models import Staff, Tenant

from .tenant import validation_message


class Command(BaseCommand):
    help = "Manage staff members: create, list."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a staff member; prints their id")
        create.add_argument("--tenant", required=True, help="tenant slug")
        create.add_argument("--email", required=True)
        create.add_argument("--name", required=True)
        create.add_argument("--role", choices=Staff.Role.values, default=Staff.Role.STAFF)
        create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        lst = sub.add_parser("list", help="list a tenant's staff")
        lst.add_argument("--tenant", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant with slug {options['tenant']!r}")
        if options["action"] == "list":
            for s in Staff.objects.for_tenant(tenant).order_by("email"):
                self.stdout.write(f"{s.pk}\t{s.email}\t{s.name}\t{s.role}")
            return
        password = None
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise CommandError("--password-stdin: no password on standard input")
        try:
            staff = services.staff_create(
                tenant=tenant, email=options["email"], name=options["name"], role=options["role"], password=password
            )
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from None
        self.stdout.write(str(staff.pk))
