"""The readable start of a message for the timeline: the new text, without quoted history."""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

MAX_CHARS = 2000
# Where a reply's quoted history or a forwarded message begins.
_HISTORY = re.compile(
    r"^(>|On .{0,200} wrote:\s*$|-{2,}\s*(Original Message|Forwarded message)\s*-{2,}|From: .+|_{10,})",
    re.IGNORECASE,
)


def message_excerpt(raw: bytes | memoryview | None) -> str:
    """Up to MAX_CHARS of the message's own text (never raises: "" when it cannot be read)."""
    if not raw:
        return ""
    try:
        from classifier.parse import message_body

        body = message_body(bytes(raw))
    except Exception:  # a message we cannot read still gets filed, just without an excerpt
        logger.info("excerpt: message could not be parsed", exc_info=True)
        return ""
    kept: list[str] = []
    for line in body.splitlines():
        if _HISTORY.match(line.strip()) and any(k.strip() for k in kept):
            break
        kept.append(line.rstrip())
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return text[:MAX_CHARS] + ("…" if len(text) > MAX_CHARS else "")
