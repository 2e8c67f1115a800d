from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tms.accounts import services
from tms.accounts.models import Tenant


def validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = "Manage tenants (companies): create, list."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a tenant; prints its id")
        create.add_argument("slug")
        create.add_argument("--name", required=True)
        create.add_argument("--shipment-prefix", default="SHP-")
        lst = sub.add_parser("list", help="list tenants")
        lst.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "create":
            if Tenant.objects.filter(slug=options["slug"]).exists():
                raise CommandError(f"tenant {options['slug']!r} already exists")
            try:
                tenant = services.tenant_create(
                    slug=options["slug"], name=options["name"], shipment_prefix=options["shipment_prefix"]
                )
            except ValidationError as exc:
                raise CommandError(validation_message(exc)) from None
            self.stdout.write(str(tenant.pk))
        else:
            rows = [
                {"id": t.pk, "public_id": str(t.public_id), "slug": t.slug, "name": t.name, "active": t.active}
                for t in Tenant.objects.order_by("slug")
            ]
            if options["json"]:
                for row in rows:
                    self.stdout.write(json.dumps(row))
            else:
                for row in rows:
                    state = "active" if row["active"] else "inactive"
                    self.stdout.write(f"{row['id']}\t{row['slug']}\t{row['name']}\t{state}")
