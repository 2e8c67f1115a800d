"""{% row_url %} (tms/template_urls.py) gives exactly what {% url %} gives, for UUID-argument views."""

from __future__ import annotations

import uuid

import pytest
from django.template import Context, Template, TemplateSyntaxError
from django.test import override_settings
from django.urls import NoReverseMatch, reverse, set_script_prefix

from tms.template_urls import row_url

NAMES = ["shipment-detail", "customer-detail", "mailbox-edit", "mailbox-check", "mailbox-send-test",
         "mailbox-default", "mailbox-disable", "mailbox-enable", "mailbox-reconnect", "mailbox-remove",
         "mailbox-inbound"]


@pytest.mark.parametrize("name", NAMES)
def test_it_gives_what_reverse_gives(name: str) -> None:
    for _ in range(3):
        key = uuid.uuid4()
        expected = reverse(name, args=[key])
        assert row_url(name, key) == expected
        assert row_url(name, str(key)) == expected
        out = Template("{% load tms_urls %}{% row_url '" + name + "' id %}").render(Context({"id": key}))
        assert out == expected


def test_it_renders_each_row_of_a_list_with_its_own_id() -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    out = Template("{% load tms_urls %}{% for i in ids %}{% row_url 'shipment-detail' i %}|{% endfor %}").render(
        Context({"ids": ids}))
    assert out.split("|")[:-1] == [reverse("shipment-detail", args=[i]) for i in ids]


def test_it_follows_the_script_prefix() -> None:
    key = uuid.uuid4()
    try:
        set_script_prefix("/tms/")
        assert row_url("shipment-detail", key) == f"/tms/shipments/{key}/" == reverse("shipment-detail", args=[key])
    finally:
        set_script_prefix("/")
    assert row_url("shipment-detail", key) == f"/shipments/{key}/"


def test_it_refuses_what_is_not_a_uuid() -> None:
    with pytest.raises(ValueError):
        row_url("shipment-detail", "../../admin")
    with pytest.raises(ValueError):
        Template("{% load tms_urls %}{% row_url 'shipment-detail' id %}").render(Context({"id": '"><script>'}))
    with pytest.raises(NoReverseMatch):
        row_url("shipment-list", uuid.uuid4())  # a view without an argument
    with pytest.raises(TemplateSyntaxError):
        Template("{% load tms_urls %}{% row_url shipment-detail id %}")


@override_settings(ROOT_URLCONF="tests.urls_ampersand")
def test_it_escapes_the_url_as_url_does() -> None:
    key = uuid.uuid4()
    template = "{% load tms_urls %}{% row_url 'odd' id %} {% url 'odd' id %}"
    ours, django = Template(template).render(Context({"id": key})).split(" ")
    assert ours == django == f"/a&amp;b/{key}/"


def test_it_follows_a_changed_url_configuration() -> None:
    key = uuid.uuid4()
    assert row_url("shipment-detail", key) == f"/shipments/{key}/"
    with override_settings(ROOT_URLCONF="tests.urls_ampersand"):
        assert row_url("shipment-detail", key) == f"/elsewhere/{key}/" == reverse("shipment-detail", args=[key])
    assert row_url("shipment-detail", key) == f"/shipments/{key}/"
