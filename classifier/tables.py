"""Tables in mail: HTML tables become tab-separated lines (parse.html_to_text), so the label of a
value is either the cell before it on its row ("Origin<TAB>Dallas, TX") or, in a table whose first
row holds the labels, the cell above it in the same column."""

from __future__ import annotations

_REACH = 400   # characters looked back for the row above: header rows are short


def header_above(text: str, pos: int) -> str | None:
    """The text of the cell above `pos` in its column, when `pos` sits in a tab-separated row
    under a row of three or more cells; else None."""
    row_start = text.rfind("\n", max(0, pos - _REACH), pos) + 1
    if row_start == 0 and pos > _REACH:
        return None
    before = text[row_start:pos]
    if "\t" not in before and "\t" not in text[pos:pos + _REACH].split("\n", 1)[0]:
        return None
    column = before.count("\t")
    if row_start < 2:
        return None
    above_start = text.rfind("\n", max(0, row_start - 1 - _REACH), row_start - 1) + 1
    cells = text[above_start:row_start - 1].split("\t")
    if len(cells) <= column or len(cells) < 3:
        return None  # a two-column table pairs labels and values on one row
    header = cells[column].strip()
    return header or None
