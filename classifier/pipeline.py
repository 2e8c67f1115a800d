"""classify(): bytes in, a Classification out, whatever the bytes are."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from . import dates as dates_mod
from . import fields as fields_mod
from .attachments import Attachment, classify_attachment
from .body import Section, split_sections
from .locations import Lane, find_lane
from .parse import ParsedMessage, parse_message
from .refs import DEFAULT_PREFIX, refs_in
from .result import Classification, Fields, failed
from .rules import DEFAULT_RULES, Intent, Rules, decide, intent_in, is_forward, strip_reply_prefix, subject_intent
from .signals import signals_from_body, signals_from_headers

log = logging.getLogger(__name__)

_HOW_CONFIDENCE = {"label": 0.95, "column": 0.9, "cue": 0.9, "pair": 0.85, "stop": 0.8, "position": 0.75, "unit": 0.9,
                   "named": 0.9, "after pieces": 0.85, "after weight": 0.8, "goods noun": 0.8,
                   "count before goods": 0.7, "goods line": 0.65, "described": 0.5, "set point": 0.6,
                   "per-piece x pieces": 0.8}
_SOURCE_FACTOR = {"body": 1.0, "quoted": 0.9, "subject": 0.8}


def classify(raw: bytes, *, shipment_prefix: str = DEFAULT_PREFIX, rules: Rules | None = None) -> Classification:
    """Classify one RFC 5322 message. Never raises: unreadable input gives category "other" with
    an `error`."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        return failed(f"expected bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if not raw.strip():
        return failed("empty message")
    try:
        return _classify(raw, shipment_prefix, rules or DEFAULT_RULES)
    except Exception as exc:
        log.info("message could not be classified: %s", type(exc).__name__, exc_info=True)
        return failed(f"{type(exc).__name__}: {exc}"[:300])


@dataclass(slots=True)
class _Text:
    name: str            # "body", "quoted" or "subject"
    text: str
    base: dt.date | None


def _classify(raw: bytes, prefix: str, rules: Rules) -> Classification:
    parsed = parse_message(raw)
    if not parsed.has_headers:
        return failed("no RFC 5322 header found", subject=parsed.subject)
    sent = parsed.date.date() if parsed.date else None
    signals = signals_from_headers(parsed.headers, subject=parsed.subject, from_addr=parsed.from_addr)
    if not signals.noise:
        signals = signals_from_body(parsed.body)

    sections = split_sections(_bounded(parsed.body), sender=parsed.from_name, sent=sent)
    for nested in parsed.nested[:_MAX_NESTED]:
        sections.extend(_as_quoted(s) for s in split_sections(_bounded(nested)))
    new_text = "\n\n".join(s.text for s in sections if not s.quoted)
    quoted = [s for s in sections if s.quoted]

    attachments = tuple(classify_attachment(a.filename, a.content_type, a.payload) for a in parsed.attachments)
    refs = refs_in([parsed.subject, parsed.body, *parsed.nested, *(a.filename for a in attachments)], prefix)

    intent = _intent(parsed, new_text, quoted)
    bulk_only = signals.bulk and not (signals.auto_reply or signals.bounce)
    may_ask = not signals.noise or (bulk_only and rules.requests_from_bulk)
    lane, lane_section = Lane(), None
    if (intent.quote or intent.pickup) and may_ask:  # the lane only matters to a request
        lane, lane_section = _lane(new_text, quoted, parsed.subject)

    texts = [_Text("body", new_text, sent)]
    if lane_section is not None:
        texts.append(_Text("quoted", lane_section.text, lane_section.sent or sent))
    texts.append(_Text("subject", strip_reply_prefix(parsed.subject), sent))

    extracted: Fields | None = None
    confidence: dict[str, float] = {}
    missing: list[str] = []
    if lane.complete and (intent.quote or intent.pickup):
        extracted, confidence = _fields(lane, texts)
        missing = [name for name in rules.require if getattr(extracted, name) in (None, "")]

    decision = decide(intent=intent, lane=lane, refs=refs, noise=signals.reason if signals.noise else None,
                      bulk_only=bulk_only, missing_required=missing, rules=rules)
    confidence["category"] = decision.confidence
    confidence["shipment_refs"] = 0.95
    fields = extracted if decision.category in ("quote", "pickup") and extracted is not None else Fields()
    if decision.category not in ("quote", "pickup"):
        confidence = {"category": decision.confidence, "shipment_refs": 0.95}
    return Classification(
        category=decision.category, reason=decision.reason, shipment_refs=tuple(refs), fields=fields,
        confidence=MappingProxyType(confidence), attachments=attachments, signals=signals,
        message_id=parsed.message_id, in_reply_to=parsed.in_reply_to, references=parsed.references,
        subject=parsed.subject, from_addr=parsed.from_addr, date=parsed.date)


_TEXT_LIMIT = 100_000      # characters of a body the rules read; refs are looked for in all of it
_LINE_LIMIT = 2_000        # longer lines are broken at a space, so per-line work stays small
_MAX_NESTED = 20
_LONG_LINE = re.compile(rf"[^\n]{{{_LINE_LIMIT},}}")


def _bounded(text: str) -> str:
    """The part of a body the rules read: a person's request is at its top, never megabytes down."""
    text = text[:_TEXT_LIMIT]
    if len(text) <= _LINE_LIMIT:
        return text
    return _LONG_LINE.sub(_break_line, text)


def _break_line(match: re.Match[str]) -> str:
    line, out = match.group(0), []
    while len(line) > _LINE_LIMIT:
        cut = line.rfind(" ", _LINE_LIMIT // 2, _LINE_LIMIT)
        cut = cut if cut > 0 else _LINE_LIMIT
        out.append(line[:cut])
        line = line[cut:].lstrip(" ")
    out.append(line)
    return "\n".join(out)


def _as_quoted(section: Section) -> Section:
    return Section(section.text, section.signature, section.sender, section.sent, quoted=True)


def _intent(parsed: ParsedMessage, new_text: str, quoted: list[Section]) -> Intent:
    found = intent_in(new_text, "body")
    if found.quote or found.pickup:
        return found
    found = subject_intent(parsed.subject)
    if found.quote or found.pickup:
        return found
    if is_forward(parsed.subject) or not new_text.strip():
        for section in quoted:
            found = intent_in(section.text, "forwarded message")
            if found.quote or found.pickup:
                return found
    return Intent()


def _lane(new_text: str, quoted: list[Section], subject: str) -> tuple[Lane, Section | None]:
    """The lane the request is about: the new text's; else the quoted or forwarded message it
    refers to (the first that completes it); else the subject's."""
    lane = find_lane(new_text)
    if lane.complete:
        return lane, None
    for section in quoted:
        candidate = find_lane(section.text)
        merged = _merge(lane, candidate, "quoted ")
        if merged.complete:
            return merged, section
    return _merge(lane, find_lane(strip_reply_prefix(subject)), "subject "), None


def _merge(lane: Lane, other: Lane, how: str) -> Lane:
    """`lane` with the ends it lacks taken from `other`."""
    return Lane(lane.origin or other.origin, lane.destination or other.destination,
                lane.origin_how or (how + other.origin_how if other.origin else ""),
                lane.destination_how or (how + other.destination_how if other.destination else ""))


def _fields(lane: Lane, texts: list[_Text]) -> tuple[Fields, dict[str, float]]:
    confidence: dict[str, float] = {"origin": _lane_confidence(lane.origin_how),
                                    "destination": _lane_confidence(lane.destination_how)}

    def first(finder: Callable[..., fields_mod.Found | None], name: str, **kwargs: object) -> object | None:
        for source in texts:
            found = finder(source.text, **kwargs)
            if found is not None:
                confidence[name] = round(_HOW_CONFIDENCE.get(found.how, 0.7) * _SOURCE_FACTOR[source.name], 2)
                return found.value
        return None

    dmy = dates_mod.day_first(texts[0].text)
    pieces = first(fields_mod.find_pieces, "pieces")
    weight = first(fields_mod.find_weight, "weight_lbs", pieces=pieces, dotted_thousands=dmy)
    equipment = first(fields_mod.find_equipment, "equipment") or first(fields_mod.reefer_from_set_point, "equipment")
    commodity = first(fields_mod.find_commodity, "commodity")
    hazmat_text = "\n".join(source.text for source in texts)
    hazmat = fields_mod.find_hazmat(hazmat_text)
    confidence["hazmat"] = 0.9 if hazmat.value else 0.8

    roled = []
    for source in texts:
        mentions = dates_mod.find_dates(source.text, source.base, dmy=dmy)
        roled.append((source.name, dates_mod.date_roles(source.text, mentions)))
    picked = dates_mod.pick_dates(roled)
    if picked.pickup:
        confidence["pickup_date"] = 0.9 if picked.pickup_how.startswith("cue") else 0.6
    if picked.delivery:
        confidence["delivery_date"] = 0.9
    return Fields(
        origin=lane.origin, destination=lane.destination, pickup_date=picked.pickup,
        delivery_date=picked.delivery, weight_lbs=_int(weight), pieces=_int(pieces),
        equipment=str(equipment) if equipment else None, commodity=str(commodity) if commodity else None,
        hazmat=bool(hazmat.value)), confidence


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _lane_confidence(how: str) -> float:
    base = _HOW_CONFIDENCE.get(how.rsplit(maxsplit=1)[-1] if how else "", 0.7)
    if how.startswith("quoted"):
        base *= 0.9
    elif how.startswith("subject"):
        base *= 0.8
    return round(base, 2)


def attachments_of(raw: bytes) -> tuple[Attachment, ...]:
    """The attachments alone, for a document processor that needs no category."""
    parsed = parse_message(raw)
    return tuple(classify_attachment(a.filename, a.content_type, a.payload) for a in parsed.attachments)
