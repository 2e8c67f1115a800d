"""mailboxes.fetching: the poll's FETCH parser gives what imapclient's parser gives, on Dovecot's
own responses and on shapes it must leave to imapclient."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from imapclient.datetime_util import parse_to_datetime
from imapclient.exceptions import ProtocolError
from imapclient.response_parser import parse_fetch_response

from mailboxes import fetching
from mailboxes.fetching import fetch_response_parse, internal_date, uid_fetch

from .reading_support import append, imap, message, new_user

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "messages"
# The poll's two FETCHes (reading.FolderReader.store), then others the parser should read too.
POLL_FETCHES = (["RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[HEADER]"], ["BODY.PEEK[]"])
OTHER_FETCHES = (
    ["FLAGS", "RFC822.SIZE", "MODSEQ"],
    ["INTERNALDATE", "BODY.PEEK[HEADER]", "FLAGS", "BODY.PEEK[TEXT]"],  # two literals a message
    ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"],  # a section with a space: imapclient's
    ["ENVELOPE"],  # imapclient's
)


def comparable(value: Any) -> Any:
    """A value with its datetimes as (wall time, zone name, tzinfo type): == on aware datetimes
    compares instants only, and imapclient may give an offset utcoffset() refuses ("+2400")."""
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, tuple | list):  # with its type: imapclient's BodyData is a tuple
        return type(value), [comparable(item) for item in value]
    if isinstance(value, datetime):
        return (value.replace(tzinfo=None), value.tzname(), type(value.tzinfo))
    if hasattr(value, "__dict__"):  # imapclient's Envelope, Address
        return (type(value), comparable(vars(value)))
    return value


def read_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, a response handed on to imapclient's parser fails the test."""
    def handed_on(*args: Any) -> None:
        raise AssertionError(f"handed on to imapclient: {args[0]!r:.300}")
    monkeypatch.setattr(fetching, "parse_fetch_response", handed_on)


def imapclients(data: list[Any], *, normalise_times: bool = False) -> Any:
    return comparable(dict(parse_fetch_response(data, normalise_times, True)))


def ours(data: list[Any], *, normalise_times: bool = False) -> Any:
    return comparable(fetch_response_parse(data, normalise_times=normalise_times))


def raw_fetch(client: Any, uids: list[int], items: list[str]) -> list[Any]:
    """imaplib's data for a UID FETCH: what both parsers are given."""
    imap_ = client._imap
    tag = imap_._command("UID", "FETCH", ",".join(map(str, uids)), "(" + " ".join(items) + ")")
    typ, data = imap_._command_complete("FETCH", tag)
    assert typ == "OK", data
    return list(imap_._untagged_response(typ, data, "FETCH")[1])


@pytest.fixture(scope="module")
def folder(dovecot: Any) -> str:
    """The corpus and a few awkward messages (bare LF, 8-bit headers, no headers, flags set) in a
    Dovecot INBOX."""
    address = new_user(dovecot)
    for path in sorted(CORPUS.glob("*.eml")):
        append(dovecot, address, path.read_bytes())
    append(dovecot, address, b"Subject: bare LF (x) \"q\"\n\nbody {3}\n)\n")
    append(dovecot, address, "Subject: Grüße\r\nFrom: \"A (b)\" <a@b.test>\r\n\r\nÄ\r\n".encode())
    append(dovecot, address, b"\r\nno headers at all\r\n")
    append(dovecot, address, message("flagged"), flags=(b"\\Seen", b"$Forwarded", b"\\Flagged"))
    return address


def test_it_reads_dovecots_responses_to_the_poll_as_imapclient_does_without_imapclient(
        dovecot: Any, folder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with imap(dovecot, folder) as client:
        client.enable("CONDSTORE")
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search("ALL"))
        assert len(uids) == 94
        for items in POLL_FETCHES:
            data = raw_fetch(client, uids, items)
            expected = imapclients(data)
            with monkeypatch.context() as patch:
                read_here(patch)
                assert ours(data) == expected


def test_it_reads_other_fetches_as_imapclient_does(dovecot: Any, folder: str) -> None:
    with imap(dovecot, folder) as client:
        client.enable("CONDSTORE")
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search("ALL"))
        for items in OTHER_FETCHES:
            data = raw_fetch(client, uids, items)
            assert ours(data) == imapclients(data), items
            assert ours(data, normalise_times=True) == imapclients(data, normalise_times=True), items


def test_it_answers_as_imapclients_fetch(dovecot: Any, folder: str) -> None:
    with imap(dovecot, folder) as client:
        client.normalise_times = False
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search("ALL"))
        asked = [uids[5], uids[0], 999_999, uids[-1]]  # out of order, one that does not exist
        for items in (*POLL_FETCHES, *OTHER_FETCHES):
            ours_ = uid_fetch(client, asked, items)
            theirs = client.fetch(asked, items)
            assert comparable(ours_) == comparable(theirs)
            assert list(ours_) == list(theirs)
        assert uid_fetch(client, [], ["BODY.PEEK[]"]) == {}


# imaplib's data for FETCH responses: a line without a literal is bytes; a literal is a tuple of
# the text before it (ending "{size}") and its bytes, the text after it the next element.
TRICKY_PLAIN = {
    "literal holding parens, quotes, CRLF, a literal's size": [
        (b'1 (UID 7 RFC822.SIZE 40 BODY[] {24}', b'a (b) "c\\" {5}\r\n)\r\n* 2 F'), b")"],
    "NIL values": [b'1 (UID 7 INTERNALDATE NIL BODY[HEADER] NIL RFC822.SIZE 0)'],
    "literal first, the UID after it": [(b'3 (BODY[] {2}', b'hi'), b' UID 9 FLAGS (\\Seen $Label NIL 12 012))'],
    "two literals, items between": [
        (b'1 (UID 4 BODY[HEADER] {3}', b'a\r\n'), (b' FLAGS () BODY[TEXT]<0> {1}', b'b'), b' MODSEQ (77))'],
    "the same UID twice (an unsolicited FLAGS)": [
        b'1 (UID 4 FLAGS (\\Seen))', (b'1 (UID 4 BODY[] {1}', b'x'), b")"],
    "a message without UID (unsolicited, by sequence number)": [
        b'5 (FLAGS (\\Deleted))', (b'1 (UID 4 BODY[] {1}', b'x'), b")"],
    "leading zeros, an empty literal": [(b'01 (UID 4 RFC822.SIZE 0123 BODY[] {0}', b''), b")"],
    "quoted strings": [b'1 (UID 4 X-A "NIL" X-B "12" X-C "" X-D "a (b) c")'],
    "dates": [
        b'1 (UID 1 INTERNALDATE "21-Nov-2026 16:45:11 +0000")',
        b'2 (UID 2 INTERNALDATE " 1-Feb-2026 00:00:00 -0530")',
        b'3 (UID 3 INTERNALDATE "29-Feb-2024 23:59:59 +1400")',
        b'4 (UID 4 INTERNALDATE "21-Nov-2026 16:45:11 -0000")',
        b'5 (UID 5 INTERNALDATE "31-Feb-2026 10:00:00 +0100")',
        b'6 (UID 6 INTERNALDATE "21-Nov-2026 24:00:00 +0100")',
        b'7 (UID 7 INTERNALDATE "not a date")',
        b'8 (UID 8 INTERNALDATE "21-Nov-2026 16:45:11 +2400")',
    ],
}
TRICKY_HANDED_ON = {
    "a quoted string with escapes": [b'1 (UID 4 X-A "a \\"b\\" \\\\ c")'],
    "lower-case names": [b'1 (uid 4 rfc822.size 10)'],
    "two spaces": [b'1 (UID 4  RFC822.SIZE 10)'],
    "a nested list": [b'1 (UID 4 X-A (a (b)))'],
    "a bare atom value": [b'1 (UID 4 X-A abc)'],
    "a section with a space": [(b'1 (UID 4 BODY[HEADER.FIELDS (SUBJECT)] {3}', b'a\r\n'), b")"],
    "ENVELOPE": [b'1 (UID 4 ENVELOPE ("d" "s" NIL NIL NIL NIL NIL NIL NIL "<m@x>"))'],
    "BODYSTRUCTURE": [b'1 (UID 4 BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 3 1 NIL NIL NIL NIL))'],
    "BODY (structure) without a section": [b'1 (UID 4 BODY ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 3 1))'],
    "BODY (structure) of atoms only": [b'1 (UID 4 BODY (TEXT PLAIN NIL NIL NIL 7BIT 3 1))'],
    "UID 0-padded": [b'1 (UID 04 RFC822.SIZE 1)'],
    "no response": [None],
}
TRICKY_ERRORS = {
    "a literal shorter than announced": [(b'1 (UID 4 BODY[] {5}', b'abc'), b")"],
    "UID NIL": [b'1 (UID NIL)'],
    "an uneven number of items": [b'1 (UID 4 FLAGS)'],
    "no closing piece": [(b'1 (UID 4 BODY[] {1}', b'x')],
}


@pytest.mark.parametrize("data", TRICKY_PLAIN.values(), ids=TRICKY_PLAIN.keys())
def test_it_reads_plain_shapes_itself_as_imapclient_does(data: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    expected = imapclients(data), imapclients(data, normalise_times=True)
    read_here(monkeypatch)
    assert (ours(data), ours(data, normalise_times=True)) == expected


@pytest.mark.parametrize("data", TRICKY_HANDED_ON.values(), ids=TRICKY_HANDED_ON.keys())
def test_it_hands_any_other_shape_whole_to_imapclient(data: list[Any]) -> None:
    assert ours(data) == imapclients(data)


@pytest.mark.parametrize("data", TRICKY_ERRORS.values(), ids=TRICKY_ERRORS.keys())
def test_it_fails_where_imapclient_fails(data: list[Any]) -> None:
    with pytest.raises(ProtocolError):
        parse_fetch_response(data, False, True)
    with pytest.raises(ProtocolError):
        fetch_response_parse(data, normalise_times=False)


@pytest.mark.parametrize("text", [
    b"21-Nov-2026 16:45:11 +0000", b" 1-Jan-2026 00:00:00 +0100", b"01-Jan-2026 00:00:00 -1159",
    b"29-Feb-2024 12:00:00 +0530", b"29-Feb-2025 12:00:00 +0530", b"21-Nov-2026 16:45:11 -0000",
    b"21-Nov-2026 16:45:60 +0000", b"21-Nov-2026 16:45:11 +0099", b"21-Nov-26 16:45:11 +0000",
    b"21-Nov-2026 16:45 +0000", b"Sat, 21 Nov 2026 16:45:11 +0000", b"",
])
def test_it_reads_internaldate_as_imapclient_does(text: bytes) -> None:
    for normalise in (False, True):
        try:
            expected = parse_to_datetime(text, normalise=normalise)
        except ValueError:
            expected = None
        assert comparable(internal_date(text, normalise_times=normalise)) == comparable(expected)
