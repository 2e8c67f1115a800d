"""Build small RFC 5322 messages for the classifier tests."""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Sequence

DEFAULT_DATE = "Mon, 09 Mar 2026 08:42:00 -0500"   # a Monday


def mail(body: str = "", *, subject: str = "Load", sender: str = "Pat Doe <pat@shipper.example>",
         date: str | None = DEFAULT_DATE, headers: dict[str, str] | None = None, html: bool = False,
         attachments: Sequence[tuple[str, str, bytes]] = (), charset: str = "utf-8") -> bytes:
    """A message with `body` (dedented) and optional (filename, content type, payload) attachments."""
    text = textwrap.dedent(body).lstrip("\n")
    lines = [f"From: {sender}", "To: Dispatch <dispatch@broker.example>", f"Subject: {subject}"]
    if date:
        lines.append(f"Date: {date}")
    lines.append("Message-ID: <test.1@shipper.example>")
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    lines.append("MIME-Version: 1.0")
    subtype = "html" if html else "plain"
    if not attachments:
        lines += [f'Content-Type: text/{subtype}; charset="{charset}"', "Content-Transfer-Encoding: 8bit", "",
                  text]
        return "\r\n".join(lines).encode(charset)
    boundary = "b1_test_boundary"
    lines += [f'Content-Type: multipart/mixed; boundary="{boundary}"', "", f"--{boundary}",
              f'Content-Type: text/{subtype}; charset="{charset}"', "Content-Transfer-Encoding: 8bit", "", text]
    for filename, ctype, payload in attachments:
        lines += [f"--{boundary}", f"Content-Type: {ctype}", "Content-Transfer-Encoding: base64",
                  f'Content-Disposition: attachment; filename="{filename}"', ""]
        encoded = base64.encodebytes(payload).decode("ascii")
        lines.append(encoded)
    lines.append(f"--{boundary}--")
    return "\r\n".join(lines).encode(charset)


def simple_pdf(lines: list[str], title: str = "") -> bytes:
    """A one-page uncompressed PDF showing `lines`."""
    def esc(value: str) -> str:
        return value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 11 Tf", "14 TL", "54 740 Td"] + [f"({esc(line)}) Tj T*" for line in lines] + ["ET"]
    stream = ("\n".join(ops) + "\n").encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
        b"<< /Title (" + esc(title).encode("latin-1") + b") >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, len(objects), xref)
    return bytes(out)
