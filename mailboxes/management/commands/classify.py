"""`manage.py classify FILE.eml [FILE.eml ...] --json [--tenant SLUG]` (INTERFACES.md).

One JSON object per file, in the order given, in the shape of the corpus schema. Needs no
database unless --tenant is given. Never fails on a bad file: a message that cannot be read or
parsed comes out as category "other" with an "error" key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import classifier
from mailboxes.classification import classify_for_tenant


class Command(BaseCommand):
    help = "Classify e-mail files (.eml) and print what the TMS would do with each."
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE.eml")
        parser.add_argument("--json", action="store_true", help="one JSON object per line (the default)")
        parser.add_argument("--tenant", metavar="SLUG", help="apply this tenant's shipment prefix and rules")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = None
        if options["tenant"]:
            from tms.accounts.models import Tenant

            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"no tenant with slug {options['tenant']!r}")
        classifier.warm_up()
        for name in options["files"]:
            path = Path(name)
            try:
                raw = path.read_bytes()
            except OSError as exc:
                result = classifier.classify(b"").to_schema_dict(file=path.name)
                result["error"] = f"cannot read {name}: {exc.strerror or exc}"
            else:
                result = classify_for_tenant(raw, tenant).to_schema_dict(file=path.name)
            self.stdout.write(json.dumps(result, ensure_ascii=False, default=str))
