"""UID FETCH for the poll, with a parser for the plain response shapes the poll asks for.

imapclient parses a FETCH response with a general lexer that reads the text between literals byte
by byte through generators: ~0.04 ms a message of the polling process's CPU for the poll's two
FETCHes (sizes and headers, then bodies), about the time it takes to read them off the socket.
The poll asks for UID, RFC822.SIZE, INTERNALDATE and BODY[...] literals, and Dovecot answers in a
few flat shapes: `* 1 FETCH (UID 1 RFC822.SIZE 1294 INTERNALDATE "..." BODY[HEADER] {365}` +
literal + `)`. fetch_response_parse reads those with regular expressions and gives what
imapclient's parse_fetch_response gives; a response with anything it does not know (a nested
list, an escaped quoted string, ENVELOPE or BODYSTRUCTURE, a literal where a name should be,
lower-case names ...) goes whole to imapclient's parser, never half-read by this one
(tests/mailboxes/test_fetching.py holds the two to the same answers).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from imapclient.datetime_util import parse_to_datetime
from imapclient.fixed_offset import FixedOffset
from imapclient.imapclient import join_message_ids, seq_to_parenstr_upper
from imapclient.response_parser import parse_fetch_response

if TYPE_CHECKING:
    from imapclient import IMAPClient

FetchResponse = dict[int, dict[bytes, Any]]


def uid_fetch(client: IMAPClient, uids: Sequence[int], items: Sequence[str]) -> FetchResponse:
    """IMAPClient.fetch(uids, items) with fetch_response_parse as the parser: the same command,
    the same checks, the same answer (the requested messages only, in the order asked)."""
    if not uids:
        return {}
    imap = client._imap
    args = ["FETCH", join_message_ids(uids), seq_to_parenstr_upper(items)]
    if client.use_uid:
        args.insert(0, "UID")
    tag = imap._command(*args)
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    response = fetch_response_parse(data, normalise_times=client.normalise_times, uid_is_key=client.use_uid)
    return {uid: response[uid] for uid in uids if uid in response}


def fetch_response_parse(data: list[Any], *, normalise_times: bool = True, uid_is_key: bool = True) -> FetchResponse:
    """parse_fetch_response(data, normalise_times, uid_is_key) for imaplib's FETCH data, read
    here when every message in it has a plain shape (see the module docstring)."""
    try:
        return _plain_parse(data, normalise_times=normalise_times, uid_is_key=uid_is_key)
    except _NotPlain:
        return dict(parse_fetch_response(data, normalise_times, uid_is_key))


class _NotPlain(Exception):
    """A part of the response is not of a plain shape: the whole of it goes to imapclient."""


def _plain_parse(data: list[Any], *, normalise_times: bool, uid_is_key: bool) -> FetchResponse:
    parsed: FetchResponse = {}
    for seq, pairs in _plain_messages(data):
        # parse_fetch_response's own loop over the pairs, for the values it converts.
        msg_id = seq
        msg_data: dict[bytes, Any] = {b"SEQ": seq}
        for name, value in pairs:
            if name == b"UID":
                if not isinstance(value, int):
                    raise _NotPlain
                if uid_is_key:
                    msg_id = value
                else:
                    msg_data[name] = value
            elif name == b"INTERNALDATE":
                if value is not None and not isinstance(value, bytes):
                    raise _NotPlain
                msg_data[name] = internal_date(value, normalise_times=normalise_times)
            else:
                msg_data[name] = value
        parsed.setdefault(msg_id, {}).update(msg_data)
    return parsed


# The text of a FETCH response between its literals, as imaplib hands it over: the message
# number and "(" first; items of a name and a value; a literal's "{size}" at the end of a piece,
# its bytes being the next part of the tuple; ")" at the end of the last piece. Names in upper
# case, sections without spaces; values a number, NIL, a quoted string without backslashes, or a
# flat list of atoms (FLAGS, MODSEQ).
_NAME = rb"[A-Z][A-Z0-9.-]*(?:\[[A-Z0-9.]*\](?:<[0-9]+>)?)?"
_ATOM = rb"[^\x00-\x20()%\"\[\]{}\x7f-\xff]+"
_VALUE = rb"[0-9]+|NIL|\"[^\"\\\r\n]*\"|\((?:%s(?: %s)*)?\)" % (_ATOM, _ATOM)
_ITEM = rb"%s (?:%s)" % (_NAME, _VALUE)
_LITERAL_END = rb"(?P<name>%s) \{(?P<size>[0-9]+)\}" % _NAME
# A whole message without a literal; the piece before a first literal; between two literals;
# after the last one.
_WHOLE = re.compile(rb"(?P<seq>[0-9]+) \((?P<items>(?:%s(?: %s)*)?)\)" % (_ITEM, _ITEM))
_OPENING = re.compile(rb"(?P<seq>[0-9]+) \((?P<items>(?:%s )*)%s" % (_ITEM, _LITERAL_END))
_BETWEEN = re.compile(rb"(?P<items>(?: %s)*) %s" % (_ITEM, _LITERAL_END))
_CLOSING = re.compile(rb"(?P<items>(?: %s)*)\)" % _ITEM)
_ITEM_FINDER = re.compile(rb"(%s) (%s)" % (_NAME, _VALUE))
# imapclient makes other things of these (Envelope, BodyData) from values the shapes above refuse
# anyway; refused by name too, so that a change there cannot slip through.
_CONVERTED = frozenset((b"ENVELOPE", b"BODY", b"BODYSTRUCTURE"))

Pairs = list[tuple[bytes, Any]]


def _plain_messages(data: list[Any]) -> Iterator[tuple[int, Pairs]]:
    """Each message's number and (name, value) pairs in order; _NotPlain at the first part of
    the response that is not of a plain shape."""
    parts = iter(data)
    for part in parts:
        if isinstance(part, bytes):
            whole = _matched(_WHOLE, part)
            yield int(whole["seq"]), _items(whole["items"])
            continue
        head, literal = _literal(part)
        opening = _matched(_OPENING, head)
        pairs = _items(opening["items"])
        pairs.append(_literal_pair(opening, literal))
        for rest in parts:  # the rest of this message: more literals, then the closing piece
            if rest == b")":  # the usual closing piece: nothing after the literal
                break
            if isinstance(rest, bytes):
                pairs += _items(_matched(_CLOSING, rest)["items"])
                break
            head, literal = _literal(rest)
            between = _matched(_BETWEEN, head)
            pairs += _items(between["items"])
            pairs.append(_literal_pair(between, literal))
        else:
            raise _NotPlain  # the response ends inside a message
        yield int(opening["seq"]), pairs


def _matched(shape: re.Pattern[bytes], text: bytes) -> re.Match[bytes]:
    match = shape.fullmatch(text)
    if match is None:
        raise _NotPlain
    return match


def _literal(part: Any) -> tuple[bytes, bytes]:
    """imaplib's (text before a literal, the literal)."""
    if not (isinstance(part, tuple) and len(part) == 2 and isinstance(part[0], bytes) and isinstance(part[1], bytes)):
        raise _NotPlain
    return part


def _literal_pair(match: re.Match[bytes], literal: bytes) -> tuple[bytes, bytes]:
    name = match["name"]
    if name in _CONVERTED or len(literal) != int(match["size"]):  # a wrong size: imapclient's error
        raise _NotPlain
    return name, literal


def _items(text: bytes) -> Pairs:
    """The (name, value) pairs of a run of items one of the shapes matched, values as imapclient's
    atom() makes them."""
    pairs: Pairs = []
    if not text:
        return pairs
    for item in _ITEM_FINDER.finditer(text):
        name, value = item.group(1), item.group(2)
        if name in _CONVERTED:
            raise _NotPlain
        pairs.append((name, _value(value)))
    return pairs


def _value(token: bytes) -> Any:
    first = token[:1]
    if first == b'"':
        return token[1:-1]
    if first == b"(":
        return tuple(_atom(word) for word in token[1:-1].split(b" ")) if len(token) > 2 else ()
    return _atom(token)


def _atom(token: bytes) -> Any:
    """imapclient's atom() for a token that is not a list, a literal or a quoted string."""
    if token == b"NIL":
        return None
    if token.isdigit() and (token[:1] != b"0" or len(token) == 1):
        return int(token)  # "0123" stays bytes, as imapclient keeps it
    return token


# RFC 3501's date-time, as Dovecot writes it: "21-Nov-2026 16:45:11 +0000" (the day may be
# space-padded).
_MONTHS = {name: number for number, name in enumerate(
    (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"), start=1)}
_INTERNAL_DATE = re.compile(
    rb" ?([0-9]{1,2})-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-([0-9]{4})"
    rb" ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([01][0-9]|2[0-3])([0-5][0-9])")


def internal_date(value: bytes | None, *, normalise_times: bool) -> datetime | None:
    """imapclient's INTERNALDATE value (_convert_INTERNALDATE: parse_to_datetime, None when it
    cannot): read here for the usual shape, aware, with imapclient's FixedOffset; the rest, "-0000"
    (no zone: naive there) and local times (normalise_times) left to imapclient."""
    if value is None:
        return None
    simple = _INTERNAL_DATE.fullmatch(value) if not normalise_times else None
    if simple is not None:
        day, month, year, hour, minute, second, sign, tz_hours, tz_minutes = simple.groups()
        offset = int(tz_hours) * 60 + int(tz_minutes)
        if offset or sign == b"+":
            try:
                return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second),
                                tzinfo=_fixed_offset(-offset if sign == b"-" else offset))
            except ValueError:  # 31-Feb, 24:00:00 ...: as imapclient decides
                pass
    try:
        return parse_to_datetime(value, normalise=normalise_times)
    except ValueError:
        return None


@lru_cache(maxsize=64)
def _fixed_offset(minutes: int) -> FixedOffset:
    # parse_to_datetime's FixedOffset(seconds / 60): a float of minutes, whole here.
    return FixedOffset(minutes * 60 / 60)
