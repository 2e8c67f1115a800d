"""{% row_csrf_token %} (tms/template_urls.py) renders exactly what {% csrf_token %} renders, on every
row of a list, and the mailbox list's row forms (which use it) pass Django's CSRF check."""

from __future__ import annotations

import re

import pytest
from django.template import Context, RequestContext, Template, TemplateSyntaxError
from django.test import Client, RequestFactory

from mailboxes.models import Mailbox
from tests.factories import make_mailbox
from tms.accounts.models import Staff

ROWS = "{% load tms_urls %}{% for i in rows %}{% row_csrf_token %}|{% csrf_token %}\n{% endfor %}"


def rendered(context: Context) -> list[tuple[str, str]]:
    lines = Template(ROWS).render(context).splitlines()
    assert len(lines) == 5
    return [(ours, django) for ours, django in (line.split("|") for line in lines)]


def test_it_renders_the_requests_token_as_csrf_token_does_on_every_row() -> None:
    request = RequestFactory().get("/")
    rows = rendered(RequestContext(request, {"rows": range(5)}))
    for ours, django in rows:
        assert ours == django
        assert re.fullmatch(r'<input type="hidden" name="csrfmiddlewaretoken" value="[A-Za-z0-9]{64}">', ours)


@pytest.mark.parametrize("token", ['"><script>x</script>', "NOTPROVIDED", None])
def test_it_escapes_and_leaves_out_as_csrf_token_does(token: str | None) -> None:
    context = Context({"rows": range(5)} | ({} if token is None else {"csrf_token": token}))
    for ours, django in rendered(context):
        assert ours == django
        assert "<script>" not in ours
        assert (ours == "") == (token in (None, "NOTPROVIDED"))


def test_it_keeps_nothing_from_one_rendering_to_the_next() -> None:
    template = Template(ROWS)  # one compiled template (as the cached loader keeps it), two requests
    first, second = (template.render(RequestContext(RequestFactory().get("/"), {"rows": range(2)})) for _ in range(2))
    for out in (first, second):
        assert all(ours == django for ours, django in (line.split("|") for line in out.splitlines()))
    assert first != second


def test_it_takes_no_arguments() -> None:
    with pytest.raises(TemplateSyntaxError):
        Template("{% load tms_urls %}{% row_csrf_token x %}")


@pytest.mark.django_db
def test_the_mailbox_lists_row_forms_pass_the_csrf_check(alice: Staff) -> None:
    mailbox = make_mailbox(alice, "alice-box@example.test", is_default=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    page = client.get("/profile/").content.decode()
    row = page[page.index(f'<tr data-mailbox="{mailbox.public_id}">'):]
    row = row[:row.index("</tr>")]
    tokens = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', row)
    assert len(tokens) == 5  # check, send test, disable, reconnect, remove (default: no "Make default")
    assert len(set(tokens)) == 1
    url = f"/mailboxes/{mailbox.public_id}/disable/"
    assert client.post(url).status_code == 403  # the check is on
    assert client.post(url, {"csrfmiddlewaretoken": tokens[0]}).status_code == 302
    assert Mailbox.unscoped.get(pk=mailbox.pk).status == "disabled"
