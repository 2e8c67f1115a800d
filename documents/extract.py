"""Text out of a document's bytes: the PDF text layer, plain text and CSV; images and anything
else are kept without text (no OCR).

Attachments come from strangers, so every read is bounded: a PDF is read with pypdf under a
configuration that caps what any stream may inflate to (a decompression bomb stops there), only
the first pages are read, the text kept is capped, and the read stops at a deadline. What cannot
be read raises ExtractionError with a reason a person understands; nothing else escapes.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_TEXT_TYPES = ("text/plain", "text/csv", "text/tab-separated-values", "application/csv")
_TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".text")


class ExtractionError(Exception):
    """The document cannot be read; str() is the reason, fit to show to staff."""


@dataclass(frozen=True)
class Limits:
    max_pages: int = 50
    max_chars: int = 200_000
    max_inflated: int = 32 * 1024 * 1024
    seconds: float = 30.0


@dataclass(frozen=True)
class Extraction:
    text: str
    title: str = ""
    method: str = "none"  # "pdf", "text", "none" (images and other files: kept as they are)
    pages: int = 0
    truncated: bool = False


def is_pdf(*, filename: str, content_type: str, payload: bytes) -> bool:
    return (content_type.lower() == "application/pdf" or filename.lower().endswith(".pdf")
            or payload[:1024].lstrip().startswith(b"%PDF-"))


def is_text(*, filename: str, content_type: str) -> bool:
    return content_type.lower() in _TEXT_TYPES or filename.lower().endswith(_TEXT_SUFFIXES)


def extract_text(*, payload: bytes, filename: str, content_type: str, limits: Limits | None = None) -> Extraction:
    limits = limits or Limits()
    if is_pdf(filename=filename, content_type=content_type, payload=payload):
        return pdf_extract(payload, limits)
    if is_text(filename=filename, content_type=content_type):
        return text_extract(payload, limits, csv_like=filename.lower().endswith((".csv", ".tsv"))
                            or "csv" in content_type.lower() or "tab-separated" in content_type.lower())
    return Extraction(text="")


# ----------------------------------------------------------------------------- plain text and CSV


def decode(payload: bytes) -> str:
    """UTF-8 (with or without a BOM), else UTF-16 with a BOM, else Windows-1252 (never fails)."""
    if payload.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return payload.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return payload.decode("utf-8-sig")
    except UnicodeDecodeError:
        return payload.decode("cp1252", errors="replace")


def text_extract(payload: bytes, limits: Limits, *, csv_like: bool = False) -> Extraction:
    # Decode no more than the text we keep can need (4 bytes per character at most).
    head = payload[: limits.max_chars * 4]
    text = decode(head).replace("\x00", "")
    truncated = len(head) < len(payload) or len(text) > limits.max_chars
    if csv_like:
        text = _csv_text(text)
    return Extraction(text=text[: limits.max_chars], method="text", truncated=truncated)


def _csv_text(text: str) -> str:
    """CSV cells one row per line, tab-separated: refs in quoted cells become plain words."""
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = csv.reader(io.StringIO(text), dialect)
        return "\n".join("\t".join(cell.strip() for cell in row) for row in rows)
    except csv.Error:
        return text  # not really CSV: the text as it is still has the refs


# ----------------------------------------------------------------------------- PDF


def pdf_extract(payload: bytes, limits: Limits) -> Extraction:
    if not payload[:1024].lstrip().startswith(b"%PDF-"):
        raise ExtractionError("malformed PDF: the file does not start with a PDF header")
    import pypdf
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    deadline = time.monotonic() + limits.seconds
    try:
        with pypdf.apply_configuration(**_pdf_configuration(limits)):
            reader = pypdf.PdfReader(io.BytesIO(payload), strict=False)
            if reader.is_encrypted and not _decrypts_without_password(reader):
                raise ExtractionError("encrypted PDF: it needs a password to be read")
            title = _title(reader)
            total = len(reader.pages)
            parts: list[str] = []
            size = 0
            truncated = total > limits.max_pages
            for index in range(min(total, limits.max_pages)):
                if time.monotonic() > deadline:
                    raise ExtractionError(f"the PDF took longer than {limits.seconds:g} s to read")
                page_text = reader.pages[index].extract_text() or ""
                parts.append(page_text)
                size += len(page_text) + 1
                if size > limits.max_chars:
                    truncated = True
                    break
    except ExtractionError:
        raise
    except LimitReachedError as exc:
        raise ExtractionError(f"PDF refused as a decompression bomb: {_short(exc)}") from None
    except FileNotDecryptedError:
        raise ExtractionError("encrypted PDF: it needs a password to be read") from None
    except MemoryError:
        raise ExtractionError("the PDF needs too much memory to read") from None
    except RecursionError:
        raise ExtractionError("malformed PDF: its structure nests too deeply") from None
    except Exception as exc:  # pypdf raises anything on hostile input: all of it is "malformed"
        log.info("unreadable PDF: %s", type(exc).__name__)
        raise ExtractionError(f"malformed PDF: {_short(exc) or type(exc).__name__}") from None
    text = "\n".join(parts).replace("\x00", "")
    return Extraction(text=text[: limits.max_chars], title=title, method="pdf", pages=total, truncated=truncated)


def _pdf_configuration(limits: Limits) -> dict[str, Any]:
    inflated = limits.max_inflated
    return {
        "disable_legacy_handling": True,
        "maximum_declared_stream_length": inflated,
        "array_based_stream_maximum_output_length": inflated,
        "zlib_maximum_output_length": inflated,
        "zlib_maximum_recovery_input_length": min(inflated, 5_000_000),
        "lzw_maximum_output_length": inflated,
        "run_length_maximum_output_length": inflated,
        "jbig2_maximum_output_length": inflated,
        "brotli_maximum_output_length": inflated,
        "image_maximum_buffer_size": inflated,
        "stream_decoding_work_maximum_length": inflated * 4,
        "page_tree_maximum_entries": max(limits.max_pages * 20, 10_000),
        "xform_maximum_invocations_per_extraction": 500,
        "jbig2dec_binary": None,  # never run an external decoder on a stranger's file
    }


def _decrypts_without_password(reader: object) -> bool:
    """Many PDFs are "encrypted" only to restrict printing or editing: the empty password opens them."""
    try:
        return bool(reader.decrypt(""))  # type: ignore[attr-defined]
    except Exception:  # an unsupported cipher is as good as a password
        return False


def _title(reader: object) -> str:
    try:
        meta = reader.metadata  # type: ignore[attr-defined]
        return str(meta.title or "")[:500] if meta else ""
    except Exception:  # broken metadata must not lose the text
        return ""


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
