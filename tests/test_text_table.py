"""The CLI's one text table (:mod:`mlnb.text_table`): columns line up, nothing is cut that fits,
and the figures read the same in every command."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlnb.text_table import ELLIPSIS, GAP, format_number, shorten, text_table

# one-line cells without leading or trailing spaces (a table strips the end of a line)
CELL = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12) | st.just("")
COLUMNS = st.integers(min_value=1, max_value=5)


def tables(rows: int = 6) -> st.SearchStrategy[list[list[str]]]:
    return COLUMNS.flatmap(
        lambda n: st.lists(st.lists(CELL, min_size=n, max_size=n), min_size=1, max_size=rows)
    )


def starts(widths: list[int], indent: str = "") -> list[int]:
    """Where each column starts, from the columns' widths."""
    at, found = len(indent), []
    for width in widths:
        found.append(at)
        at += width + len(GAP)
    return found


@given(tables())
def test_every_row_has_its_cells_at_the_same_column_starts(rows: list[list[str]]) -> None:
    lines = text_table(rows, indent="  ")
    assert len(lines) == len(rows)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row, line in zip(rows, lines, strict=True):
        for cell, start in zip(row, starts(widths, "  "), strict=True):
            assert line[start : start + len(cell)] == cell
            assert line[start - len(GAP) : start].strip() == ""  # a gap before every column
        assert line == line.rstrip() or line == "  "  # no trailing spaces past the indent


@given(tables(), st.data())
def test_right_aligned_columns_end_together(rows: list[list[str]], data: st.DataObject) -> None:
    count = len(rows[0])
    right = data.draw(st.sets(st.integers(0, count - 1)))
    minimum = data.draw(st.lists(st.integers(0, 15), max_size=count))
    lines = [line.ljust(200) for line in text_table(rows, right=right, min_widths=minimum)]
    widths = [
        max([minimum[i] if i < len(minimum) else 0] + [len(row[i]) for row in rows])
        for i in range(count)
    ]
    for row, line in zip(rows, lines, strict=True):
        for i, (cell, start) in enumerate(zip(row, starts(widths), strict=True)):
            shown = line[start : start + widths[i]]
            assert shown == (cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))


@given(tables(), st.data())
def test_no_cell_is_cut_unless_it_is_wider_than_its_limit(
    rows: list[list[str]], data: st.DataObject
) -> None:
    count = len(rows[0])
    limits = data.draw(st.dictionaries(st.integers(0, count - 1), st.integers(3, 14)))
    lines = text_table(rows, limits=limits)
    shown = [[shorten(c, limits[i]) if i in limits else c for i, c in enumerate(r)] for r in rows]
    widths = [max(len(row[i]) for row in shown) for i in range(count)]
    for row, line in zip(rows, lines, strict=True):
        for i, (cell, start) in enumerate(zip(row, starts(widths), strict=True)):
            limit = limits.get(i)
            if limit is None or len(cell) <= limit:
                assert line[start : start + len(cell)] == cell  # whole
            else:
                part = line[start : start + limit]
                assert len(part) == limit and part.endswith(ELLIPSIS)
                assert cell.startswith(part[: -len(ELLIPSIS)])


@given(st.lists(st.lists(st.text("ab ", max_size=30), min_size=3, max_size=3), min_size=1))
def test_wrapped_cells_keep_their_letters_in_their_column(rows: list[list[str]]) -> None:
    lines = [line.ljust(80) for line in text_table(rows, indent="  ", wrap=8)]
    pieces = [[textwrap.wrap(cell, 8) or [""] for cell in row] for row in rows]
    widths = [max(len(p) for row in pieces for p in row[i]) for i in range(3)]
    assert all(w <= 8 for w in widths)
    at = 0
    for row, wrapped in zip(rows, pieces, strict=True):
        height = max(len(p) for p in wrapped)
        own = lines[at : at + height]
        for cell, start, width in zip(row, starts(widths, "  "), widths, strict=True):
            column = "".join(line[start : start + width] for line in own)
            assert column.replace(" ", "") == cell.replace(" ", "")
        at += height
    assert at == len(lines)


@given(st.text(max_size=40), st.integers(0, 40))
def test_shorten_keeps_what_fits_and_cuts_to_the_width(text: str, width: int) -> None:
    short = shorten(text, width)
    if len(text) <= width:
        assert short == text
    else:
        assert len(short) == width and text.startswith(short[: max(width - 3, 0)])


def test_rows_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same number of cells"):
        text_table([["a", "b"], ["c"]])
    assert text_table([]) == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        (0.5, "0.5"),
        (1 / 3, "0.3333"),
        (12345.678, "1.235e+04"),
        (2.0, "2"),
        (3, "3"),
        (True, "True"),
        ("text", "text"),
        (float("nan"), "nan"),
    ],
)
def test_a_figure_reads_the_same_in_every_command(value: object, shown: str) -> None:
    assert format_number(value) == shown


def test_the_commands_tables_are_this_one() -> None:
    """``mlnb runs``, a grid's summary and ``mlnb run``'s next steps print through it."""
    from mlnb.cli.grid import render_summary
    from mlnb.cli.runs import render_list

    record = {
        "run_id": "r1",
        "status": "succeeded",
        "started_at": "2026-01-01T10:00:00Z",
        "seconds": 1 / 3,
        "notebook": {"path": "/x/nb.ipynb"},
        "stages": [{"name": "fit", "status": "ran"}],
        "metrics": {"acc": 0.91234, "n": None},
    }
    assert render_list([record]).splitlines() == [
        "run  status     started (UTC)        seconds  notebook  stages   metrics",
        "r1   succeeded  2026-01-01 10:00:00  0.3333   nb.ipynb  fit:ran  acc=0.9123 n=-",
    ]
    point = {"parameters": {"C": 0.5}, "status": "succeeded", "run_id": "r1", "cached_stages": 0}
    assert render_summary([{**point, "metrics": {"acc": 1 / 3}}], ["C"]).splitlines() == [
        "C    acc     status     run  cached",
        "0.5  0.3333  succeeded  r1   0",
    ]
