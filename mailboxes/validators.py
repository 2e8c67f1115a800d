"""Validation of sending-policy values, shared by forms, services and the model."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

MAX_PATTERN_LENGTH = 500
# A group that contains a quantifier and is itself quantified - (a+)+, (x*)*, (a|aa){2,} - is what
# makes a backtracking engine (Python's re has no timeout) take exponential time. Refused up front.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*(?:[+*]|\{\d*,\d*\})(?:[^()\\]|\\.)*\)\s*(?:[+*]|\{\d*,\d*\})")
_QUANTIFIED_ALTERNATION = re.compile(r"\((?:[^()\\]|\\.)*\|(?:[^()\\]|\\.)*\)\s*(?:[+*]|\{\d*,\d*\})")
_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")


def recipient_exclude_regex_validate(pattern: str) -> None:
    """Raise ValidationError unless pattern is a safe regular expression (empty: no exclusion)."""
    if not pattern:
        return
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValidationError(f"The pattern is longer than {MAX_PATTERN_LENGTH} characters.")
    if any(c in pattern for c in "\r\n\x00"):
        raise ValidationError("The pattern must be one line.")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValidationError(f"Not a valid regular expression: {exc}.") from None
    if _NESTED_QUANTIFIER.search(pattern) or _QUANTIFIED_ALTERNATION.search(pattern):
        raise ValidationError(
            "The pattern repeats a group that itself repeats (like (a+)+); such patterns can take "
            "exponential time. Write it without the nested repetition."
        )
    if _BACKREFERENCE.search(pattern):
        raise ValidationError("Back-references are not allowed in the exclude pattern.")
