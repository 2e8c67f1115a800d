"""What kind of freight document an attachment is: from its file name, else from its content.

A telling name ("BOL_88123.pdf", "POD-1061877.pdf", "Harborline_RC_SHP105988.pdf") decides at
once and costs nothing. A generic one ("scan_20260612.pdf", "document.pdf") is decided by the
document's title and first lines. Those are first looked for the cheap way - the /Title entry
and the strings that plain content streams show - and read with pypdf when that finds no text
(fonts with their own encodings, object streams, encryption): pypdf costs milliseconds a file,
the scan microseconds.
"""

from __future__ import annotations

import io
import logging
import re
import zlib
from dataclasses import dataclass, field

KINDS = ("bol", "pod", "invoice", "rate_confirmation", "packing_list", "customs", "other")
_PDF_PAGES = 2
_TEXT_LIMIT = 20_000

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    kind: str
    content_type: str
    size: int
    how: str = field(default="", compare=False)
    payload: bytes = field(default=b"", repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        return {"filename": self.filename, "kind": self.kind, "content_type": self.content_type,
                "size": self.size}


# Order matters: a "commercial invoice" is a customs document, a "signed POD" is not a BOL.
_NAME_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in (
        ("customs", r"\b(?:usmca|cusma|t-?mec|nafta|coo|cert(?:ificate)?\s*of\s*origin|certificado\s+de\s+origen"
                    r"|cci|customs|commercial\s*invoice|pedimento|paps|pars|7501|3461|b3|aci|ace\s*manifest"
                    r"|entry\s*summary|carta\s*porte|douane|aduana)\b"),
        ("rate_confirmation", r"\b(?:rc|rate\s*con(?:f(?:irmation)?)?|ratecon|carrier\s*confirmation"
                              r"|load\s*confirmation|confirmaci[oó]n\s+de\s+tarifa|confirmation\s+de\s+tarif)\b"),
        ("pod", r"\b(?:pod|proof\s*of\s*delivery|delivery\s*receipt|signed\s*delivery|comprobante\s+de\s+entrega"
                r"|preuve\s+de\s+livraison)\b"),
        ("bol", r"\b(?:bol|bill\s*of\s*lading|b\s*/\s*l|mbol|hbol|lading|conocimiento\s+de\s+embarque"
                r"|connaissement)\b"),
        ("packing_list", r"\b(?:packing\s*list|packinglist|packing\s*slip|pack\s*list|packlist|lista\s+de\s+empaque"
                         r"|liste\s+de\s+colisage)\b"),
        ("invoice", r"\b(?:inv|invoice|invoices|factura|facture|freight\s*bill)\b"),
    ))
# A document's own title outranks anything its body mentions (a POD lists the BOL number).
_TITLE_RULES = _NAME_RULES
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def name_words(filename: str) -> str:
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    stem = _CAMEL.sub(" ", stem)
    return " ".join(re.split(r"[\W_]+", stem)).strip()


def kind_from_text(text: str) -> str | None:
    for kind, pattern in _NAME_RULES:
        if pattern.search(text):
            return kind
    return None


def classify_attachment(filename: str, content_type: str, payload: bytes) -> Attachment:
    kind = kind_from_text(name_words(filename))
    how = "name"
    if kind is None:
        kind, how = _kind_from_content(filename, content_type, payload)
    return Attachment(filename=filename, kind=kind, content_type=content_type, size=len(payload), how=how,
                      payload=payload)


def _kind_from_content(filename: str, content_type: str, payload: bytes) -> tuple[str, str]:
    text = ""
    title = ""
    if content_type == "application/pdf" or filename.lower().endswith(".pdf") or payload.startswith(b"%PDF"):
        title, text = quick_pdf_text(payload)
        if not text.strip() and payload.startswith(b"%PDF") and b"%%EOF" in payload[-2048:]:
            title, text = pdf_text(payload)
    elif content_type.startswith("text/") or filename.lower().endswith((".txt", ".csv")):
        text = payload[:_TEXT_LIMIT].decode("utf-8", "replace")
    if not text and not title:
        return "other", "no readable text"
    head = "\n".join([title, *[line for line in text.splitlines() if line.strip()][:2]])
    kind = kind_from_text(head)
    if kind:
        return kind, "title"
    kind = _kind_by_count(text)
    return (kind, "content") if kind else ("other", "content")


def _kind_by_count(text: str) -> str | None:
    best: tuple[int, str] | None = None
    for kind, pattern in _NAME_RULES:
        count = len(pattern.findall(text))
        if count >= 2 and (best is None or count > best[0]):
            best = (count, kind)
    return best[1] if best else None


def pdf_text(payload: bytes) -> tuple[str, str]:
    """(title, text of the first pages) of a PDF; empty strings when it cannot be read."""
    try:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(payload), strict=False)
        title = ""
        try:
            meta = reader.metadata
            title = str(meta.title or "") if meta else ""
        except Exception:
            title = ""
        parts = []
        for page in reader.pages[:_PDF_PAGES]:
            parts.append(page.extract_text() or "")
        return title, "\n".join(parts)[:_TEXT_LIMIT]
    except Exception as exc:
        log.debug("unreadable PDF: %s", type(exc).__name__)
        return "", ""


_PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\n?endstream", re.DOTALL)
_PDF_SHOWN = re.compile(rb"\(((?:[^()\\]|\\.)*)\)\s*(?:Tj|')|\[((?:[^\]\\]|\\.)*)\]\s*TJ")
_PDF_STRING = re.compile(rb"\(((?:[^()\\]|\\.)*)\)")
_PDF_TITLE = re.compile(rb"/Title\s*\(((?:[^()\\]|\\.)*)\)")
_PDF_ESCAPE = re.compile(rb"\\([nrtbf()\\]|[0-7]{1,3})")
_PDF_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f", b"(": b"(", b")": b")",
                b"\\": b"\\"}
_QUICK_STREAMS = 8
_QUICK_INFLATE_LIMIT = 1 << 20


def quick_pdf_text(payload: bytes) -> tuple[str, str]:
    """(title, text) from a PDF's /Title and the literal strings its content streams show, one line
    per text-showing operator; empty text when the content is not plain enough to read this way."""
    title_match = _PDF_TITLE.search(payload)
    title = _pdf_string(title_match.group(1)) if title_match else ""
    lines: list[str] = []
    for count, stream in enumerate(_PDF_STREAM.finditer(payload)):
        if count >= _QUICK_STREAMS:
            break
        data = stream.group(1)
        if data[:1] == b"x":
            try:
                data = zlib.decompressobj().decompress(data, _QUICK_INFLATE_LIMIT)
            except zlib.error:
                continue
        if b"BT" not in data:
            continue
        for shown in _PDF_SHOWN.finditer(data):
            if shown.group(1) is not None:
                lines.append(_pdf_string(shown.group(1)))
            else:
                lines.append("".join(_pdf_string(part) for part in _PDF_STRING.findall(shown.group(2))))
    text = "\n".join(line for line in lines if line.strip())
    if text and (sum(ch.isprintable() or ch == "\n" for ch in text) < 0.9 * len(text)
                 or not any(ch.isalpha() for ch in text)):
        text = ""  # glyph ids of an embedded font, not readable text
    return title, text[:_TEXT_LIMIT]


def _pdf_string(raw: bytes) -> str:
    def unescape(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        return _PDF_ESCAPES.get(code) or bytes([int(code, 8) & 0xFF])

    return _PDF_ESCAPE.sub(unescape, raw).decode("cp1252", errors="replace")
