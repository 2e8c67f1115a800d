"""`manage.py mailbox list [--tenant SLUG] [--json]`: every mailbox, or one tenant's.

Text: one tab-separated line per mailbox (id, tenant, owner, address, provider, permission, status).
--json: one JSON array of objects. Secrets are never printed.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailboxes import selectors
from mailboxes.models import Mailbox
from tms.accounts.models import Tenant


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--tenant", metavar="SLUG", help="only this tenant's mailboxes")
    parser.add_argument("--json", action="store_true", help="a JSON array of objects")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def as_dict(m: Mailbox) -> dict[str, Any]:
    return {
        "id": m.pk, "public_id": str(m.public_id), "tenant": m.tenant.slug, "staff": m.staff.email,
        "email": m.email_address, "provider": m.provider, "permission": m.permission,
        "post_processing": m.post_processing, "status": m.status, "status_display": m.get_status_display(),
        "is_default": m.is_default, "imap_host": m.imap_host, "smtp_host": m.smtp_host,
        "last_read_at": _iso(m.last_read_at), "access_token_expires_at": _iso(m.access_token_expires_at),
        "last_error": m.last_error, "last_error_at": _iso(m.last_error_at),
    }


def run(command: BaseCommand, options: dict[str, Any]) -> None:
    tenant = None
    if options["tenant"]:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant with slug {options['tenant']!r}")
    mailboxes = list(selectors.mailbox_list_all(tenant=tenant))
    if options["json"]:
        command.stdout.write(json.dumps([as_dict(m) for m in mailboxes]))
        return
    for m in mailboxes:
        command.stdout.write("\t".join([str(m.pk), m.tenant.slug, m.staff.email, m.email_address, m.provider,
                                        m.permission, m.get_status_display()]))
