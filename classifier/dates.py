"""Pickup and delivery dates, as ISO dates, from the phrases freight mail uses.

Explicit dates ("3/16", "3/16/2026", "2026-03-16", "March 16", "16 de marzo", "16 mars") and
relative ones ("today", "tomorrow", "Thursday", "next Monday", "Mon-Tue next week", "same day",
"mañana", "demain") resolve against the Date header; a range takes its first day; a month/day
without a year is the next such day on or after the message date.

Whether a date is the pickup or the delivery comes from the nearest cue word before it on its
line (PU, pickup, load, ready, ships / DEL, deliver, drop), else the first one after it in the
same clause. Deadlines ("LFD is Friday", "numbers by today") are neither.

dateparser was measured for this and left out: about 1 ms a phrase, seconds for some inputs,
and it cannot tell a pickup from a delivery; the grammar below is a few regular expressions.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .tables import header_above

WEEKDAYS: dict[str, int] = {}
for _index, _names in enumerate((
        ("monday", "mon", "lunes", "lundi"), ("tuesday", "tue", "tues", "martes", "mardi"),
        ("wednesday", "wed", "miércoles", "miercoles", "mercredi"),
        ("thursday", "thu", "thur", "thurs", "jueves", "jeudi"), ("friday", "fri", "viernes", "vendredi"),
        ("saturday", "sat", "sábado", "sabado", "samedi"), ("sunday", "sun", "domingo", "dimanche"))):
    for _name in _names:
        WEEKDAYS[_name] = _index

MONTHS: dict[str, int] = {}
for _index, _names in enumerate((
        ("january", "jan", "enero", "ene", "janvier", "janv"), ("february", "feb", "febrero", "février",
                                                               "fevrier", "févr", "fevr"),
        ("march", "mar", "marzo", "mars"), ("april", "apr", "abril", "abr", "avril", "avr"),
        ("may", "mayo", "mai"), ("june", "jun", "junio", "juin"), ("july", "jul", "julio", "juillet", "juil"),
        ("august", "aug", "agosto", "ago", "août", "aout"),
        ("september", "sep", "sept", "septiembre", "setiembre", "septembre"),
        ("october", "oct", "octubre", "octobre"), ("november", "nov", "noviembre", "novembre"),
        ("december", "dec", "diciembre", "dic", "décembre", "decembre", "déc")), start=1):
    for _name in _names:
        MONTHS[_name] = _index


def _alternation(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_WD_FULL = _alternation([w for w in WEEKDAYS if len(w) > 4 or w in ("lunes", "lundi", "mardi", "jeudi")])
_WD_ABBR = r"(?-i:Mon|Tues|Tue|Wed|Thurs|Thur|Thu|Fri|Sat|Sun|MON|TUE|WED|THU|FRI|SAT|SUN)"
_WD = rf"(?:{_WD_FULL}|{_WD_ABBR})"
_MONTH = _alternation(list(MONTHS))
_NEXT_WEEK = (r"next\s+week|de\s+la\s+semana\s+que\s+viene|de\s+la\s+pr[oó]xima\s+semana"
              r"|la\s+semaine\s+prochaine|de\s+la\s+semaine\s+prochaine")

_DATE_RE = re.compile(
    rf"(?P<iso>\b(?P<iy>20\d\d)-(?P<im>\d\d)-(?P<id>\d\d)\b)"
    rf"|(?P<num>(?<![\d/.$#:-])(?P<n1>\d{{1,2}})/(?P<n2>\d{{1,2}})(?:/(?P<n3>20\d\d|\d\d))?(?![\d/])"
    rf"(?:\s*[-]\s*(?:\d{{1,2}}/)?\d{{1,2}}(?![\d/]))?)"
    rf"|(?P<mdate>\b(?P<mn>{_MONTH})\.?\s+(?P<md>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<my>20\d\d))?)"
    rf"|(?P<ddate>\b(?:the\s+)?(?P<dd>\d{{1,2}})(?:st|nd|rd|th|er|º)?\s+(?:de\s+|of\s+)?(?P<dm>{_MONTH})\b\.?"
    rf"(?:,?\s+(?:de\s+)?(?P<dy>20\d\d))?)"
    r"|(?P<nth>\bthe\s+(?P<nd>\d{1,2})(?:st|nd|rd|th)\b(?!\s+(?:load|stop|shift|floor|truck|pallet|drop|pick|time|week)))"
    rf"|(?P<wd>\b(?:(?P<next>next|this|coming|el\s+pr[oó]ximo|este|ce)\s+)?(?P<wn>{_WD})\b\.?"
    rf"(?:\s*(?:-|/|to|thru|through|or|&|a|au|y|et|ou|o)\s*{_WD}\b\.?)?"
    rf"(?:\s+(?P<nw>{_NEXT_WEEK}|prochain|pr[oó]ximo))?)"
    r"|(?P<rel>\b(?:day\s+after\s+tomorrow|the\s+day\s+after|pasado\s+ma[ñn]ana|apr[eè]s-demain|today|tonight"
    r"|tomorrow|tmrw|tmw|same\s+day|next\s+day|hoy|ma[ñn]ana|aujourd'hui|demain"
    r"|le\s+lendemain|al\s+d[ií]a\s+siguiente|el\s+mismo\s+d[ií]a|le\s+m[eê]me\s+jour)\b)",
    re.IGNORECASE)
_EXPLICIT_AFTER = re.compile(rf"\s*,?\s*(?:\(?\d{{1,2}}/\d{{1,2}}|(?:{_MONTH})\.?\s+\d{{1,2}}"
                             rf"|(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?\s+(?:de\s+|of\s+)?(?:{_MONTH})"
                             r"|the\s+\d{1,2}(?:st|nd|rd|th)\b)",
                             re.IGNORECASE)
_MORNING = re.compile(r"(?:\bla|\bpor|\bde|\ben|\besta)\s+$", re.IGNORECASE)

_PICKUP_CUE = re.compile(
    r"\b(?:pick[\s\-]?ups?|picking\s+up|p/?u\d*|load(?:s|ed|ing)?|ready|ships?|shipping|available|avail"
    r"|collect(?:ion)?|origin|shipper|book(?:ed|ing)?|dispatch(?:ed)?|tender(?:ed)?|recolecci[oó]n|recoger"
    r"|recolectar|carga(?:r|mos)?|listo|lista|disponible|cueillette|ramassage|chargement|enl[eè]vement"
    r"|pr[eê]te?s?)\b", re.IGNORECASE)
_DELIVERY_CUE = re.compile(
    r"\b(?:deliver(?:y|ies|ed|s|ing)?|del|drop(?:ped|ping)?|arrive|arrival|consignee|receiver|entrega(?:r|do)?"
    r"|llegada|livraison|livrer|livr[ée]e?|arriv[ée]e|there|due|must\s+be\s+in)\b", re.IGNORECASE)
_NEUTRAL_CUE = re.compile(
    r"\b(?:lfd|last\s+free\s+day|cut-?off|closed|effective|invoice[sd]?|dated|expires?|valid|reply|respond"
    r"|response|answer|numbers|back|office|holiday|eta|meeting|call|webinar|renews?)\b", re.IGNORECASE)
# "the rate by Friday" is when the answer is due, not the load.
_DEADLINE_CUE = re.compile(r"\b(?:quotes?|rates?|pric(?:e|es|ing)|bids?|numbers?)\s+(?:back\s+)?by\b", re.IGNORECASE)
_CLAUSE_END = re.compile(r"[.;!?]\s|[.;!?]$|,\s")


@dataclass(frozen=True, slots=True)
class DateMention:
    start: int
    end: int
    value: dt.date | None         # None for "same day" / "next day" (relative to the pickup)
    after_pickup: int | None      # days after the pickup for "same day" (0) / "next day" (1)
    weekday: int | None           # the weekday named, when the date came from one
    explicit: bool


@dataclass(frozen=True, slots=True)
class Dates:
    pickup: dt.date | None = None
    delivery: dt.date | None = None
    pickup_how: str = ""
    delivery_how: str = ""


_WORD = re.compile(r"[^\W\d_]+")
_MARKERS = {
    "en": frozenset([
        "the", "and", "to", "for", "please", "with", "from", "we", "you", "our", "is", "are", "of", "on", "at",
        "this"
    ]),
    "es": frozenset([
        "el", "la", "los", "las", "de", "del", "para", "por", "favor", "con", "una", "un", "gracias",
        "saludos", "hola", "buenos", "buenas", "usted", "necesito", "tarimas", "entrega", "carga", "es", "que"
    ]),
    "fr": frozenset([
        "le", "la", "les", "des", "du", "de", "pour", "avec", "une", "un", "merci", "bonjour", "nous", "vous",
        "est", "livraison", "cueillette", "palettes", "que"
    ]),
}


# The languages each marker word belongs to, so each word of a text is looked up once.
_MARKER_LANGUAGES: dict[str, tuple[str, ...]] = {}
for _lang, _words in _MARKERS.items():
    for _word in _words:
        _MARKER_LANGUAGES[_word] = (*_MARKER_LANGUAGES.get(_word, ()), _lang)


def language(text: str) -> str:
    """"en", "es" or "fr", by counting the little words each language cannot do without."""
    counts = dict.fromkeys(_MARKERS, 0)
    for word in _WORD.findall(text[:4000].lower()):
        for lang in _MARKER_LANGUAGES.get(word, ()):
            counts[lang] += 1
    best = max(("es", "fr"), key=lambda lang: counts[lang])
    return best if counts[best] >= 3 and counts[best] > counts["en"] else "en"


def day_first(text: str) -> bool:
    """Spanish and French mail writes 16/03 for the 16th of March."""
    return language(text) != "en"


# Words a date phrase can start with. Scanning tokens and trying the full pattern only where one
# starts is several times faster than letting the pattern scan every position itself.
_TOKEN = re.compile(r"\d+|[^\W\d_]+")
_STARTS = frozenset([*WEEKDAYS, *MONTHS, "next", "this", "coming", "el", "este", "ce", "today", "tonight",
                     "tomorrow", "tmrw", "tmw", "same", "day", "the", "hoy", "mañana", "manana", "pasado",
                     "aujourd", "demain", "après", "apres", "le", "al"])


def find_dates(text: str, base: dt.date | None, *, dmy: bool = False) -> list[DateMention]:
    found: list[DateMention] = []
    end = 0
    for token in _TOKEN.finditer(text):
        start = token.start()
        if start < end:
            continue
        word = token.group()
        if not word[0].isdigit() and word.lower() not in _STARTS:
            continue
        match = _DATE_RE.match(text, start)
        if match is None:
            continue
        end = match.end()
        mention = _mention(match, text, base, dmy)
        if mention is not None:
            found.append(mention)
    return found


def _mention(match: re.Match[str], text: str, base: dt.date | None, dmy: bool) -> DateMention | None:
    for group, read in _READERS:
        if match.group(group):
            return read(match, text, base, dmy)
    return None


def _read_iso(match: re.Match[str], text: str, base: dt.date | None, dmy: bool) -> DateMention | None:
    return _explicit(match.start(), match.end(), int(match.group("iy")), int(match.group("im")),
                     int(match.group("id")))


def _read_numeric(match: re.Match[str], text: str, base: dt.date | None, dmy: bool) -> DateMention | None:
    first, second = int(match.group("n1")), int(match.group("n2"))
    month, day = (second, first) if dmy else (first, second)
    year_text = match.group("n3")
    if year_text:
        year = int(year_text) + (2000 if len(year_text) == 2 else 0)
        return _explicit(match.start(), match.end(), year, month, day)
    return _year_from_base(match.start(), match.end(), month, day, base)


def _read_month_day(match: re.Match[str], text: str, base: dt.date | None, dmy: bool) -> DateMention | None:
    word = match.group("mn")
    if word == "may":
        return None  # "may 5 ..." is a verb more often than a month
    month, day = MONTHS[word.lower()], int(match.group("md"))
    if match.group("my"):
        return _explicit(match.start(), match.end(), int(match.group("my")), month, day)
    return _year_from_base(match.start(), match.end(), month, day, base)


def _read_day_month(match: re.Match[str], text: str, base: dt.date | None, dmy: bool) -> DateMention | None:
    month, day = MONTHS[match.group("dm").lower()], int(match.group("dd"))
    if match.group("dy"):
        return _explicit(match.start(), match.end(), int(match.group("dy")), month, day)
    return _year_from_base(match.start(), match.end(), month, day, base)


def _read_nth(match: re.Match[str], text: str, base: dt.date | None, dmy: bool) -> DateMention | None:
    return _day_of_month(match.start(), match.end(), int(match.group("nd")), base)


def _read_weekday(match: re.Match[str], text: str, base: dt.date | None, dmy: bool) -> DateMention | None:
    if base is None or _EXPLICIT_AFTER.match(text, match.end()):
        return None  # "Monday 3/16": the explicit date that follows is the one we read
    weekday = WEEKDAYS[match.group("wn").lower().rstrip(".")]
    said = (match.group("nw") or "").lower()
    next_week = bool(said) and said not in ("prochain", "proximo", "próximo")
    return DateMention(match.start(), match.end(), _weekday_date(base, weekday, next_week=next_week), None,
                       weekday, False)


_SAME_DAY = frozenset(("same day", "el mismo dia", "el mismo día", "le meme jour", "le même jour"))
_NEXT_DAY = frozenset(("next day", "le lendemain", "al dia siguiente", "al día siguiente", "the day after"))
_DAYS_AHEAD = {"day after tomorrow": 2, "pasado mañana": 2, "pasado manana": 2, "après-demain": 2,
               "apres-demain": 2, "tomorrow": 1, "tmrw": 1, "tmw": 1, "mañana": 1, "manana": 1, "demain": 1}


def _read_relative(match: re.Match[str], text: str, base: dt.date | None, dmy: bool) -> DateMention | None:
    start, end = match.start(), match.end()
    word = " ".join(match.group("rel").lower().split())
    if word in ("mañana", "manana") and _MORNING.search(text, max(0, start - 8), start):
        return None  # "por la mañana" is the morning, not tomorrow
    if word in _SAME_DAY or word in _NEXT_DAY:
        return DateMention(start, end, None, 0 if word in _SAME_DAY else 1, None, False)
    if base is None:
        return None
    return DateMention(start, end, base + dt.timedelta(days=_DAYS_AHEAD.get(word, 0)), None, None, False)


_READERS = (("iso", _read_iso), ("num", _read_numeric), ("mdate", _read_month_day), ("ddate", _read_day_month),
            ("nth", _read_nth), ("wd", _read_weekday), ("rel", _read_relative))


def _explicit(start: int, end: int, year: int, month: int, day: int) -> DateMention | None:
    try:
        return DateMention(start, end, dt.date(year, month, day), None, None, True)
    except ValueError:
        return None


def _year_from_base(start: int, end: int, month: int, day: int, base: dt.date | None) -> DateMention | None:
    year = base.year if base else None
    if year is None:
        return None
    try:
        value = dt.date(year, month, day)
    except ValueError:
        return None
    if base is not None and value < base:
        try:
            value = dt.date(year + 1, month, day)
        except ValueError:
            return None
    return DateMention(start, end, value, None, None, True)


def _day_of_month(start: int, end: int, day: int, base: dt.date | None) -> DateMention | None:
    """"the 15th": the next 15th on or after the message date."""
    if base is None or not 1 <= day <= 31:
        return None
    year, month = base.year, base.month
    for _ in range(3):
        try:
            value = dt.date(year, month, day)
        except ValueError:
            value = None
        if value is not None and value >= base:
            return DateMention(start, end, value, None, None, True)
        month, year = (1, year + 1) if month == 12 else (month + 1, year)
    return None


def _weekday_date(base: dt.date, weekday: int, *, next_week: bool) -> dt.date:
    if next_week:
        monday_next = base + dt.timedelta(days=7 - base.weekday())
        return monday_next + dt.timedelta(days=weekday)
    ahead = (weekday - base.weekday()) % 7 or 7
    return base + dt.timedelta(days=ahead)


# ----------------------------------------------------------------------------- roles

def date_roles(text: str, mentions: list[DateMention]) -> list[tuple[DateMention, str | None]]:
    """Each date with "pickup", "delivery", "neutral" or None (no cue) from the words around it."""
    out: list[tuple[DateMention, str | None]] = []
    previous_end = 0
    for index, mention in enumerate(mentions):
        line_start = text.rfind("\n", max(0, mention.start - 300), mention.start) + 1
        window = text[max(line_start, previous_end):mention.start]
        role = _nearest_cue(window, last=True)
        if role is None:
            header = header_above(text, mention.start)
            role = _nearest_cue(header, last=True) if header and len(header) <= 40 else None
        if role is None:
            line_end = text.find("\n", mention.end, mention.end + 300)
            stop = line_end if line_end >= 0 else min(len(text), mention.end + 300)
            if index + 1 < len(mentions):
                stop = min(stop, mentions[index + 1].start)
            after = text[mention.end:stop]
            clause = _CLAUSE_END.search(after)
            if clause:
                after = after[:clause.start()]
            role = _nearest_cue(after[:60], last=False)
        out.append((mention, role))
        previous_end = mention.end
    return out


def _nearest_cue(window: str, *, last: bool) -> str | None:
    best: tuple[int, str] | None = None
    patterns = ((_PICKUP_CUE, "pickup"), (_DELIVERY_CUE, "delivery"), (_NEUTRAL_CUE, "neutral"),
                (_DEADLINE_CUE, "neutral"))
    for pattern, role in patterns:
        for found in pattern.finditer(window):
            key = found.end() if last else -found.start()
            if best is None or key > best[0]:
                best = (key, role)
            if not last:
                break
    return best[1] if best else None


def pick_dates(sources: list[tuple[str, list[tuple[DateMention, str | None]]]]) -> Dates:
    """Pickup and delivery from dates with roles, sources in order of trust: cued dates from every
    source first, then a date with no cue at all as the pickup."""
    pickup: DateMention | None = None
    delivery: DateMention | None = None
    pickup_how = delivery_how = ""
    for name, roled in sources:
        for mention, role in roled:
            if role == "pickup" and pickup is None:
                pickup, pickup_how = mention, f"cue:{name}"
            elif role == "delivery" and delivery is None:
                delivery, delivery_how = mention, f"cue:{name}"
    if pickup is None:
        for name, roled in sources:
            free = [m for m, role in roled if role is None and m.value is not None
                    and (delivery is None or m is not delivery)]
            if free:
                pickup, pickup_how = free[0], f"first:{name}"
                break
    pickup_date = pickup.value if pickup is not None else None
    if pickup is not None and pickup.value is None:
        pickup_date = None
    delivery_date: dt.date | None = None
    if delivery is not None:
        if delivery.after_pickup is not None:
            delivery_date = pickup_date + dt.timedelta(days=delivery.after_pickup) if pickup_date else None
        else:
            delivery_date = delivery.value
            if delivery_date and pickup_date and delivery_date < pickup_date and delivery.weekday is not None:
                delivery_date += dt.timedelta(days=7)
    return Dates(pickup_date, delivery_date, pickup_how if pickup_date else "", delivery_how if delivery_date else "")
