"""Every URL the app serves, from the resolver: (template, parameter names), and how to fill them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.urls import get_resolver
from django.urls.resolvers import URLResolver

from tests.reliability.support import World

# The first path segment names the model whose public id fills <id>.
SEGMENT_MODELS = {
    "mailboxes": "mailboxes.Mailbox", "shipments": "shipments.Shipment", "customers": "shipments.Customer",
    "contacts": "shipments.Contact", "activities": "shipments.Activity", "documents": "documents.Document",
    "staff": "accounts.Staff",
}


def url_templates() -> list[tuple[str, tuple[str, ...]]]:
    """('shipments/%(id)s/', ('id',)) for every pattern, namespaces included, without duplicates."""
    found: set[tuple[str, tuple[str, ...]]] = set()

    def walk(resolver: URLResolver, prefix: str) -> None:
        for _key, entries in resolver.reverse_dict.lists():
            for possibilities, _pattern, _defaults, _converters in entries:
                for template, params in possibilities:
                    found.add((prefix + template, tuple(params)))
        for ns_prefix, sub in resolver.namespace_dict.values():
            walk(sub, prefix + ns_prefix)

    walk(get_resolver(), "")
    return sorted(found)


def _model_for(template: str) -> str | None:
    parts = [p for p in template.split("/") if p and not p.startswith("%")]
    if parts[:1] == ["api"]:
        parts = parts[1:]
    for part in parts[:1]:
        name = part.split(".")[0].split("%")[0]
        if name in SEGMENT_MODELS:
            return SEGMENT_MODELS[name]
    return None


def admin_model(template: str) -> Any:
    """The model class of an admin change/delete/history URL ('admin/shipments/shipment/%(object_id)s/...')."""
    from django.apps import apps

    parts = template.split("/")
    if len(parts) > 3 and parts[0] == "admin":
        try:
            return apps.get_model(parts[1], parts[2])
        except (LookupError, ValueError):
            return None
    return None


def filled(template: str, params: tuple[str, ...], world: World) -> Iterator[str]:
    """Every URL of the template with the world's objects put in: its ids, its pks for the admin."""
    choices: dict[str, list[str]] = {}
    model_label = _model_for(template)
    for param in params:
        if param == "id":
            ids = world.ids.get(model_label or "", []) if model_label else []
            choices[param] = ids or world.all_ids()
        elif param == "message_id":
            choices[param] = [m for _b, m in world.inbound]
        elif param == "token":
            choices[param] = [world.auth_token]
        elif param == "format":
            choices[param] = ["json"]
        elif param == "object_id" or (param == "id" and template.startswith("admin/")):
            model = admin_model(template)
            if model is None:
                choices[param] = ["1"]
            elif hasattr(model, "unscoped"):
                choices[param] = [str(pk) for pk in model.unscoped.filter(tenant=world.tenant).values_list("pk", flat=True)]
            elif model._meta.label == "auth.User":
                from tms.accounts.models import Staff

                choices[param] = [str(pk) for pk in Staff.unscoped.filter(tenant=world.tenant)
                                  .values_list("user_id", flat=True)]
            else:
                choices[param] = ["1"]
        elif param == "app_label":
            choices[param] = ["shipments"]
        else:
            choices[param] = ["1"]
    if "id" in params and "message_id" in params:       # mailboxes/<id>/inbound/<message_id>/...
        for box, message in world.inbound:
            yield "/" + template % {"id": box, "message_id": message}
        return
    combos: list[dict[str, str]] = [{}]
    for param in params:
        combos = [{**c, param: v} for c in combos for v in (choices[param] or ["1"])]
    for combo in combos:
        yield "/" + template % combo
