from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tms.accounts.models import Staff, Tenant


def run(*args: str, stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> str:
    out = io.StringIO()
    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    call_command(*args, stdout=out)
    return out.getvalue().strip()


@pytest.mark.django_db
def test_it_creates_a_tenant_and_prints_its_id() -> None:
    printed = run("tenant", "create", "demo", "--name", "Demo Freight")
    tenant = Tenant.objects.get(slug="demo")
    assert printed == str(tenant.pk)
    assert tenant.name == "Demo Freight" and tenant.shipment_prefix == "SHP-"


@pytest.mark.django_db
def test_it_refuses_a_duplicate_or_bad_slug() -> None:
    run("tenant", "create", "demo", "--name", "Demo")
    with pytest.raises(CommandError, match="already exists"):
        run("tenant", "create", "demo", "--name", "Demo")
    with pytest.raises(CommandError, match="slug"):
        run("tenant", "create", "Bad Slug!", "--name", "Demo")


@pytest.mark.django_db
def test_it_creates_staff_with_a_password_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    run("tenant", "create", "demo", "--name", "Demo")
    printed = run("staff", "create", "--tenant", "demo", "--email", "Ann@Demo.example", "--name", "Ann",
                  "--role", "admin", "--password-stdin", stdin="s3cret-password\n", monkeypatch=monkeypatch)
    staff = Staff.unscoped.get(pk=int(printed))
    assert staff.role == "admin" and staff.user.username == "ann@demo.example"
    assert staff.user.check_password("s3cret-password")


@pytest.mark.django_db
def test_it_names_the_problem_for_bad_staff_input(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CommandError, match="no tenant"):
        run("staff", "create", "--tenant", "nope", "--email", "a@b.example", "--name", "A")
    run("tenant", "create", "demo", "--name", "Demo")
    with pytest.raises(CommandError, match=r"valid email|Enter a valid"):
        run("staff", "create", "--tenant", "demo", "--email", "not-an-email", "--name", "A")
