"""Split a body into what the sender wrote now and the messages it quotes or forwards.

Each piece is a Section with its author (from the From line of an Outlook header block, the
"On ... wrote:" attribution or the message's own From) and the author's signature cut off:
the office address under a sender's name is not the origin of a load.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from email.utils import parseaddr, parsedate_to_datetime

from .parse import QUOTE_MARK
from .regions import fold


@dataclass(frozen=True, slots=True)
class Section:
    text: str                 # what the author wrote, signature removed
    signature: str
    sender: str               # the author's display name, "" when not known
    sent: dt.date | None      # when the author sent it, when known
    quoted: bool              # False for the part the message's own sender wrote


_ORIGINAL = re.compile(
    r"^[\s>]*[-_=*]{2,}\s*(?:original\s+message|forwarded\s+message|mensaje\s+original|mensaje\s+reenviado"
    r"|message\s+d'origine|message\s+original|message\s+transf[ée]r[ée]|courriel\s+original"
    r"|ursprüngliche\s+nachricht|weitergeleitete\s+nachricht)\s*[-_=*]{2,}\s*$", re.IGNORECASE)
_BEGIN_FORWARD = re.compile(
    r"^\s*(?:begin\s+forwarded\s+message|inicio\s+del\s+mensaje\s+reenviado"
    r"|d[ée]but\s+du\s+message\s+(?:r[ée]exp[ée]di[ée]|transf[ée]r[ée]))\s*:?\s*$", re.IGNORECASE)
_RULE = re.compile(r"^\s*(?:_{8,}|-{8,})\s*$")
_HEADER = re.compile(
    r"^\s*\*?(from|de|von|sent|date|enviado|envoy[ée]|fecha|gesendet|to|para|[àa]|an|cc|bcc|subject|asunto"
    r"|objet|betreff|reply-to|importance)\s*\*?\s*:\s*(.*)$", re.IGNORECASE)
_FROM = re.compile(r"^\s*\*?(?:from|de|von)\s*\*?\s*:\s*\S", re.IGNORECASE)
_SENT = re.compile(r"^\s*\*?(?:sent|date|enviado|envoy[ée]|fecha|gesendet)\s*\*?\s*:", re.IGNORECASE)
_WROTE = re.compile(
    r"^\s*(?:on|el|le|am)\s.{4,300}?(?:wrote|escribi[óo]|a\s+[ée]crit|schrieb)\s*:\s*$", re.IGNORECASE)
_WROTE_TAIL = (r"\s*,?\s*(?P<name>[^<>,\d][^<>,]*?)\s*(?:<[^>]*>|\[[^\]]*\])?\s*,?\s*"
               r"(?:wrote|escribi[óo]|a\s+[ée]crit|schrieb)")
# The name follows the time ("... at 4:40 PM Maria Okafor <...> wrote:"), else the year.
_WROTE_NAMES = (re.compile(r"\d{1,2}:\d{2}(?:\s*[AaPp]\.?[Mm]\.?)?" + _WROTE_TAIL),
                re.compile(r"\b\d{4}" + _WROTE_TAIL))
_CLOSING = re.compile(
    r"^\s*(?:(?:thanks|thank\s+you|thx|tks|ty|many\s+thanks|thanks\s+again|thanks\s+in\s+advance|regards"
    r"|best|best\s+regards|kind\s+regards|warm\s+regards|cheers|sincerely|respectfully|cordially|merci"
    r"|merci\s+beaucoup|cordialement|salutations|bien\s+[àa]\s+vous|gracias|saludos|saludos\s+cordiales"
    r"|atentamente|un\s+saludo|v/r|rgds|thanks\s+much|much\s+appreciated|appreciate\s+it)[\s,.!/&-]*)+$",
    re.IGNORECASE)
_SENT_FROM_DEVICE = re.compile(r"^\s*(?:sent\s+from\s+my|enviado\s+desde\s+mi|envoy[ée]\s+de\s+mon)\b",
                               re.IGNORECASE)
_DASHES = re.compile(r"^\s*(?:--|__|-)\s*$")
_MAX_DEPTH = 12


def split_sections(body: str, *, sender: str = "", sent: dt.date | None = None) -> list[Section]:
    out: list[Section] = []
    _split(body.split("\n"), sender, sent, quoted=False, out=out, depth=0)
    return out


@dataclass(slots=True)
class _Author:
    name: str
    sent: dt.date | None
    quoted: bool


def _split(lines: list[str], sender: str, sent: dt.date | None, *, quoted: bool, out: list[Section],
           depth: int) -> None:
    buf: list[str] = []
    author = _Author(sender, sent, quoted)

    def flush() -> None:
        if any(line.strip() for line in buf):
            out.append(_section(buf, author.name, author.sent, author.quoted))
        buf.clear()

    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.lstrip().startswith(">") and depth < _MAX_DEPTH:
            inner = []
            while i < n and lines[i].lstrip().startswith(">"):
                stripped = lines[i].lstrip()[1:]
                inner.append(stripped[1:] if stripped.startswith(" ") else stripped)
                i += 1
            flush()
            _split(inner, author.name, author.sent, quoted=True, out=out, depth=depth + 1)
            author.quoted = True
            continue
        found = _boundary(lines, i)
        if found is not None:
            flush()
            i, who, when = found
            if who is not None:
                author.name, author.sent = who, when
            elif not author.quoted:
                author.name, author.sent = "", None
            author.quoted = True
            continue
        buf.append(line)
        i += 1
    flush()


_BOUNDARY_HINT = re.compile(r"\s*(?:[-_=*\x1e]|\*?(?:from|de|von|on|el|le|am|begin|inicio|d[ée]but)\b)",
                            re.IGNORECASE)


def _boundary(lines: list[str], i: int) -> tuple[int, str | None, dt.date | None] | None:
    """(index after the boundary, author or None, sent date) when a quote or forward starts at i."""
    line = lines[i]
    if not _BOUNDARY_HINT.match(line):
        return None
    if line.strip() == QUOTE_MARK or _ORIGINAL.match(line) or _BEGIN_FORWARD.match(line) or (
            _RULE.match(line) and any(_FROM.match(lines[k]) for k in range(i + 1, min(len(lines), i + 3)))):
        return _after_headers(lines, i + 1)
    if _FROM.match(line) and _looks_like_sender(line) and any(
            _SENT.match(lines[k]) for k in range(i + 1, min(len(lines), i + 5))):
        return _after_headers(lines, i)
    return _attribution(lines, i)


def _attribution(lines: list[str], i: int) -> tuple[int, str | None, dt.date | None] | None:
    """An "On <date>, <name> wrote:" line, which clients wrap over up to three lines."""
    if not lines[i].strip().lower().startswith(("on ", "el ", "le ", "am ")):
        return None
    for span in (1, 2, 3):
        if i + span > len(lines):
            break
        joined = " ".join(part.strip() for part in lines[i:i + span])
        if len(joined) > 400:
            break
        if _WROTE.match(joined):
            name = next((found for found in (p.search(joined) for p in _WROTE_NAMES) if found), None)
            return i + span, _clean_name(name.group("name")) if name else "", loose_date(joined)
    return None


_PLACE_LIKE = re.compile(r",\s*[A-Z]{2}\b|\d")


def _looks_like_sender(line: str) -> bool:
    """ "From: Tom Reyes <tom@...>" starts a quoted message; "From: Dallas, TX 75207" starts a lane."""
    value = line.split(":", 1)[1]
    return "@" in value or not _PLACE_LIKE.search(value)


def _after_headers(lines: list[str], start: int) -> tuple[int, str | None, dt.date | None]:
    k, n = start, len(lines)
    while k < n and not lines[k].strip():
        k += 1
    who: str | None = None
    when: dt.date | None = None
    seen = False
    while k < n:
        match = _HEADER.match(lines[k])
        if not match:
            break
        seen = True
        key, value = match.group(1).lower(), match.group(2)
        if key in ("from", "de", "von") and who is None:
            name, addr = parseaddr(value.replace("[mailto:", "<").replace("]", ">"))
            who = _clean_name(name or value.split("<")[0]) or addr.split("@")[0]
        elif key in ("sent", "date", "enviado", "envoyé", "envoye", "fecha", "gesendet"):
            when = loose_date(value)
        k += 1
    if not seen:
        return start, None, None
    return k, who or "", when


def _clean_name(name: str) -> str:
    return " ".join(name.replace('"', " ").replace("'", " ").split())


# ----------------------------------------------------------------------------- signatures

def _section(lines: list[str], sender: str, sent: dt.date | None, quoted: bool) -> Section:
    cut = _signature_start(lines, sender)
    text = "\n".join(lines[:cut]).strip("\n")
    signature = "\n".join(lines[cut:]).strip("\n")
    return Section(text=text, signature=signature, sender=sender, sent=sent, quoted=quoted)


def _signature_start(lines: list[str], sender: str) -> int:
    names = _name_forms(sender)
    content = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if content and (_CLOSING.match(stripped) or _DASHES.match(stripped)
                        or _SENT_FROM_DEVICE.match(stripped) or _is_name_line(stripped, names)):
            return index
        if _SENT_FROM_DEVICE.match(stripped):
            return index
        content = True
    return len(lines)


def _name_forms(sender: str) -> tuple[str, ...]:
    folded = fold(sender)
    if not folded or "@" in folded:
        return ()
    words = folded.split()
    forms = [folded]
    if len(words) > 1 and len(words[0]) > 1:
        forms.append(words[0])
    return tuple(forms)


def _is_name_line(line: str, names: tuple[str, ...]) -> bool:
    if not names:
        return False
    folded = fold(line).strip(" -,.|")
    full = names[0]
    if folded in names:
        return True
    return folded.startswith(full) and folded[len(full):len(full) + 1] in (" ", "|", ",", "-")


# ----------------------------------------------------------------------------- dates in headers

_MONTHS = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
           "oct": 10, "nov": 11, "dec": 12, "ene": 1, "abr": 4, "ago": 8, "dic": 12, "janv": 1, "fév": 2,
           "fev": 2, "avr": 4, "mai": 5, "juin": 6, "juil": 7, "aoû": 8, "aou": 8, "déc": 12}
_MONTH_DAY_YEAR = re.compile(r"\b([A-Za-zéû]{3,9})\.?\s+(\d{1,2}),?\s+(\d{4})\b")
_DAY_MONTH_YEAR = re.compile(r"\b(\d{1,2})\s+(?:de\s+)?([A-Za-zéû]{3,10})\.?\s+(?:de\s+)?(\d{4})\b")
_NUMERIC = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")


def loose_date(text: str) -> dt.date | None:
    """The date in a quoted header line, in whatever shape a mail client wrote it."""
    try:
        return parsedate_to_datetime(text.strip()).date()
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    for pattern, order in ((_MONTH_DAY_YEAR, "mdy"), (_DAY_MONTH_YEAR, "dmy")):
        found = pattern.search(text)
        if found:
            first, second, year = found.groups()
            month_word, day = (first, second) if order == "mdy" else (second, first)
            month = _MONTHS.get(fold(month_word)[:4]) or _MONTHS.get(fold(month_word)[:3])
            if month:
                try:
                    return dt.date(int(year), month, int(day))
                except ValueError:
                    pass
    found = _NUMERIC.search(text)
    if found:
        try:
            return dt.date(int(found.group(3)), int(found.group(1)), int(found.group(2)))
        except ValueError:
            return None
    return None
