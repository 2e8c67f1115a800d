"""Weight, pieces, equipment, commodity and hazmat from the text of a load request.

Each finder takes one text and returns a value with how it was found (None when the text does
not state it); the caller tries the sender's new text first, then the quoted message that holds
the lane, then the subject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .caseless import Caseless

KG_TO_LB = 2.20462
SHORT_TON_LB = 2000
METRIC_TON_LB = 2204.62
_MAX_LBS = 200_000

EQUIPMENT = ("dry_van", "reefer", "flatbed", "step_deck", "ltl", "power_only", "box_truck", "hotshot",
             "container")


@dataclass(frozen=True, slots=True)
class Found:
    value: object
    how: str


# ----------------------------------------------------------------------------- numbers

_NUM = r"\d{1,3}(?:,\d{3})+(?![\d,])|\d{1,3}(?:[ \u202f]\d{3})+(?!\d)|\d{1,3}(?:\.\d{3})+(?![\d.])|\d+(?:[.,]\d+)?"
_LB_UNIT = r"lbs?\.?|pounds?|#|libras?|livres?"
_KG_UNIT = r"kgs?\.?|kilos?|kilograms?|kilogrammes?|kilogramos?"
_TON_UNIT = r"tons?|tonnes?|toneladas?|metric\s+tons?|mt"
_WEIGHT_RE = re.compile(
    rf"(?<![\w$#/.-])(?P<num>{_NUM})\s*(?P<k>[kK](?![a-zA-Z]))?\s*"
    rf"(?P<unit>(?:{_LB_UNIT}|{_KG_UNIT}|{_TON_UNIT})(?![a-zA-Z]))?"
    r"(?P<each>\s*(?:each|ea\b\.?|apiece|per\s+(?:pallet|plt|skid|crate|piece|pc|unit|drum|box|tote)"
    r"|/\s*(?:plt|pallet|skid|crate|pc|unit)|c/u|cada\s+una?|chacune?))?", re.IGNORECASE)
_WEIGHT_LABEL = re.compile(
    rf"\b(?:weight|wt|peso|poids|gross)\b(?P<label>[^\n\d]{{0,16}}?)(?P<num>{_NUM})\s*(?P<k>[kK](?![a-zA-Z]))?\s*"
    rf"(?P<unit>(?:{_LB_UNIT}|{_KG_UNIT}|{_TON_UNIT})(?![a-zA-Z]))?", re.IGNORECASE)
_NOT_WEIGHT_AFTER = re.compile(r"\s*(?:/\s*mi|miles?\b|mi\b|km\b|%|°)", re.IGNORECASE)


def _number(text: str, *, dotted_thousands: bool = True) -> float | None:
    text = text.replace(" ", "").replace("\u202f", "")
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", text):
        return float(text.replace(",", ""))
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+", text) and dotted_thousands:
        return float(text.replace(".", ""))
    try:
        return float(text.replace(",", "."))
    except ValueError:
        return None


def _to_lbs(value: float, unit: str | None, k: bool) -> float:
    if k:
        value *= 1000
    unit = (unit or "").lower().rstrip(".")
    if re.fullmatch(_KG_UNIT, unit):
        return value * KG_TO_LB
    if unit.startswith(("tonne", "tonelada", "metric", "mt")):
        return value * METRIC_TON_LB
    if unit.startswith("ton"):
        return value * SHORT_TON_LB
    return value


def find_weight(text: str, *, pieces: int | None = None, dotted_thousands: bool = False) -> Found | None:
    """Total weight in pounds (rounded): lbs as written, kg x 2.20462, "42k" = 42,000 lbs, a weight
    per crate times the crates."""
    for match in _WEIGHT_LABEL.finditer(text):
        value = _number(match.group("num"), dotted_thousands=dotted_thousands)
        if value is None:
            continue
        unit = match.group("unit") or ("kg" if re.search(r"kg|kilo", match.group("label"), re.IGNORECASE) else "lbs")
        labelled = _to_lbs(value, unit, bool(match.group("k")))
        if 1 <= labelled <= _MAX_LBS and (match.group("unit") or match.group("k") or labelled >= 100):
            return Found(round(labelled), "label")
    per_unit: Found | None = None
    for match in _WEIGHT_RE.finditer(text):
        lbs = _weight_of(match, text, dotted_thousands)
        if lbs is None:
            continue
        if not match.group("each"):
            return Found(round(lbs), "unit")
        count = pieces or _count_near(text, match.start())
        if per_unit is None and count:
            per_unit = Found(round(lbs * count), "per-piece x pieces")
    return per_unit


def _weight_of(match: re.Match[str], text: str, dotted_thousands: bool) -> float | None:
    unit, k = match.group("unit"), match.group("k")
    if not (unit or k):
        return None
    if k and not unit and _NOT_WEIGHT_AFTER.match(text, match.end()):
        return None  # "42k miles"
    if unit == "#" and not k and "," not in match.group("num") and len(match.group("num")) < 4:
        return None  # "Dock 4#" is a number, not a weight
    value = _number(match.group("num"), dotted_thousands=dotted_thousands)
    if value is None:
        return None
    lbs = _to_lbs(value, unit, bool(k))
    if not 1 <= lbs <= _MAX_LBS or (k and not unit and lbs < 1000):
        return None
    return lbs


def _count_near(text: str, pos: int) -> int | None:
    line_start = text.rfind("\n", max(0, pos - 300), pos) + 1
    found = find_pieces(text[line_start:pos])
    return int(str(found.value)) if found else None


# ----------------------------------------------------------------------------- pieces and commodity

_UNITS = (r"pallets?|palletes?|plts?|pltz|skids?|crates?|drums?|pieces?|pcs?|bundles?|boxes|cartons?|ctns?"
          r"|totes?|bins?|coils?|rolls?|reels?|cases?|units?|barrels?|bags?|sacks?|bales?|tarimas?|palets?"
          r"|bultos?|piezas?|tambos?|tambores?|palettes?|caisses?|colis|f[uû]ts?|barils?|rouleaux|bobines?"
          r"|cajas?|handling\s+units?")
_GOODS_UNIT = re.compile(r"coils?|rolls?|reels?|bales?|bundles?|barrels?|bobines?|rouleaux", re.IGNORECASE)
_PIECES_RE = re.compile(
    rf"(?<![\w$#/.,'-])(?P<n>\d{{1,4}})\s*(?:x\s*)?"
    r"(?P<adj>(?:(?!(?:inch|inches|in|ft|foot|feet|cm|mm|meters?|metres?|m|lbs?|kgs?|x|and|or|of|per)\b)"
    r"[A-Za-z][\w\-]*\s+){0,1}?)"
    rf"(?P<unit>{_UNITS})\b"
    r"(?P<rest>[^\n]*)", re.IGNORECASE)
_PIECES_LABEL = Caseless(
    r"\b(?:pieces|pcs|pallets|plts|skids|handling\s+units|count|qty|quantity|bultos|tarimas|palettes|pi[eè]ces"
    r"|(?:pallet|piece|skid)\s+count|(?:#|number|no\.)\s+of\s+(?:pallets|pieces|skids))"
    r"\s*(?:\([^)]*\))?\s*[:\t#]\s*(?P<n>\d{1,4})\b")
_LEADING_COUNT = re.compile(r"^[ \t\-*•]*(?P<n>\d{1,3})\s+(?P<phrase>[A-Za-z][A-Za-z\-' ]{1,40}?)\s*(?:\(|,)",
                            re.MULTILINE)
_COMMODITY_LABEL = re.compile(
    r"\b(?:commodity|commodities|product|goods|description|freight|mercanc[ií]as?|producto|marchandises?|produit)"
    r"\s*(?:\([^)]*\))?\s*(?:[:\t]|\s-\s)\s*(?P<value>[^\n]+)", re.IGNORECASE)
_AFTER_WEIGHT = re.compile(
    rf"(?<![\w$#/.-])(?:{_NUM})\s*[kK]?\s*(?:{_LB_UNIT}|{_KG_UNIT})(?![a-zA-Z])\s+(?P<phrase>[a-zA-Z][^\n,.;(]*)",
    re.IGNORECASE)
_PHRASE_STOP = frozenset([
    "from", "to", "at", "for", "going", "weighing", "in", "on", "with", "per", "each", "total", "gross",
    "approx", "approximately", "about", "around", "via", "by", "ready", "pickup", "pick", "delivery",
    "deliver", "del", "pu", "please", "need", "needs", "next", "this", "same", "and", "then", "loaded",
    "loading", "que", "para", "por", "con", "de", "del", "a", "en", "desde", "hasta", "pour", "avec", "sur",
    "vers", "le", "la", "les", "du", "des", "à"
])
_NOT_COMMODITY = re.compile(
    r"\b(?:hi|hello|hey|dear|thanks?|thank|regards|please|pls|need|needs|ready|pick|pickup|pu|deliver|delivery"
    r"|del|load|loads|loading|book|quote|rate|price|dispatch|appointment|appt|liftgate|dock|forklift|crane"
    r"|driver|truck|trailer|tarps?|tarped|straps|chains|van|reefer|flatbed|ltl|ftl|hazmat|non|equipment"
    r"|origin|destination|shipper|consignee|stackable|team|tracking|customs|broker|total|approx|about"
    r"|weight|lbs|kg|pallets?|plts?|skids?|crates?|drums?|pieces?|each|class|temp|set|run|keep|ship|ships"
    r"|monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|tomorrow|week|morning|afternoon"
    r"|am|pm|asap|urgent|recurring|weekly|daily|same|rate|sent|iphone|original|message|subject|from|to"
    r"|stacked|stackable|double|single|shrink|wrapped|floor|loaded|heavy|light|standard|std|mixed|max|net)\b",
    re.IGNORECASE)
_WORD_LIMIT = 5


def find_pieces(text: str) -> Found | None:
    match = _PIECES_LABEL.search(text)
    if match:
        return Found(int(match.group("n")), "label")
    for match in _PIECES_RE.finditer(text):
        count = int(match.group("n"))
        if count == 0 or count > 5000:
            continue
        return Found(count, "unit")
    for match in _LEADING_COUNT.finditer(text):
        line_end = text.find("\n", match.start())
        line = text[match.start():line_end if line_end >= 0 else len(text)]
        if _WEIGHT_RE.search(line) and _has_weight(line) and _clean_phrase(match.group("phrase")):
            return Found(int(match.group("n")), "count before goods")
    return None


def _has_weight(line: str) -> bool:
    return any(m.group("unit") or m.group("k") for m in _WEIGHT_RE.finditer(line))


def find_commodity(text: str) -> Found | None:
    match = _COMMODITY_LABEL.search(text)
    if match:
        value = _clean_phrase(match.group("value"), label=True)
        if value:
            return Found(value, "label")
    for match in _PIECES_RE.finditer(text):
        phrase = re.sub(r"^\s*(?:of|de|d')\s+", " ", match.group("rest"), flags=re.IGNORECASE)
        if phrase[:1] in (" ", "\t") and phrase.strip()[:1].isalpha():
            value = _clean_phrase(phrase)
            if value:
                return Found(value, "after pieces")
        # "4 steel coils": where the unit is the goods themselves, the words before it name them.
        adjective = match.group("adj").strip()
        if adjective and _GOODS_UNIT.fullmatch(match.group("unit")) and not _NOT_COMMODITY.search(adjective):
            value = _clean_phrase(f"{adjective} {match.group('unit')}")
            if value:
                return Found(value, "goods noun")
    for match in _AFTER_WEIGHT.finditer(text):
        value = _clean_phrase(match.group("phrase"))
        if value:
            return Found(value, "after weight")
    for match in _LEADING_COUNT.finditer(text):
        line_end = text.find("\n", match.start())
        line = text[match.start():line_end if line_end >= 0 else len(text)]
        if _has_weight(line):
            value = _clean_phrase(match.group("phrase"))
            if value:
                return Found(value, "count before goods")
    return _goods_line(text) or _described_goods(text)


_DESCRIBED = re.compile(r"(?:^|(?<=[.!?]\s))[ \t\-*•]*(?P<phrase>[A-Z][a-z'\-]+(?:\s+[a-z][a-z'\-]+){1,3})\s*[(,]",
                        re.MULTILINE)


def _described_goods(text: str) -> Found | None:
    """With no count or weight to stand next to, goods still open a sentence and get described:
    "Potted trees (24 and 36 inch boxes), we load with a forklift"."""
    for match in _DESCRIBED.finditer(text):
        phrase = match.group("phrase")
        if not _NOT_COMMODITY.search(phrase) and not _PHRASE_STOP.intersection(phrase.lower().split()):
            return Found(phrase.lower(), "described")
    return None


def _goods_line(text: str) -> Found | None:
    """A short noun phrase that opens a line (or a list item) next to the pieces or the weight:
    "Paper rolls, 43,000 lbs", "Paint, UN1263, Class 3", "- composite panels, not stackable"."""
    lines = text.split("\n")
    anchors = [i for i, line in enumerate(lines) if _has_weight(line) or _PIECES_RE.search(line)]
    seen: set[int] = set()
    for anchor in anchors:
        for index in (anchor, anchor + 1, anchor - 1, anchor + 2, anchor + 3):
            if index in seen or not 0 <= index < len(lines):
                continue
            seen.add(index)
            for sentence in re.split(r"(?<=[a-z0-9)])\.\s+", lines[index]):
                value = _leading_segment(sentence)
                if value:
                    return Found(value, "goods line")
    return None


def _leading_segment(sentence: str) -> str | None:
    sentence = sentence.strip().lstrip("-*•> ").strip()
    if not sentence or re.search(r"[A-Z][a-z]+,\s*[A-Z]{2}\b", sentence):
        return None  # a place, not goods
    segments = [s.strip(" .:!?") for s in re.split(r"\s*[,/;(]\s*|\s+-\s+", sentence)]
    segments = [s for s in segments if s]
    for segment in segments:
        if any(ch.isdigit() for ch in segment) or ")" in segment:
            continue  # a count, a weight, a UN number, a dimension
        words = segment.split()
        if len(words) > 4:
            return None  # a sentence, not a name for goods
        if not all(re.fullmatch(r"[A-Za-z][A-Za-z'\-]*", w) for w in words) or _NOT_COMMODITY.search(segment):
            return None
        if len(segments) == 1 and len(words) == 1 and words[0][:1].isupper():
            return None  # "Sandra," on a line of its own is a name
        return segment.lower()
    return None


def _clean_phrase(phrase: str, *, label: bool = False) -> str | None:
    phrase = re.sub(r"\([^)]*\)?", " ", phrase)
    phrase = re.split(r"[,.;:|/]|\s-\s|\bUN\s?\d{4}|\d", phrase)[0]
    words: list[str] = []
    for word in phrase.split():
        low = word.lower().strip("'\"")
        if low in _PHRASE_STOP and (words or not label):
            break
        if low in ("a", "an", "the", "of") and not words:
            continue
        words.append(low)
        if len(words) >= _WORD_LIMIT:
            break
    while words and words[-1] in _PHRASE_STOP:
        words.pop()
    if not words:
        return None
    value = " ".join(words)
    if not label and (_NOT_COMMODITY.fullmatch(value) or _EQUIPMENT_ONLY.fullmatch(value)):
        return None
    if not re.search(r"[a-z]{3}", value):
        return None
    return value


# ----------------------------------------------------------------------------- equipment

_EQUIPMENT_PATTERNS: tuple[tuple[str, str], ...] = tuple(
    (name, pattern) for name, pattern in (
        ("power_only", r"\bpower[\s-]?only\b|\bsolo\s+tracto\b|\btracteur\s+seul\b"),
        ("step_deck", r"\bstep[\s-]?decks?\b|\b(?:double\s+)?drop[\s-]?decks?\b|\bdouble\s+drop\b|\bcama\s+baja\b"
                      r"|\bsurbaiss[ée]e?\b"),
        ("hotshot", r"\bhot[\s-]?shots?\b"),
        ("box_truck", r"\bbox\s+trucks?\b|\bstraight\s+trucks?\b|\b(?:16|20|22|24|26)\s*(?:'|ft\.?|foot)\s*box\b"
                      r"|\bcube\s+(?:van|truck)\b|\bcami[oó]n\s+(?:de\s+)?caja\b|\bcamion\s+cube\b"
                      r"|\bcamion\s+porteur\b|\brabon\b"),
        ("container", r"\bcontainers?\b|\bdrayage\b|\bdray\b|\b(?:20|40|45)\s*(?:'|ft\.?)?\s*(?:hc|hq|high[\s-]?cube"
                      r"|dry|std|container|ctr)\b|\bintermodal\b|\bcontenedor(?:es)?\b|\bconteneurs?\b"),
        ("reefer", r"\breefers?\b|\brefrigerated\b|\btemp(?:erature)?[\s-]*(?:controlled|control)\b|\bRFR\b"
                   r"|\bthermo\b|\brefrigerad[oa]s?\b|\bcaja\s+refrigerada\b|\br[ée]frig[ée]r[ée]e?s?\b"
                   r"|\bfrigorifiques?\b"),
        ("flatbed", r"\bflat[\s-]?beds?\b|(?-i:\bFB\b)|\bconestoga\b|\b(?:48|53)\s*(?:'|ft\.?)?\s*flat\b"
                    r"|\bplataformas?\b|\bplateaux?\b|\bplate-forme\b"),
        ("dry_van", r"\bdry[\s-]?vans?\b|\b(?:53|48)\s*(?:'|ft\.?|foot|-foot)?\s*(?:dry|vans?)\b|\bvan\b"
                    r"|(?-i:\bDV\b)|\bcaja\s+seca\b|\bremorque\s+s[eè]che\b|\bfourgon\b|\bvan\s+sec\b"),
        ("ltl", r"\bLTL\b|\bless[\s-]than[\s-](?:a[\s-])?truck[\s-]?load\b|\bcarga\s+consolidada\b|\bgroupage\b"),
    ))
_EQUIPMENT_ONLY = re.compile(
    r"(?:53'?\s*)?(?:dry\s+)?van|reefer|flatbed|step\s+deck|ltl|power\s+only|box\s+truck|hotshot|container"
    r"|dry|truckload|ftl", re.IGNORECASE)
_NEGATED = re.compile(r"(?:\bno|\bnot|\bnon|\bwithout|\binstead\s+of|\brather\s+than|\btoo\s+\w+\s+for(?:\s+an?)?"
                      r"|\bsin|\bpas\s+de|\bsans)\s+(?:an?\s+|the\s+)?$", re.IGNORECASE)
_SET_POINT = re.compile(r"(?<![\w/])-?\d{1,2}(?:\s*-\s*-?\d{1,2})?\s*(?:°\s*|degrees?\s+)?[FC]\b(?!\w)"
                        r"|\bkeep\s+frozen\b"
                        r"|\bfrozen\s+(?:load|freight)\b")


# One pass over the text: every trailer type is a named group of one pattern.
_EQUIPMENT_RE = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _EQUIPMENT_PATTERNS),
                           re.IGNORECASE)


# The first word of every equipment phrase; the full pattern is tried only where one starts.
_EQUIPMENT_ANCHOR = Caseless(
    r"\b(?:power|solo|tracteur|step|drop|double|cama|surbaiss|hot|box|straight|\d\d|cube|cami|camion|rabon|contain"
    r"|dray|intermodal|contened|conteneur|reefer|refrig|temp|rfr|thermo|caja|r[ée]frig|frigo|flat|fb|conestoga"
    r"|plataform|plateau|plate|dry|vans?\b|dv|remorque|fourgon|ltl|less|carga|groupage)")


def find_equipment(text: str) -> Found | None:
    hits: list[tuple[int, str]] = []
    seen: set[str] = set()
    end = 0
    for anchor in _EQUIPMENT_ANCHOR.finditer(text):
        if anchor.start() < end:
            continue
        match = _EQUIPMENT_RE.match(text, anchor.start())
        if match is None:
            continue
        end = match.end()
        name = match.lastgroup or ""
        if name in seen or _NEGATED.search(text, max(0, match.start() - 30), match.start()):
            continue
        seen.add(name)
        hits.append((match.start(), name))
    if not hits:
        return None
    trailers = [hit for hit in hits if hit[1] != "ltl"]
    if trailers:
        return Found(min(trailers)[1], "named")
    return Found("ltl", "named")


def reefer_from_set_point(text: str) -> Found | None:
    """A temperature to hold ("34F", "-10F", "15-25°C") means a reefer when no trailer is named."""
    if _SET_POINT.search(text):
        return Found("reefer", "set point")
    return None


# ----------------------------------------------------------------------------- hazmat

_HAZ_NEGATIVE = re.compile(
    r"\bnon[\s-]?(?:haz(?:mat|ardous)?|dg|dangerous|regulated)\b|\bno\s+haz(?:mat|ardous)?\b"
    r"|(?-i:\bHM\b)\s*[:\t]?\s*(?:no|n|none)\b"
    r"|\bnot\s+(?:a\s+)?(?:haz(?:mat|ardous)?|dangerous)\b|\bhaz(?:mat|ardous)?\s*(?:\([^)]*\))?\s*[:\t]?\s*"
    r"(?:no|n|none|false|-)\b|\bsin\s+(?:materiales?\s+)?peligros[oa]s?\b|\bno\s+(?:es\s+)?peligros[oa]\b"
    r"|\bnon\s+dangereu(?:x|se)s?\b|\bpas\s+de\s+mati[eè]res?\s+dangereuses\b", re.IGNORECASE)
_HAZ_POSITIVE = re.compile(
    r"\bhaz[\s-]?mat\b|\bhazardous\b|\bUN\s?\d{4}\b|\bNA\s?\d{4}\b|\bclass\s+[1-9](?:\.\d)?(?![\d.])"
    r"|\bplacard(?:s|ed)?\b|\bdangerous\s+goods\b|(?-i:\bDG\b)|\bpeligros[oa]s?\b|\bmati[eè]res?\s+dangereuses\b"
    r"|(?-i:\bTDG\b)|\bflammable\b|\bcorrosive\b|\bmarchandises\s+dangereuses\b|(?-i:\bHM\b)", re.IGNORECASE)


_HAZ_HINT = Caseless(r"haz|class|placard|danger|peligro|flammable|corrosive|dangereu|\b(?:un|na)\s?\d{4}|\bt?dg\b"
                     r"|\bhm\b")


def find_hazmat(text: str) -> Found:
    if not _HAZ_HINT.search(text):
        return Found(False, "not stated")
    cleaned = _HAZ_NEGATIVE.sub(" ", text)
    match = _HAZ_POSITIVE.search(cleaned)
    if match:
        return Found(True, match.group(0))
    return Found(False, "negated" if cleaned != text else "not stated")
