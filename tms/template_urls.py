"""`{% row_url 'name' id %}`: `{% url 'name' id %}` for the rows of a list, for views whose only
argument is a UUID (`<uuid:id>`).

Django's `reverse` walks the URL resolver on every call (~20-40 µs here): a 50-row list with 2-9
links a row spent more time reversing than rendering (bench/README.md, "Pages"). This tag reverses a
name once per process (and URL configuration and script prefix) with a stand-in UUID, then only puts
each row's id between the two halves: ~3 µs a link. The id must be a UUID (anything else raises
ValueError), so the result is exactly what `reverse` gives. Load it with `{% load tms_urls %}`.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import template
from django.conf import settings
from django.template.base import FilterExpression, Parser, Token
from django.template.context import Context
from django.template.defaulttags import CsrfTokenNode
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape

register = template.Library()

_STAND_IN = uuid.UUID("00000000-0000-4000-8000-000000000000")
_halves: dict[tuple[Any, str, str], tuple[str, str]] = {}


def row_url_halves(name: str) -> tuple[str, str]:
    """The URL of `name` before and after its one UUID argument."""
    # get_urlconf() is None unless a request set its own; then reverse() uses ROOT_URLCONF, which tests
    # may change (override_settings): both are part of the key.
    key = (get_urlconf() or settings.ROOT_URLCONF, get_script_prefix(), name)
    halves = _halves.get(key)
    if halves is None:
        before, found, after = reverse(name, args=[_STAND_IN]).partition(str(_STAND_IN))
        if not found:
            raise ValueError(f"{name}: its URL does not show its argument as a UUID")
        halves = _halves[key] = (before, after)
    return halves


def row_url(name: str, id: uuid.UUID | str) -> str:
    before, after = row_url_halves(name)
    return before + str(id if isinstance(id, uuid.UUID) else uuid.UUID(str(id))) + after


class RowUrlNode(template.Node):
    def __init__(self, name: str, id: FilterExpression) -> None:
        self.name = name
        self.id = id

    def render(self, context: Context) -> str:
        # The halves are looked up once per rendering (a list asks for the same few names per row).
        halves: tuple[str, str] | None = context.render_context.get(self)
        if halves is None:
            halves = row_url_halves(self.name)
            if context.autoescape:  # as {% url %} does (a reversed URL may hold & or ')
                halves = (conditional_escape(halves[0]), conditional_escape(halves[1]))
            context.render_context[self] = halves
        value = self.id.resolve(context)
        return halves[0] + str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))) + halves[1]


@register.tag("row_url")
def do_row_url(parser: Parser, token: Token) -> RowUrlNode:
    bits = token.split_contents()
    if len(bits) != 3 or bits[1][:1] not in "'\"" or bits[1][-1:] != bits[1][:1]:
        raise template.TemplateSyntaxError("usage: {% row_url 'url-name' uuid %}")
    return RowUrlNode(bits[1][1:-1], parser.compile_filter(bits[2]))


class RowCsrfTokenNode(CsrfTokenNode):
    """`{% row_csrf_token %}`: `{% csrf_token %}` for the forms of list rows. Django's tag formats and
    escapes the token on every use (~10 µs: the mailbox list's six forms a row cost 3 ms for 50 rows);
    the token is one value for the whole response, so this renders Django's own tag once per tag and
    rendering (kept in the render context, as {% row_url %} keeps its halves) and repeats it: the
    same HTML, the missing and NOTPROVIDED cases included."""

    def render(self, context: Context) -> str:
        html: str | None = context.render_context.get(self)
        if html is None:
            html = context.render_context[self] = super().render(context)
        return html


@register.tag("row_csrf_token")
def do_row_csrf_token(parser: Parser, token: Token) -> RowCsrfTokenNode:
    if len(token.split_contents()) != 1:
        raise template.TemplateSyntaxError("usage: {% row_csrf_token %}")
    return RowCsrfTokenNode()
