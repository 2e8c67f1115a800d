"""Small PDFs for the tests, written byte by byte (no PDF library needed to make them)."""

from __future__ import annotations

import io
import zlib


def _escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


def _assemble(objects: list[bytes]) -> bytes:
    """A PDF file from its objects (object n is objects[n-1]; 1 is the catalog) with a correct xref."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _stream(content: bytes, *, compress: bool) -> bytes:
    if compress:
        data = zlib.compress(content, 9)
        return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    return b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"


def make_pdf(*pages: str, compress: bool = False) -> bytes:
    """A PDF with one page per argument; each line of a page's text is shown with Helvetica."""
    pages = pages or ("",)
    count = len(pages)
    # 1 catalog, 2 pages, 3 font, then (page, content) pairs.
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for index, text in enumerate(pages):
        lines = [b"BT /F1 11 Tf 14 TL 50 780 Td"]
        for line in text.splitlines():
            lines.append(b"(" + _escape(line) + b") Tj T*")
        lines.append(b"ET")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % (5 + 2 * index)
        )
        objects.append(_stream(b"\n".join(lines), compress=compress))
    return _assemble(objects)


def bomb_pdf(inflated_bytes: int = 64 * 1024 * 1024) -> bytes:
    """A one-page PDF whose content stream is a few hundred KB of deflate that inflates to
    `inflated_bytes` of spaces: a decompression bomb."""
    compressor = zlib.compressobj(9)
    chunk = b" " * (1024 * 1024)
    data = bytearray()
    for _ in range(inflated_bytes // len(chunk)):
        data += compressor.compress(chunk)
    data += compressor.flush()
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + bytes(data) + b"\nendstream"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
        b"/Contents 5 0 R >>",
        stream,
    ]
    return _assemble(objects)


def broken_pdf() -> bytes:
    """Starts like a PDF, then is nothing of the sort (a truncated download)."""
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\n" + b"\x00\x17garbage" * 40


def encrypted_pdf(text: str, password: str = "s3cret") -> bytes:
    """A PDF that needs a password to be opened (pypdf, already a dependency, encrypts it)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(text))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
