"""The category, by SCHEMA.md's first-rule-wins order, and the tenant-tunable "enough detail" rule.

1. quote     - the sender asks for a rate AND names both ends precisely enough to price;
2. pickup    - the sender asks to book / schedule / dispatch / tender AND names both ends;
3. operations - otherwise, when the message carries one of our shipment numbers;
4. other     - everything else.
Auto-replies, bounces and bulk mail ask for nothing: never a quote or a pickup, but operations
when they carry a shipment number (rule 3 comes before "everything else").

A request is read from what the sender wrote now; the subject speaks when the body does not,
and a forwarded message's request counts when the forwarder adds none of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .caseless import Caseless
from .locations import Lane, Location, precise

PRECISIONS = ("city_state_or_postal", "city_state", "postal")
_FIELDS_REQUIRABLE = ("pickup_date", "delivery_date", "weight_lbs", "pieces", "equipment", "commodity")


@dataclass(frozen=True, slots=True)
class Rules:
    """What a tenant counts as "enough detail" for a quote or a pickup.

    lane_precision: how precisely each end must be named - "city_state_or_postal" (the schema's
        rule: city + state/province, or a postal code), "city_state", or "postal".
    require: further fields that must be stated, e.g. ("pickup_date", "equipment").
    requests_from_bulk: whether bulk mail (newsletters, list mail) may be a quote or pickup.
    """

    lane_precision: str = "city_state_or_postal"
    require: tuple[str, ...] = ()
    requests_from_bulk: bool = False

    def __post_init__(self) -> None:
        if self.lane_precision not in PRECISIONS:
            raise ValueError(f"lane_precision must be one of {PRECISIONS}")
        unknown = set(self.require) - set(_FIELDS_REQUIRABLE)
        if unknown:
            raise ValueError(f"cannot require {sorted(unknown)}; choose from {_FIELDS_REQUIRABLE}")

    def lane_ok(self, origin: Location | None, destination: Location | None) -> bool:
        return precise(origin, self.lane_precision) and precise(destination, self.lane_precision)


DEFAULT_RULES = Rules()


# ----------------------------------------------------------------------------- intents

_NOT_A_REQUEST = r"(?!\s*(?:con\b|conf\b|confirmation|confirmations|sheet|card|increase|update|per\b|number|#|no\.))"
_QUOTE_PATTERNS = [
    r"\b(?:please|pls|plz|kindly)\s+(?:send\s+(?:me\s+|us\s+)?(?:a\s+|the\s+|your\s+)?(?:best\s+)?"
    rf"|provide\s+(?:a\s+|your\s+)?|give\s+(?:me\s+|us\s+)?(?:a\s+|your\s+)?)?(?:quote|price|rate|re-?quote){_NOT_A_REQUEST}",
    r"\b(?:can|could|would|will)\s+(?:you|u)\s+(?:please\s+|pls\s+)?(?:re-?quote|quote|price|bid\s+on|give\s+(?:me|us)"
    r"\s+(?:a|an|your)\s+(?:[\w'-]+\s+){0,2}?(?:rate|price|quote|number)|send\s+(?:me|us)\s+(?:a\s+|your\s+|the\s+)?"
    r"(?:best\s+)?(?:rate|price|quote|number)|get\s+(?:me|us)\s+(?:a\s+)?(?:rate|price|quote|numbers?)"
    rf"|provide\s+(?:a\s+)?(?:rate|price|quote)){_NOT_A_REQUEST}",
    r"\b(?:need|needs|needed|looking\s+for|requesting|request|want|would\s+like|like\s+to\s+get|send\s+me)\s+"
    r"(?:a\s+|an\s+|the\s+|your\s+|some\s+)?(?:(?:[\w'-]+|\([^)\n]{0,40}\))\s+){0,4}?"
    rf"(?:quotes?|rates?|prices?|pricing|numbers|bids?){_NOT_A_REQUEST}\b",
    r"\b(?:can|could|may)\s+(?:i|we)\s+(?:please\s+)?(?:get|have|request|see)\s+(?:a\s+|an\s+|the\s+|your\s+|some\s+)?"
    rf"(?:[\w'-]+\s+){{0,3}}?(?:quotes?|rates?|prices?|pricing|numbers?|bids?){_NOT_A_REQUEST}\b",
    r"\b(?:please|pls|kindly)\s+bid\b|\bbid\s+request\b|\bat\s+what\s+(?:rate|price)\b"
    r"|\bgive\s+(?:me|us)\s+(?:a\s+|your\s+)?(?:best\s+)?(?:rate|price|quote|number)\b"
    r"|\b(?:rate|price|quote|pricing)\s*\?",
    r"\b(?:quote|rate|price|pricing)\s+(?:request|requested|needed|please|pls|required|wanted|me)\b",
    r"\b(?:rfq|request\s+for\s+(?:a\s+)?(?:quote|quotation|pricing)|request\s+a\s+quote)\b",
    r"\bwhat\s+(?:would|will|do|does|did)\s+(?:you|it)\s+(?:\w+\s+){0,3}?(?:charge|cost|run)\b",
    r"\bhow\s+much\s+(?:for|to|would|will|is|do|does|to\s+(?:move|ship|haul))\b",
    r"\bwhat(?:'s|\s+is|\s+are)\s+(?:your|the)\s+(?:best\s+|going\s+|current\s+|all[\s-]in\s+)*"
    r"(?:rate|price|number|quote)\b",
    r"\bwhat\s+can\s+you\s+do\s+(?:it|this|that)\s+for\b",
    r"\b(?:like|want|need)\s+(?:it\s+|this\s+|them\s+)?priced\b|\b(?:price|quote|rate)\s+(?:this|it)\b"
    r"|\b(?:price|quote)\s+(?:the\s+following|below)\b",
    r"\b(?:update|news)\s+on\s+(?:the\s+|this\s+|my\s+|our\s+|your\s+)?(?:pricing|quote|rate|price)\b"
    r"|\bstill\s+(?:need|waiting\s+(?:on|for))\s+(?:a\s+|the\s+|your\s+)?(?:quote|rate|price|pricing|numbers?)\b",
    r"\b(?:cotizaci[oó]n|cotizar|cot[ií]ce(?:n|me)?|cotiza(?:r|me)|cu[aá]nto\s+(?:cobra|cuesta|ser[ií]a)"
    r"|precio\s+(?:para|de)|tarifa\s+(?:para|de))\b",
    r"\b(?:dar|pasar|enviar|mandar)(?:me|nos)?\s+(?:una\s+|la\s+|su\s+)?(?:tarifa|cotizaci[oó]n|precio)\b",
    r"\b(?:soumission|devis|cotation|quel(?:le)?\s+(?:serait\s+|est\s+)?(?:votre\s+)?(?:prix|tarif)|combien"
    r"|(?:votre|un|meilleur)\s+(?:prix|tarif))\b",
]
_PICKUP_PATTERNS = [
    r"\bbook(?:ing)?\s+(?:me|us|it|this|that|these|them|a|an|the|one|in)\b",
    r"\b(?:please|pls|plz|kindly|go\s+ahead\s+and|ok\s+to)\s+book\b",
    r"\b(?:schedule|arrange|set\s+up|setup|book|request(?:ing)?|need)\s+(?:a\s+|an\s+|the\s+|our\s+|this\s+)?"
    r"(?:[\w'-]+\s+){0,2}?(?:pick[\s\-]?up|p/?u)\b"
    r"(?!\s*(?:number|no\.|#|confirmation|confirmed|time|window|appt|appointment|ref|reference|info))",
    r"\b(?:pick[\s\-]?up|p/?u)\s+(?:request|needed|required)\b",
    r"\bdispatch(?:ed)?\s+(?:a|an|the|me|us|this|it|today|asap|and|tomorrow|now)\b|\bplease\s+dispatch\b",
    r"\b(?:send|need|get)\s+(?:me\s+|us\s+)?(?:a|an)\s+(?:[\w'-]+\s+){0,2}?(?:truck|driver|van|reefer|flatbed"
    r"|trailer|power\s+unit|box\s+truck|hotshot)\b(?!\s*(?:rate|quote|price|\?))",
    r"\b(?:need|needs)\s+(?:it|this|them|these|the\s+load)\s+picked\s+up\b|\bplease\s+cover\b"
    r"|\b(?:can|could)\s+you\s+(?:handle|cover|take|move|haul|do)\s+(?:it|this|that|these|the\s+load|this\s+load)\b"
    r"|\barrange\s+(?:transport|transportation|a\s+truck|the\s+move|shipping)\b",
    r"\bneed\s+power\s+only\b|\bpower\s+only\s+needed\b",
    r"\btender(?:ing|ed)?\b",
    r"\b(?:looking\s+for|need)\s+(?:a\s+)?(?:truck|carrier|driver|power\s+unit)\b(?!\s*(?:rate|quote|price|\?))"
    r"|\bdo\s+you\s+have\s+(?:a\s+)?(?:truck|capacity|driver|van|reefer|flatbed|equipment)\b",
    # accepting a quoted rate books the load
    r"^[ \t]*(?:yes|ok|okay)?[ ,]*(?:approved|accepted|rate\s+approved|confirmed)\b[ \t]*[-,.!:]"
    r"|\bgo\s+ahead\b(?!\s+and\s+(?:send|call|email|invoice|bill|update))|\bplease\s+proceed\b",
    r"\bplease\s+(?:pick\s+up|pickup|collect|haul|move)\b|\b(?:can|could)\s+you\s+(?:please\s+)?"
    r"(?:pick\s+up|collect|haul|cover)\b",
    r"\b(?:programar|agendar|reservar|solicit(?:o|amos|ar)\s+(?:una\s+)?recolecci[oó]n|enviar\s+(?:un\s+)?"
    r"(?:cami[oó]n|unidad)|necesito\s+(?:un\s+)?(?:cami[oó]n|unidad|transporte))\b",
    r"\b(?:r[ée]server|planifier\s+(?:une|la)\s+(?:cueillette|collecte)|organiser\s+(?:une|la)\s+(?:cueillette"
    r"|collecte)|envoyer\s+un\s+camion|besoin\s+d'un\s+camion)\b",
]
_SUBJECT_QUOTE = re.compile(
    r"\b(?:quote|quotes|quoting|rate|rates|price|pricing|rfq|cotizaci[oó]n|soumission|devis)\b"
    r"(?!\s*(?:con\b|conf\b|confirmation|sheet|increase|update))", re.IGNORECASE)
_SUBJECT_PICKUP = re.compile(
    r"\b(?:(?:pickup|pick-up|p/?u)(?!\s*(?:#|no\.|number|confirm|confirmation|update|status|delay|delayed"
    r"|time|appt|appointment|missed|late|\?))|book|booking|dispatch|tender|truck\s+needed|need\s+(?:a\s+)?truck"
    r"|power\s+only\s+needed|recolecci[oó]n|cueillette)\b", re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|vs|ref|rif|fw|fwd|tr|rv|enc)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)

# A carrier offering trucks mentions lanes and rates but asks for nothing.
_OFFER = Caseless(
    r"\b(?:trucks?|capacity|vans|reefers|flatbeds|drivers)\s+(?:available|open)\b|\bavailable\s+(?:capacity|trucks?)\b"
    r"|\bwe\s+have\s+(?:\d+\s+)?(?:trucks?|vans|reefers|flatbeds|capacity|drivers|equipment)\b"
    r"|\b(?:empty|emptying)\s+(?:in|near|out\s+of)\b|\blooking\s+for\s+(?:loads|freight|backhauls?)\b"
    r"|\breply\s+with\s+your\s+lanes\b|\bsend\s+(?:us\s+)?your\s+(?:lanes|freight|loads)\b")
QUOTE_RE = Caseless("|".join(f"(?:{p})" for p in _QUOTE_PATTERNS), re.MULTILINE)
PICKUP_RE = Caseless("|".join(f"(?:{p})" for p in _PICKUP_PATTERNS), re.MULTILINE)

# Every request pattern contains one of these words. The long patterns run only in a window
# around them, which is several times cheaper than letting them scan every position. A word
# boundary opens no branch ("run\b(?<!\wrun)" is "\brun\b"): with every branch opening on a
# letter, the engine skips straight to the letters a branch can start with.
_QUOTE_ANCHOR = Caseless(
    r"quot|rate|pric|bid|rfq|charg|cost|run\b(?<!\wrun)|much|number|tarif|precio|cotiz|cotic|cobra|cuesta|ser[ií]a"
    r"|soumission|devis|cotation|prix|combien|do\s+(?:it|this|that)\s+for")
_PICKUP_ANCHOR = Caseless(
    r"book|pick|p/u|pu\b(?<!\wpu)|dispatch|truck|driver|van\b(?<!\wvan)|reefer|flatbed|trailer|power|tender"
    r"|collect|haul|cover|move|arrange|transport|shipping|program|agend|reserv|recolec|cami[oó]n|unidad|cueillette"
    r"|collecte|camion|hotshot|approved|accepted|confirmed|ahead|proceed|carrier|capacity|equipment")
_OFFER_ANCHOR = Caseless(r"available|open|we\s+have|empty|emptying|looking\s+for|reply\s+with|send\s")
_BEFORE, _AFTER = 100, 40   # the longest request reaches ~60 characters before its key word


def _search_near(pattern: Caseless, anchors: Caseless, text: str, lowered: str | None) -> tuple[int, int] | None:
    """Where `pattern` first matches in a window around one of `anchors`; `lowered`: text.lower()."""
    searched_to = -1
    for anchor in anchors.finditer(text, lowered):
        start, end = max(0, anchor.start() - _BEFORE), min(len(text), anchor.end() + _AFTER)
        if end <= searched_to:
            continue
        found = pattern.search(text, start, end, lowered)
        if found:
            return found.span()
        searched_to = end
    return None


@dataclass(frozen=True, slots=True)
class Intent:
    quote: str | None = None      # the words that ask for a rate
    pickup: str | None = None     # the words that ask to book
    source: str = ""


_ASKING = ("do you have", "any ", "is there", "are there", "if you have", "you got")


def _offers_capacity(text: str, lowered: str | None) -> bool:
    offer = _search_near(_OFFER, _OFFER_ANCHOR, text, lowered)
    if offer is None:
        return False
    before = text[max(0, offer[0] - 25):offer[0]].lower()
    return not any(words in before for words in _ASKING)  # "do you have trucks available?" asks


def intent_in(text: str, source: str) -> Intent:
    lowered = text.lower() if text.isascii() else None
    quote = _search_near(QUOTE_RE, _QUOTE_ANCHOR, text, lowered)
    # Rule 1 comes before rule 2: with a request for a rate, a request to book changes nothing.
    pickup = None if quote else _search_near(PICKUP_RE, _PICKUP_ANCHOR, text, lowered)
    if (quote or pickup) and _offers_capacity(text, lowered):
        return Intent(source=source)  # a carrier offering trucks asks for nothing
    return Intent(text[quote[0]:quote[1]] if quote else None, text[pickup[0]:pickup[1]] if pickup else None, source)


def subject_intent(subject: str) -> Intent:
    bare = strip_reply_prefix(subject)
    if bare != subject.strip() and re.match(r"^\s*re\b", subject, re.IGNORECASE):
        # A reply's subject repeats the request it answers; the reply itself must ask.
        return Intent(source="subject")
    quote = _SUBJECT_QUOTE.search(bare)
    pickup = _SUBJECT_PICKUP.search(bare) if not bare.rstrip().endswith("?") else None
    return Intent(quote.group(0) if quote else None, pickup.group(0) if pickup else None, "subject")


def strip_reply_prefix(subject: str) -> str:
    return _REPLY_PREFIX.sub("", subject).strip()


def is_forward(subject: str) -> bool:
    return bool(re.match(r"^\s*(?:(?:re|aw)\s*:\s*)*(?:fw|fwd|tr|rv|enc)\s*:", subject, re.IGNORECASE))


# ----------------------------------------------------------------------------- decision

@dataclass(frozen=True, slots=True)
class Decision:
    category: str
    reason: str
    confidence: float


def decide(*, intent: Intent, lane: Lane, refs: list[str], noise: str | None, bulk_only: bool,
           missing_required: list[str], rules: Rules) -> Decision:
    lane_ok = rules.lane_ok(lane.origin, lane.destination)
    blocked = noise is not None and not (bulk_only and rules.requests_from_bulk)
    asked = intent.quote or intent.pickup
    if asked and not blocked and lane_ok and not missing_required:
        category, verb = ("quote", "asks for a rate") if intent.quote else ("pickup", "asks to book")
        return Decision(category, f"{verb} ({asked!r} in the {intent.source}) and names both ends",
                        0.9 if intent.source == "body" else 0.8)
    shortfall = ""
    if asked and not lane_ok:
        ends = [name for name, loc in (("origin", lane.origin), ("destination", lane.destination))
                if not precise(loc, rules.lane_precision)]
        shortfall = f"a request without a precise {' and '.join(ends)}"
    elif asked and missing_required:
        shortfall = f"a request without {', '.join(missing_required)}"
    if refs:
        why = f"carries shipment number{'s' if len(refs) > 1 else ''} {', '.join(refs)}"
        detail = noise or shortfall
        return Decision("operations", f"{why} ({detail})" if detail else why, 0.9)
    if noise:
        return Decision("other", noise, 0.95)
    if shortfall:
        return Decision("other", f"{shortfall} and no shipment number", 0.75)
    return Decision("other", "asks for no rate or pickup and carries no shipment number", 0.7)
