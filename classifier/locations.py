"""Places in freight mail, and which of them are the origin and the destination of a load.

A place is "City, ST [postal code]" (US states, Canadian provinces, Mexican states, as codes or
names), a Canadian postal code, or a bare US ZIP where the text shows it is one ("from 60607",
"Origin ZIP 38118", "93030 -> 98108"). A ZIP alone resolves to its city and state from USPS data.

Roles come from the words before a place (PU, pickup, from, shipper, origin ... / DEL, deliver,
to, ->, consignee, destination ...), from a label a few lines above it (table rows, address
blocks), or from its position next to a place that has one. With several stops, the first pickup
is the origin and the last drop the destination.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from . import regions
from .tables import header_above

# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, slots=True)
class Location:
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None

    @property
    def has_city_state(self) -> bool:
        return bool(self.city and self.state)

    def to_dict(self) -> dict[str, str | None]:
        return {"city": self.city, "state": self.state, "postal_code": self.postal_code,
                "country": self.country}


@dataclass(frozen=True, slots=True)
class Mention:
    start: int
    end: int
    location: Location
    role: str | None          # "origin", "destination", "stop" or None
    cue: str                  # how the role was found: "cue", "label", "pair", "" (none)
    address_line: bool        # on a street-address / phone line: a signature, not a lane


@dataclass(frozen=True, slots=True)
class Lane:
    origin: Location | None = None
    destination: Location | None = None
    origin_how: str = ""
    destination_how: str = ""

    @property
    def complete(self) -> bool:
        return self.origin is not None and self.destination is not None


# ----------------------------------------------------------------------------- patterns

_US_CODES = sorted(regions.US_STATES)
_CA_CODES = sorted(regions.CA_PROVINCES)
_MX_CODES = sorted(set(regions.MX_STATES) - set(_US_CODES) - set(_CA_CODES))
_CODES = "|".join(sorted(set(_US_CODES + _CA_CODES + _MX_CODES), key=len, reverse=True))
_DOTTED_MX = (r"N\.\s?L\.|B\.\s?C\.(?:\s?S\.)?|S\.\s?L\.\s?P\.|Edo\.\s?(?:de\s)?M[ée]x\.?|"
              r"(?:Jal|Coah|Tamps|Gto|Qro|Chih|Son|Ags|Pue|Ver|Yuc|Mich|Sin|Nay|Dgo|Hgo|Zac|Tab|Camp|Chis"
              r"|Tlax|Mor|Col|Oax|Gro)\.")


def _name_alternation() -> str:
    names: set[str] = set(regions.US_STATES.values())
    for group in (*regions.CA_PROVINCES.values(), *regions.MX_STATES.values()):
        names.update(group)
    for name in list(names):
        names.add(regions.fold(name).title())
    return "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in sorted(names, key=len, reverse=True))


_POSTAL = r"\d{5}(?:-\d{4})?(?!\d)|[A-Za-z]\d[A-Za-z][ \t]?\d[A-Za-z]\d(?![A-Za-z0-9])"
_STATE_AT = re.compile(
    rf"(?P<state>(?:{_CODES})(?![A-Za-z0-9'])\.?|{_DOTTED_MX}|(?i:(?:{_name_alternation()})(?![A-Za-z])))"
    r"[ \t]*\)?"
    rf"(?:,?[ \t]*\(?(?P<postal>{_POSTAL})\)?)?"
    r"(?:,?[ \t]*(?P<country>USA|U\.S\.A\.|US|U\.S\.|Canada|CAN|Mexico|México|MEX|MX)(?![A-Za-z]))?")
# Two-letter codes that are also everyday words in title case ("Hi Tom, Ok with me").
_COMMON_WORDS = frozenset([
    "Ok", "Or", "In", "Me", "Hi", "Oh", "On", "Ma", "Pa", "La", "De", "Al", "Co", "Id", "Mo", "Ne", "Ms", "Mt",
    "Va", "Wa", "Nb", "Ns", "Pe", "Yt", "Ab", "Bc"
])
_STATE_AT_ANY_CASE = re.compile(_STATE_AT.pattern.replace(f"(?:{_CODES})", f"(?i:{_CODES})", 1))
# Capitalised words; a state token is one of them, so only those few are tried against _STATE_AT.
_CAP_WORD = re.compile(r"(?<![\w'.-])[A-ZÀ-Ý][\w'.-]*")


def _state_starts() -> frozenset[str]:
    starts = set(_US_CODES + _CA_CODES + _MX_CODES)
    names: set[str] = set(regions.US_STATES.values())
    for group in (*regions.CA_PROVINCES.values(), *regions.MX_STATES.values()):
        names.update(group)
    starts.update(regions.fold(name.split()[0]) for name in names)
    starts.update(("n.l", "b.c", "s.l.p", "edo", "jal", "coah", "tamps", "gto", "qro", "chih", "son", "ags", "pue",
                   "ver", "yuc", "mich", "sin", "nay", "dgo", "hgo", "zac", "tab", "camp", "chis", "tlax", "mor",
                   "col", "oax", "gro"))
    return frozenset(starts)


_STATE_STARTS = _state_starts()
_CA_POSTAL_RE = re.compile(r"(?<![A-Za-z0-9])([ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z])[ \t]?(\d[ABCEGHJ-NPRSTV-Z]\d)"
                           r"(?![A-Za-z0-9])", re.IGNORECASE)
_ZIP_RE = re.compile(r"(?<![\w$#./-])(\d{5})(?:-\d{4})?(?![\w/]|[.,]\d)")
_ZIP_CUE_BEFORE = re.compile(
    r"(?:\b(?:from|to|origin|orig|destination|dest|zip(?:\s*code)?|postal(?:\s*code)?|p/?u|del|pick\s?-?up"
    r"|delivery|deliver|shipper|consignee|drop|desde|hasta|origen|destino|c\.?p\.?|code\s+postal"
    r"|c[oó]digo\s+postal|de|a|à|vers)|->|→|=>|>)\W{0,4}$", re.IGNORECASE)
_NAMED_BEFORE = re.compile(r"([A-Z][A-Za-z'.\-]*(?:\s+[A-Z][A-Za-z'.\-]*){0,3}),?\s+$")
_ZIP_PAIR_AFTER = re.compile(r"\s*(?:to|->|→|=>|>|-|/|a|à)\s*\d{5}(?!\d)", re.IGNORECASE)

# Words a city name never starts with: labels and verbs that stand in front of a place.
_NOT_CITY = frozenset([
    "pu", "p/u", "pick", "pickup", "pickups", "up", "del", "deliver", "delivery", "deliveries", "drop",
    "origin", "orig", "destination", "dest", "from", "to", "shipper", "consignee", "ship", "shipping", "our",
    "the", "at", "in", "and", "or", "dc", "warehouse", "plant", "dock", "yard", "facility", "re", "fw", "fwd",
    "rate", "quote", "quotes", "request", "lane", "load", "loads", "loading", "need", "needed", "please", "hi",
    "hello", "dear", "for", "via", "near", "stop", "store", "office", "hq", "out", "of",
    "on", "by", "ready", "rfq", "fb", "ltl", "ftl", "van", "reefer", "flatbed", "power", "only", "tender",
    "tendering", "pricing", "price", "hazmat", "dray", "drayage", "container", "box", "truck", "hotshot",
    "step", "deck", "lumper", "status", "update", "eta", "origen", "destino", "desde", "hasta", "entrega",
    "recoleccion", "recolección", "cotizacion", "cotización", "livraison", "cueillette", "ramassage",
    "expediteur", "expéditeur", "destinataire", "départ", "depart", "vers", "avec", "pour", "sur", "chez",
    # a date written before the place ("PU Monday Concord, ON")
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "mon", "tue", "tues", "wed",
    "thu", "thur", "thurs", "fri", "today", "tomorrow", "january", "february", "march", "april", "june",
    "july", "august", "september", "october", "november", "december",
])
_CONNECTORS = frozenset(("de", "del", "la", "las", "los", "du", "des", "le", "sur", "aux", "of", "upon", "y"))
_CITY_CUT = re.compile(r"[,:;|()\[\]\t>•*\"=]|->|→|\s[-/]\s|^-\s")
_TOKEN_OK = re.compile(r"^[A-ZÀ-Ý][A-Za-zÀ-ÿ'.\-]*$|^(?:d'|D')[A-ZÀ-Ý][A-Za-zÀ-ÿ'.\-]*$")

_ORIGIN_CUE = re.compile(
    r"\b(?:from|pick[\s\-]?ups?|picking\s+up|p/?u\s*#?\d*|origin(?:\s+zip)?|orig|shipper|ship(?:ping)?\s+from"
    r"|loading(?:\s+(?:at|in))?|load(?:s|ed)?\s+(?:at|in|out\s+of)|out\s+of|sitting\s+at|pre-?loaded\s+at"
    r"|ready\s+(?:at|in)|collect(?:ion)?(?:\s+(?:at|from))?|pick\s*#?\d|desde|origen|recolecci[oó]n"
    r"|(?:load|freight|pallets|shipment|it|trailer)\s+(?:is|are|sits)\s+(?:at|in)|located\s+(?:at|in)"
    r"|recoger(?:\s+en)?|carga\s+en|d[ée]part|origine|exp[ée]diteur|cueillette|ramassage|enl[eè]vement"
    r"|provenance)\b|(?-i:\bO\s*:)", re.IGNORECASE)
_DEST_CUE = re.compile(
    r"(?:\b(?:deliver(?:y|ing|ed|s)?|del\s*#?\d*|drop(?:ping)?(?:\s*#?\d)?|destination(?:\s+zip)?|dest"
    r"|consignee|ship(?:ping)?\s+to|going\s+to|receiver|headed\s+to|bound\s+for|destino|entrega(?:r)?"
    r"|consignatario|livraison|livrer|destinataire|unload(?:ing)?|final\s+stop)\b|(?-i:\bD\s*:)|->|→|=>|⇒|➝|➜|⟶)",
    re.IGNORECASE)
_STOP_CUE = re.compile(r"\bstop\s*#?\s*\d+\b|\b\d(?:st|nd|rd|th)\s+stop\b", re.IGNORECASE)
_TO_AT_END = re.compile(r"(?:\b(?:to|into|then|hasta|hacia|vers|jusqu'[àa])|\bthen\s+to)\s*:?\s*$", re.IGNORECASE)
_PAIR_AT_END = re.compile(r"^\s*(?:-|/|a|à|y|to|->|→|=>|>|then)\s*$", re.IGNORECASE)
_FROM_AT_END = re.compile(r"\b(?:de|du|desde)\s*$", re.IGNORECASE)
_LINE_LABEL = re.compile(r"^[\s\-*•>]*([A-Za-zÀ-ÿ/ #]{1,24}?)\s*(?:[:\t]|$)")
# A street address or a phone number on the line: an office in a signature, which completes no lane
# by position alone.
_STREET = (r"(?:st|street|ave|avenue|blvd|boulevard|rd|road|dr|drive|pkwy|parkway|hwy|highway|ln|lane|way|ct"
           r"|court|cres|crescent|pl|place|cir|circle|trl|trail|ter|terrace|loop|pike|plaza|ctr|center|suite|ste"
           r"|boul|rue|calle|av)")
_ADDRESS_LINE = re.compile(
    rf"\b\d{{1,6}}[A-Za-z]?\s+(?:[NSEW]\.?\s+)?(?:[\w.'-]+\s+){{0,4}}?{_STREET}\b|\(\d{{3}}\)\s*\d{{3}}"
    r"|\b\d{3}[-.\s]\d{3}[-.\s]\d{4}\b", re.IGNORECASE)
_LOOKBACK_LINES = 3
_LINE_REACH = 300          # characters of a line that can hold a place's cue or city


# ----------------------------------------------------------------------------- places

def find_mentions(text: str) -> list[Mention]:
    """Every place in `text`, in order, with the role the surrounding words give it."""
    places = _places(text)
    starts = [place[0] for place in places]
    mentions: list[Mention] = []
    previous_end_by_line: dict[int, int] = {}
    for start, end, location in places:
        line_start = _line_start(text, start)
        window_start = max(line_start, previous_end_by_line.get(line_start, line_start))
        window = text[window_start:start]
        has_previous = line_start in previous_end_by_line
        role, how = _role_from_window(window, has_previous)
        if role is None:
            role, how = _role_from_column(text, start)
        if role is None:
            role, how = _role_from_label_above(text, line_start, starts)
        line_end = text.find("\n", end, end + _LINE_REACH)
        line = text[line_start:line_end if line_end >= 0 else end + _LINE_REACH]
        mentions.append(Mention(start, end, location, role, how, bool(_ADDRESS_LINE.search(line))))
        previous_end_by_line[line_start] = end
    return mentions


_Place = tuple[int, int, Location]


def _places(text: str) -> list[_Place]:
    """Places in text order: "City, ST [postal]" first, then lone Canadian postal codes and US ZIPs."""
    taken: list[tuple[int, int]] = []
    found = _state_places(text, taken)
    found += _postal_places(text, taken)
    found += _zip_places(text, taken)
    found.sort(key=lambda item: item[0])
    return found


def _state_places(text: str, taken: list[tuple[int, int]]) -> list[_Place]:
    found: list[_Place] = []
    for word in _CAP_WORD.finditer(text):
        start = word.start()
        if start == 0 or text[start - 1] not in " \t,(" or _overlaps(start, word.end(), taken):
            continue
        token = word.group().rstrip(".,")
        if token not in _STATE_STARTS and regions.fold(token) not in _STATE_STARTS and \
                not (len(token) == 2 and token.upper() in _STATE_STARTS):
            continue
        match = _STATE_AT.match(text, start)
        place = _place_from_state_match(text, match) if match else None
        if place is None and len(token) == 2 and token.istitle() and token not in _COMMON_WORDS \
                and text[max(0, start - 3):start].rstrip(" \t").endswith(","):
            # "Dallas, Tx": a code in title case, after a comma and a city the place data knows.
            match = _STATE_AT_ANY_CASE.match(text, start)
            place = _place_from_state_match(text, match, known_city_only=True) if match else None
        if place is not None:
            found.append(place)
            _take(taken, place[0], place[1])
    return found


def _postal_places(text: str, taken: list[tuple[int, int]]) -> list[_Place]:
    found: list[_Place] = []
    for match in _CA_POSTAL_RE.finditer(text):
        if _overlaps(match.start(), match.end(), taken):
            continue
        letters = match.group(1).upper()
        postal = f"{letters} {match.group(2).upper()}"
        province = regions.CA_POSTAL_PROVINCE.get(letters[0])
        found.append((match.start(), match.end(), Location(None, province, postal, "CA")))
        _take(taken, match.start(), match.end())
    return found


def _zip_places(text: str, taken: list[tuple[int, int]]) -> list[_Place]:
    """Bare ZIPs where the text shows they are ZIPs: a cue before, a ZIP paired after, or the
    ZIP's own city right before it ("Dallas 75207")."""
    found: list[_Place] = []
    for match in _ZIP_RE.finditer(text):
        if _overlaps(match.start(), match.end(), taken):
            continue
        before = text[max(0, match.start() - 40):match.start()].rsplit("\n", 1)[-1]
        cued = bool(_ZIP_CUE_BEFORE.search(before) or _ZIP_PAIR_AFTER.match(text, match.end())
                    or _pairs_with_previous_zip(before))
        named = _NAMED_BEFORE.search(before)
        place = regions.zip_place(match.group(1)) if cued or named else None
        if place is None:
            continue
        start, city = match.start(), place[0]
        if named:
            words = named.group(1).split()
            size = len(regions.city_key(place[0]).split())
            if len(words) >= size and regions.city_key(" ".join(words[-size:])) == regions.city_key(place[0]):
                start = match.start() - len(before) + named.start(1) + named.group(1).rfind(words[-size])
                city, cued = _tidy(" ".join(words[-size:])), True
        if cued:
            found.append((start, match.end(), Location(city, place[1], match.group(1), "US")))
            _take(taken, start, match.end())
    return found


def _pairs_with_previous_zip(before: str) -> bool:
    return bool(re.search(r"\d{5}\s*(?:to|->|→|=>|>|-|/)\s*$", before, re.IGNORECASE))


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    """Whether [start, end) meets one of `spans` (sorted, disjoint)."""
    index = bisect.bisect_right(spans, (start, float("inf")))
    if index and spans[index - 1][1] > start:
        return True
    return index < len(spans) and spans[index][0] < end


def _take(spans: list[tuple[int, int]], start: int, end: int) -> None:
    bisect.insort(spans, (start, end))


def _line_start(text: str, pos: int) -> int:
    """Start of the line holding `pos`, looking back at most _LINE_REACH characters."""
    floor = max(0, pos - _LINE_REACH)
    return text.rfind("\n", floor, pos) + 1 or floor


def _place_from_state_match(text: str, match: re.Match[str], *, known_city_only: bool = False) -> _Place | None:
    raw_state = match.group("state")
    sep_start = match.start()
    while sep_start > 0 and text[sep_start - 1] in " \t":
        sep_start -= 1
    comma = False
    if sep_start > 0 and text[sep_start - 1] in ",(":
        comma = True
        sep_start -= 1
        while sep_start > 0 and text[sep_start - 1] in " \t":
            sep_start -= 1
    postal = match.group("postal")
    country_word = (match.group("country") or "").upper().replace(".", "")
    tokens = _city_tokens(text, sep_start)
    if not tokens:
        return None
    for country, state in _state_candidates(raw_state, postal, country_word):
        city = _known_city(tokens, country, state) or None if known_city_only else \
            _validate_city(tokens, country, state, postal, comma)
        if city is None:
            continue
        end = match.end()
        norm_postal = _norm_postal(postal, country)
        if postal and norm_postal is None:
            end = match.end("state")
        return _start_of_city(text, sep_start, tokens, city), end, Location(city, state, norm_postal, country)
    return None


def _start_of_city(text: str, state_start: int, tokens: list[str], city: str) -> int:
    words = len(city.split())
    first = tokens[-words] if words <= len(tokens) else tokens[0]
    index = text.rfind(first, 0, state_start)
    return index if index >= 0 else state_start


def _state_candidates(raw: str, postal: str | None, country_word: str) -> list[tuple[str, str]]:
    """(country, code) readings of a state token, most likely first."""
    token = raw.strip().rstrip(".").strip()
    if len(token) == 2 and token.isalpha():
        token = token.upper()
    compact = re.sub(r"[.\s]", "", token).upper()
    out: list[tuple[str, str]] = []
    if re.fullmatch(r"[A-Z]{2,5}", token):
        if token in regions.US_STATES:
            out.append(("US", token))
        if token in regions.CA_PROVINCES:
            out.append(("CA", token))
        mx = regions.MX_ALIASES.get(token, token)
        if mx in regions.MX_STATES:
            out.append(("MX", mx))
    else:
        named = regions.STATE_NAMES.get(regions.fold(token))
        if named:
            out.append(named)
        else:
            mx = regions.MX_ALIASES.get(compact, compact)
            if compact.startswith("EDO"):
                mx = "MEX"
            if mx in regions.MX_STATES:
                out.append(("MX", mx))
    is_ca_postal = bool(postal and re.fullmatch(r"[A-Za-z]\d[A-Za-z][ \t]?\d[A-Za-z]\d", postal))
    country_hint = {"USA": "US", "US": "US", "CANADA": "CA", "CAN": "CA", "MEXICO": "MX", "MÉXICO": "MX",
                    "MEX": "MX", "MX": "MX"}.get(country_word)

    def rank(item: tuple[str, str]) -> int:
        country = item[0]
        score = 0
        if country_hint:
            score -= 10 if country == country_hint else 0
        if is_ca_postal:
            score -= 5 if country == "CA" else 0
        elif postal:
            score -= 2 if country in ("US", "MX") else 0
        return score

    return sorted(out, key=rank)


def _norm_postal(postal: str | None, country: str) -> str | None:
    if not postal:
        return None
    if country == "CA":
        squashed = postal.replace(" ", "").replace("\t", "").upper()
        return f"{squashed[:3]} {squashed[3:]}" if re.fullmatch(r"[A-Z]\d[A-Z]\d[A-Z]\d", squashed) else None
    digits = postal[:5]
    return digits if digits.isdigit() else None


def _city_tokens(text: str, end: int) -> list[str]:
    """The capitalised words right before a state token, on the same line, after any separator."""
    segment = text[_line_start(text, end):end]
    cut = 0
    for found in _CITY_CUT.finditer(segment):
        cut = found.end()
    segment = segment[cut:]
    raw_tokens = segment.split()
    tokens: list[str] = []
    for token in reversed(raw_tokens[-6:]):
        bare = token.strip(".,")
        if not bare:
            break
        low = bare.lower()
        if bare in _CONNECTORS and tokens:
            tokens.append(bare)
            continue
        if any(ch.isdigit() for ch in bare) or not _TOKEN_OK.match(bare) or low in _NOT_CITY:
            break
        tokens.append(token.rstrip(","))
        if len(tokens) >= 5:
            break
    tokens.reverse()
    while tokens and tokens[0] in _CONNECTORS:
        tokens.pop(0)
    return tokens


def _validate_city(tokens: list[str], country: str, state: str, postal: str | None, comma: bool) -> str | None:
    """The city the tokens name in that state, or None when they name none.

    The longest run of words that the place data knows in that state wins. Without a match, a US
    place still stands when its ZIP is of that state; a Canadian or Mexican one (the data holds
    only larger cities) when it is written "City, ST" or carries a postal code.
    """
    known = _known_city(tokens, country, state)
    if known is not None:
        return known or None
    if country == "US":
        zip_place = regions.zip_place(postal[:5]) if postal and postal[:5].isdigit() else None
        accepted = bool(zip_place and zip_place[1] == state and comma)
    elif country == "CA" and postal and not _CA_POSTAL_RE.fullmatch(postal):
        accepted = False
    else:
        accepted = comma or bool(postal)
    return _tidy(" ".join(tokens[-3:])) if accepted else None


def _known_city(tokens: list[str], country: str, state: str) -> str | None:
    """The matching city, "" when the words name a city of another province or country, None when
    the data does not know them."""
    for size in range(len(tokens), 0, -1):
        candidate = " ".join(tokens[-size:])
        if country == "US":
            if regions.us_city(candidate, state):
                return _tidy(candidate)
            continue
        elsewhere = regions.world_cities(candidate)
        if any(w_country == country and w_state == state for w_country, w_state, _name in elsewhere):
            return _tidy(candidate)
        if elsewhere and size == len(tokens):
            return ""
    return None


def _tidy(city: str) -> str:
    city = city.strip(" .,")
    if city.isupper():
        return " ".join(word.capitalize() if "'" not in word else word.title() for word in city.split())
    return city


# ----------------------------------------------------------------------------- roles

def _role_from_window(window: str, has_previous: bool) -> tuple[str | None, str]:
    best: tuple[int, str] | None = None
    for pattern, role in ((_ORIGIN_CUE, "origin"), (_DEST_CUE, "destination"), (_STOP_CUE, "stop")):
        for found in pattern.finditer(window):
            if best is None or found.end() >= best[0]:
                best = (found.end(), role)
    if _TO_AT_END.search(window):
        return "destination", "cue"
    if has_previous and _PAIR_AT_END.match(window):
        return "destination", "pair"
    if best is not None:
        return best[1], "cue"
    if _FROM_AT_END.search(window):
        return "origin", "cue"
    return None, ""


def _role_from_column(text: str, pos: int) -> tuple[str | None, str]:
    """The header of its column, for a place in a table whose first row holds the labels."""
    header = header_above(text, pos)
    if header is None or len(header) > 40:
        return None, ""
    role, _how = _role_from_window(header, has_previous=False)
    return (role, "column") if role in ("origin", "destination") else (None, "")


def _role_from_label_above(text: str, line_start: int, starts: list[int]) -> tuple[str | None, str]:
    """A label a few lines up ("SHIPPER", "Ship To:") owns the address block below it, unless
    another place stands between them (`starts`: where the places of the text start, sorted)."""
    end = line_start - 1
    for _ in range(_LOOKBACK_LINES):
        if end <= 0:
            break
        start = _line_start(text, end)
        line = text[start:end]
        if not line.strip():
            break
        label = _LINE_LABEL.match(line)
        if label:
            word = label.group(1)
            if _DEST_CUE.fullmatch(word.strip()) or re.fullmatch(r"(?i)ship\s+to|to", word.strip()):
                return "destination", "label"
            if _ORIGIN_CUE.fullmatch(word.strip()) or re.fullmatch(r"(?i)ship\s+from", word.strip()):
                return "origin", "label"
        index = bisect.bisect_left(starts, start)
        if index < len(starts) and starts[index] < end:
            break  # a place of its own on this line: the block above is another one
        end = start - 1
    return None, ""


# ----------------------------------------------------------------------------- lanes

def lane_from(mentions: list[Mention]) -> Lane:
    origins = [m for m in mentions if m.role == "origin"]
    dests = [m for m in mentions if m.role == "destination"]
    stops = [m for m in mentions if m.role == "stop"]
    origin = origins[0] if origins else None
    dest = dests[-1] if dests else None
    origin_how = origin.cue if origin else ""
    dest_how = dest.cue if dest else ""
    if stops:
        if origin is None:
            origin, origin_how = stops[0], "stop"
        if dest is None and stops[-1] is not origin:
            dest, dest_how = stops[-1], "stop"
    free = [m for m in mentions if m.role is None and not m.address_line]
    if origin is None and dest is not None:
        before = [m for m in free if m.end <= dest.start]
        if before:
            origin, origin_how = before[-1], "position"
    if dest is None and origin is not None:
        after = [m for m in free if m.start >= origin.end]
        if after:
            dest, dest_how = after[0], "position"
    return Lane(origin.location if origin else None, dest.location if dest else None, origin_how, dest_how)


def find_lane(text: str) -> Lane:
    return lane_from(find_mentions(text))


def precise(location: Location | None, precision: str = "city_state_or_postal") -> bool:
    """Whether a place is named precisely enough to price (SCHEMA.md rule 1 by default)."""
    if location is None:
        return False
    if precision == "postal":
        return bool(location.postal_code)
    if precision == "city_state":
        return location.has_city_state
    return location.has_city_state or bool(location.postal_code)
