"""Which shipment a document belongs to, from the evidence in order of strength.

1. shipment numbers in the file name ("POD_SHP105677.pdf"),
2. shipment numbers in the document's text,
3. BOL / PO / PRO numbers known on the tenant's shipments, in the file name or the text,
4. the message: its shipment refs and the shipments the shipments handler filed it on.

The first level that names exactly one of the tenant's shipments decides. A level that names
several is narrowed to those the message also names; if that leaves one, it decides, otherwise the
document stays unmatched with them as suggestions (weaker evidence never overrules an ambiguous
stronger one). Refs that name no shipment of the tenant are no evidence at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from django.db.models import Q
from django.db.models.functions import Upper

import classifier
from classifier.attachments import name_words
from shipments.models import Shipment
from shipments.services import shipment_numbers_for_refs
from tms.accounts.models import Tenant
from tms.db import AnyOf

# Identifier-like words: letters/digits with inner hyphens ("RT-33817", "88123-01", "7734120").
_TOKEN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
# A label glued to its number in file names: "PO77102", "BOL-5521907", "PRO#RT33817".
_GLUED_LABEL = re.compile(r"^(?:PO|BOL|BL|PRO)[#-]?(?=\d)", re.IGNORECASE)
# A digit in such a word (the words are ASCII: _TOKEN matches nothing else).
_DIGIT = re.compile(r"[0-9]")
_MIN_NUMBER_LENGTH = 4
_MAX_TOKENS = 5000


@dataclass(frozen=True)
class Match:
    shipment: Shipment | None
    via: str = ""
    candidates: list[str] = field(default_factory=list)  # shipment numbers to suggest when unmatched


def number_tokens(*texts: str) -> set[str]:
    """Upper-case words that could be a BOL, PO or PRO number (at least 4 characters, one a digit)."""
    found: set[str] = set()
    has_digit = _DIGIT.search
    for text in texts:
        for raw in _TOKEN.findall(text or ""):
            if len(raw) < _MIN_NUMBER_LENGTH or not has_digit(raw):
                continue
            word = raw.upper()
            found.add(word)
            bare = _GLUED_LABEL.sub("", word)
            if bare != word and len(bare) >= _MIN_NUMBER_LENGTH:
                found.add(bare)
            if len(found) >= _MAX_TOKENS:
                return found
    return found


def shipments_for_refs(*, tenant: Tenant, refs: Iterable[str]) -> list[Shipment]:
    """The tenant's shipments named by refs as the classifier writes them ("SHP-104233")."""
    numbers = list(dict.fromkeys(shipment_numbers_for_refs(tenant=tenant, refs=refs).values()))
    if not numbers:
        return []
    found = {s.number: s for s in Shipment.objects.for_tenant(tenant).filter(number__in=numbers)}
    return [found[n] for n in numbers if n in found]


_NUMBERED_LIMIT = 50


def _numbered_query(tenant: Tenant, tokens: set[str], numbers: set[str] | None = None) -> Any:
    """The shipments with a BOL, PO or PRO number among `tokens` (or a shipment number among
    `numbers`), newest first."""
    # Each list as one array parameter (tms.db.AnyOf): a batch's tokens number in the hundreds.
    ordered = sorted(tokens)
    named = Q(AnyOf(Upper("bol_number"), ordered)) | Q(AnyOf(Upper("po_number"), ordered)) | Q(
        AnyOf(Upper("pro_number"), ordered))
    if numbers:
        named |= Q(AnyOf("number", sorted(numbers)))
    return (
        Shipment.objects.for_tenant(tenant)
        .annotate(bol=Upper("bol_number"), po=Upper("po_number"), pro=Upper("pro_number"))
        .filter(named)
        .order_by("-created_at", "-id")
    )


def shipments_for_numbers(*, tenant: Tenant, tokens: set[str], prefetched: Prefetched | None = None
                          ) -> list[tuple[Shipment, str]]:
    """The tenant's shipments whose BOL, PO or PRO number is one of `tokens`, each with what matched."""
    if not tokens:
        return []
    if prefetched is not None and prefetched.numbered is not None:
        # The same rows in the same order as the query, from the batch's one query (prefetch()).
        rows = [s for s in prefetched.numbered
                if {s.bol, s.po, s.pro} & tokens][:_NUMBERED_LIMIT]  # type: ignore[attr-defined]
    else:
        rows = cast(list[Shipment], list(_numbered_query(tenant, tokens)[:_NUMBERED_LIMIT]))
    out: list[tuple[Shipment, str]] = []
    for shipment in rows:
        for label, value in (("BOL", shipment.bol), ("PO", shipment.po), ("PRO", shipment.pro)):  # type: ignore[attr-defined]
            if value and value in tokens:
                out.append((shipment, f"{label} {value}"))
                break
    return out


def hinted_shipments(*, tenant: Tenant, hints: dict[str, object]) -> list[Shipment]:
    """The shipments the message named (its refs) or was filed on (by the shipments handler)."""
    refs = [str(r) for r in _as_list(hints.get("refs"))]
    numbers = [str(n) for n in _as_list(hints.get("shipments"))]
    shipments = shipments_for_refs(tenant=tenant, refs=refs)
    if numbers:
        known = {s.pk for s in shipments}
        shipments += [s for s in Shipment.objects.for_tenant(tenant).filter(number__in=numbers) if s.pk not in known]
    return shipments


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _by_number(*, tenant: Tenant, groups: list[list[str]], prefetched: Prefetched | None = None
               ) -> list[list[Shipment]]:
    """Each group of shipment numbers as the tenant's shipments (unknown numbers dropped, first
    mention first), all groups in one query (or none: prefetched for the batch)."""
    wanted = {number for group in groups for number in group}
    if prefetched is not None:
        found = prefetched.by_number
    else:
        found = {s.number: s for s in Shipment.objects.for_tenant(tenant).filter(number__in=wanted)} if wanted else {}
    return [[found[n] for n in dict.fromkeys(group) if n in found] for group in groups]


@dataclass
class Prefetched:
    """What find_match asks the database for, asked once for many documents of one tenant."""

    by_number: dict[str, Shipment]
    numbered: list[Shipment] | None  # None: too many rows to hold, find_match queries per document


# What find_match looks up for a document: the shipment-number groups (the message's refs, the refs
# in the file name, those in the text, the shipments it was filed on) and the BOL/PO/PRO tokens.
Evidence = tuple[list[list[str]], set[str]]


def evidence(*, tenant: Tenant, filename: str, text: str, hints: dict[str, object]) -> Evidence:
    """The evidence find_match looks up for a document; a batch computes it once for prefetch()
    and find_match (evidence=) both: reading a long text for refs and numbers is not free."""
    prefix = tenant.ref_prefix
    groups = [
        _numbers(tenant, [str(r) for r in _as_list(hints.get("refs"))]),
        _numbers(tenant, classifier.find_refs(filename, prefix)),
        _numbers(tenant, classifier.find_refs(text, prefix)),
        [str(n) for n in _as_list(hints.get("shipments"))],
    ]
    return groups, number_tokens(name_words(filename), filename, text)


_PREFETCH_MAX_ROWS = 2000


def prefetch(*, tenant: Tenant, documents: Iterable[tuple[str, str, dict[str, object]]]) -> Prefetched:
    """find_match's lookups for many (filename, text, hints) of one tenant, in one query."""
    return prefetch_evidence(tenant=tenant, evidences=[
        evidence(tenant=tenant, filename=filename, text=text, hints=hints) for filename, text, hints in documents])


def prefetch_evidence(*, tenant: Tenant, evidences: Iterable[Evidence]) -> Prefetched:
    """prefetch() of documents whose evidence() is known."""
    numbers: set[str] = set()
    tokens: set[str] = set()
    for groups, found in evidences:
        numbers.update(n for group in groups for n in group)
        tokens |= found
    if not tokens:
        return Prefetched(by_number=_shipments_numbered(tenant, numbers), numbered=[])
    # Both lookups in one query: the shipments named by a token or by number, newest first. Up to
    # _PREFETCH_MAX_ROWS + 1 rows named by a token are wanted (more: find_match queries per
    # document), so the query stops len(numbers) rows later: when it stops there, more than that
    # many rows were named by a token, and the rows named by number are asked for on their own.
    limit = _PREFETCH_MAX_ROWS + 1 + len(numbers)
    rows = cast(list[Shipment], list(_numbered_query(tenant, tokens, numbers)[:limit]))
    numbered = [s for s in rows if {s.bol, s.po, s.pro} & tokens]  # type: ignore[attr-defined]
    if len(rows) < limit:
        by_number = {s.number: s for s in rows if s.number in numbers}
    else:
        by_number = _shipments_numbered(tenant, numbers)
    return Prefetched(by_number=by_number, numbered=numbered if len(numbered) <= _PREFETCH_MAX_ROWS else None)


def _shipments_numbered(tenant: Tenant, numbers: set[str]) -> dict[str, Shipment]:
    return {s.number: s for s in Shipment.objects.for_tenant(tenant).filter(number__in=numbers)} if numbers else {}


def _numbers(tenant: Tenant, refs: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(shipment_numbers_for_refs(tenant=tenant, refs=refs).values()))


def find_match(*, tenant: Tenant, filename: str, text: str, hints: dict[str, object],
               prefetched: Prefetched | None = None, known: Evidence | None = None) -> Match:
    """`prefetched`: prefetch() of a batch of documents that includes this one (no queries here);
    `known`: evidence() of these filename, text and hints, when the caller has it already."""
    # The shipments named by number - the message's refs, those it was filed on, refs in the file
    # name and in the text - in one query (they were four: this runs for every document read).
    groups, tokens = known or evidence(tenant=tenant, filename=filename, text=text, hints=hints)
    hint_refs, in_name, in_text, filed = _by_number(tenant=tenant, groups=groups, prefetched=prefetched)
    filed.sort(key=lambda s: (s.created_at, s.pk), reverse=True)  # hinted_shipments' order
    hinted = hint_refs + [s for s in filed if s.pk not in {h.pk for h in hint_refs}]
    hinted_ids = {s.pk for s in hinted}
    numbered = shipments_for_numbers(tenant=tenant, tokens=tokens, prefetched=prefetched)
    levels: list[tuple[str, list[tuple[Shipment, str]]]] = [
        ("file name", [(s, s.number) for s in in_name]),
        ("document text", [(s, s.number) for s in in_text]),
        ("number in the document", numbered),
        ("the message", [(s, s.number) for s in hinted]),
    ]
    for label, found in levels:
        if not found:
            continue
        unique = _unique(found)
        if len(unique) == 1:
            shipment, what = unique[0]
            return Match(shipment=shipment, via=f"{label}: {what}"[:200])
        narrowed = [(s, what) for s, what in unique if s.pk in hinted_ids]
        if len(narrowed) == 1:
            shipment, what = narrowed[0]
            return Match(shipment=shipment, via=f"{label} and the message: {what}"[:200])
        return Match(shipment=None, candidates=[s.number for s, _ in unique])
    return Match(shipment=None)


def _unique(found: list[tuple[Shipment, str]]) -> list[tuple[Shipment, str]]:
    seen: set[int] = set()
    out = []
    for shipment, what in found:
        if shipment.pk not in seen:
            seen.add(shipment.pk)
            out.append((shipment, what))
    return out
