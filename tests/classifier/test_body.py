"""New text, quoted and forwarded messages, and the signatures cut off each."""

from __future__ import annotations

import datetime as dt
import textwrap

from classifier.body import loose_date, split_sections


def sections(body: str, sender: str = "Anita Desai") -> list:
    return split_sections(textwrap.dedent(body).strip("\n"), sender=sender)


def test_it_cuts_the_signature_at_the_closing_words() -> None:
    (only,) = sections("""
        Please quote Dallas, TX 75207 to Atlanta, GA 30336.

        Thanks,
        Karen Whitfield
        5215 N O'Connor Blvd, Irving, TX 75039
        """, sender="Karen Whitfield")
    assert only.text == "Please quote Dallas, TX 75207 to Atlanta, GA 30336."
    assert "Irving" in only.signature


def test_it_cuts_the_signature_at_the_senders_name_when_there_are_no_closing_words() -> None:
    (only,) = sections("""
        rate please, 77029 to 70117, van, 30k.

        Paul Nguyen
        Gulf Polymers | 1000 Main St, Houston, TX 77002
        """, sender="Paul Nguyen")
    assert "Houston" not in only.text


def test_it_does_not_cut_at_a_sentence_that_starts_with_thanks() -> None:
    (only,) = sections("Thanks Janelle, that works.\nPlease keep me posted.", sender="Bob Turner")
    assert only.text.endswith("Please keep me posted.")


def test_it_separates_outlook_quoted_history_with_its_authors() -> None:
    found = sections("""
        Ready Wednesday. Please send the rate.

        Anita

        -----Original Message-----
        From: Tom Reyes <tom.reyes@broker.example>
        Sent: Friday, September 11, 2026 4:12 PM
        To: Anita Desai <adesai@x.example>
        Subject: RE: Rate request

        How many pallets?

        Tom Reyes | Account Manager
        455 Commerce Way, Columbus, OH 43215
        """)
    assert [(s.quoted, s.sender) for s in found] == [(False, "Anita Desai"), (True, "Tom Reyes")]
    assert found[1].text == "How many pallets?"
    assert found[1].sent == dt.date(2026, 9, 11)


def test_it_separates_gmail_quotes_and_strips_the_markers() -> None:
    found = sections("""
        Approved - please book it.

        On Fri, Jun 5, 2026 at 3:02 PM Maria Okafor <maria@broker.example> wrote:
        > Rate for Charlotte, NC 28208 to Richmond, VA 23224: $975.
        >
        > Maria Okafor | Sr. Account Manager
        """)
    assert found[1].sender == "Maria Okafor"
    assert found[1].text == "Rate for Charlotte, NC 28208 to Richmond, VA 23224: $975."


def test_it_follows_a_forwarded_chain_message_by_message() -> None:
    found = sections("""
        Dispatch - can you price this one?
        -Derek

        ---------- Forwarded message ---------
        From: Jenna Park <jpark@x.example>
        Date: Mon, Apr 6, 2026 at 7:05 AM
        Subject: FW: Pricing request

        Can you get us a rate?

        -----Original Message-----
        From: Ramon Alvarez <ralvarez@y.example>
        Sent: Monday, April 6, 2026 6:31 AM

        Reefer from Salinas, CA 93901 to Phoenix, AZ 85043.
        """, sender="Derek Lindqvist")
    assert [s.sender for s in found] == ["Derek Lindqvist", "Jenna Park", "Ramon Alvarez"]
    assert found[0].text == "Dispatch - can you price this one?"


def test_it_does_not_take_a_from_line_of_a_lane_for_a_quoted_header() -> None:
    found = sections("Please quote:\nFrom: Dallas, TX 75207\nTo: Atlanta, GA 30336\nDate: 3/16")
    assert len(found) == 1 and "Dallas" in found[0].text


def test_it_reads_the_dates_mail_clients_write_in_quoted_headers() -> None:
    assert loose_date("Friday, September 11, 2026 4:12 PM") == dt.date(2026, 9, 11)
    assert loose_date("Wed, Aug 5, 2026 at 11:02 AM") == dt.date(2026, 8, 5)
    assert loose_date("Tue, 14 Apr 2026 09:01:00 -0400") == dt.date(2026, 4, 14)
    assert loose_date("lundi 16 mars 2026 10:00") == dt.date(2026, 3, 16)
