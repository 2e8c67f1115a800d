"""Tenants: charlie (globex admin) tries every page and every API operation on acme's objects.

0 cross-tenant reads (no response carries acme's ids, addresses, numbers or names) and 0 writes
(acme's rows are byte for byte the same afterwards; no globex row points at an acme row)."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.support import World, snapshot, summary, tenant_models
from tests.reliability.urls import filled, url_templates
from tms.accounts.models import Staff, Tenant

REFUSED = {301, 302, 400, 403, 404, 405}


def leaked(world: World, body: bytes) -> list[str]:
    text = body.decode("utf-8", "replace")
    return sorted(m for m in world.markers if m and m in text)


def cross_links(tenant: Tenant) -> list[str]:
    """Rows of tenant whose foreign keys point at another tenant's rows."""
    bad = []
    for model in tenant_models():
        for field in model._meta.get_fields():
            target = getattr(field, "related_model", None)
            if not (field.many_to_one or field.one_to_one) or not getattr(field, "concrete", False):
                continue
            if target is None or not any(f.name == "tenant" for f in target._meta.fields) or field.name == "tenant":
                continue
            rows = (model.unscoped.filter(tenant=tenant).exclude(**{f"{field.name}__isnull": True})
                    .exclude(**{f"{field.name}__tenant": tenant}))
            if rows.exists():
                bad.append(f"{model._meta.label}.{field.name}")
    return bad


def test_it_refuses_every_page_of_another_tenant(
    world: World, charlie: Staff, charlie_client: Client, globex: Tenant, capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(world.tenant)
    started = time.monotonic()
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    templates = url_templates()
    requests = 0
    for template, params in templates:
        urls = list(filled(template, params, world)) if params else ["/" + template]
        for url in urls:
            methods = ("get", "post") if params else ("get",)
            for method in methods:
                response = getattr(charlie_client, method)(url)
                requests += 1
                statuses[response.status_code] += 1
                body = b"" if getattr(response, "streaming", False) else response.content
                # A redirect to the login page quotes the URL asked for: that echo is not a leak.
                location = str(response.get("Location", "")).replace(quote(url), "").replace(url, "")
                found = leaked(world, body + location.encode())
                if found:
                    problems.append(f"{method.upper()} {url} -> {response.status_code} shows {found[:3]}")
                elif params and response.status_code not in REFUSED:
                    problems.append(f"{method.upper()} {url} -> {response.status_code} (expected 404/403/redirect)")
    after = snapshot(world.tenant)
    changed = [label for label in before if before[label] != after[label]]
    summary(capsys, f"tenants/pages: {len(templates)} URL patterns, {requests} requests as charlie, "
                    f"statuses {dict(sorted(statuses.items()))}, {len(problems)} cross-tenant reads, "
                    f"{len(changed)} tables of acme changed, {time.monotonic() - started:.1f} s")
    assert not problems, "\n".join(problems[:30])
    assert not changed
    assert not cross_links(globex)


# ----------------------------------------------------------------------------- the API, by its schema


ID_FIELDS = {"customer", "contact", "shipment", "mailbox", "assigned_to", "staff", "document", "activity",
             "source_message", "shipments", "shipment_id", "customer_id"}


def _poison(value: Any, world: World, rnd: random.Random) -> Any:
    """Put acme's ids into the places a generated body has for ids."""
    if isinstance(value, dict):
        return {k: (rnd.choice(world.all_ids()) if k in ID_FIELDS and not isinstance(v, dict | list)
                    else _poison(v, world, rnd)) for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v, world, rnd) for v in value]
    return value


@pytest.mark.parametrize("examples", [pytest.param(8, id="quick"),
                                      pytest.param(60, id="slow", marks=pytest.mark.slow)])
def test_it_refuses_every_api_operation_on_another_tenant(
    world: World, charlie: Staff, charlie_session: dict[str, dict[str, str]], globex: Tenant, examples: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The WSGI handler closes the database connection at the end of each request (request_finished);
    # inside the test's transaction it must stay open, as Django's test client arranges for itself.
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        _api_attack(world, charlie_session, globex, examples, capsys)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _api_attack(world: World, charlie_session: dict[str, dict[str, str]], globex: Tenant, examples: int,
                capsys: pytest.CaptureFixture[str]) -> None:
    import schemathesis

    before = snapshot(world.tenant)
    started = time.monotonic()
    schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler())
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    operations = 0
    calls = 0
    rnd = random.Random(0)
    model_ids = world.all_ids()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        operations += 1

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), pick=st.integers(min_value=0, max_value=10_000))
        def attack(case: Any, pick: int) -> None:
            nonlocal calls
            targets_acme = False
            if case.path_parameters and "id" in case.path_parameters:
                case.path_parameters["id"] = model_ids[pick % len(model_ids)]
                targets_acme = True
            if isinstance(case.body, dict | list):
                case.body = _poison(case.body, world, rnd)
            response = case.call(headers=dict(charlie_session["headers"]), cookies=dict(charlie_session["cookies"]))
            calls += 1
            statuses[response.status_code] += 1
            where = f"{case.method} {case.formatted_path}"
            # An error that quotes the id charlie sent ("no such customer: <id>") echoes his input.
            sent = where + json.dumps(case.body, default=str) + json.dumps(case.query, default=str)
            found = [m for m in leaked(world, response.content or b"") if m not in sent]
            if found:
                problems.append(f"{where} -> {response.status_code} shows {found[:3]}")
            if targets_acme and response.status_code < 300:
                problems.append(f"{where} -> {response.status_code} on acme's object")
            if response.status_code >= 500:
                problems.append(f"{where} -> {response.status_code}: {response.content[:200]!r}")

        attack()
    after = snapshot(world.tenant)
    changed = [label for label in before if before[label] != after[label]]
    links = cross_links(globex)
    summary(capsys, f"tenants/api: {operations} operations, {calls} generated calls as charlie "
                    f"(statuses {dict(sorted(statuses.items()))}), {len(problems)} problems, "
                    f"{len(changed)} tables of acme changed, {len(links)} globex rows pointing at acme, "
                    f"{time.monotonic() - started:.1f} s")
    assert operations >= 10
    assert not problems, "\n".join(sorted(set(problems))[:30])
    assert not changed, changed
    assert not links, links
