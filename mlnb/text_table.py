"""Plain-text tables and figures as the CLI prints them: one home for every command's table.

Columns are separated by two spaces and as wide as their widest cell; a line carries no
trailing spaces. A column may be aligned right, kept to a minimum width, cut to a limit
(:func:`shorten`) or wrapped onto more lines. Standard library only: every command imports it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

__all__ = ["ELLIPSIS", "GAP", "format_number", "shorten", "text_table"]

GAP = "  "  # between two columns
ELLIPSIS = "..."  # the end of a cut cell


def format_number(value: object) -> str:
    """A figure for people: a float to 4 significant digits, None as ``-``, else ``str``."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def shorten(text: str, width: int) -> str:
    """``text`` itself when it fits ``width`` characters, else its start and ``...`` in them."""
    if len(text) <= width:
        return text
    return text[: max(width - len(ELLIPSIS), 0)] + ELLIPSIS[: max(width, 0)]


def text_table(
    rows: Sequence[Sequence[str]],
    *,
    indent: str = "",
    right: Collection[int] = (),
    min_widths: Sequence[int] = (),
    limits: Mapping[int, int] | None = None,
    wrap: int | None = None,
) -> list[str]:
    """The lines of a table of one-line cells (the first row is the header, if it has one).

    ``right`` names the columns aligned right, ``min_widths`` the least width of the first
    columns, ``limits`` a column's most width (a wider cell is cut by :func:`shorten`), and
    ``wrap`` the width past which any cell wraps onto more lines at its spaces. Every line
    starts with ``indent``; every row has the same number of cells.
    """
    if not rows:
        return []
    count = len(rows[0])
    if any(len(row) != count for row in rows):
        raise ValueError("every row of a table has the same number of cells")
    limits = limits or {}
    cut = [[shorten(c, limits[i]) if i in limits else c for i, c in enumerate(r)] for r in rows]
    cells = [[_lines(c, wrap) for c in row] for row in cut]
    widths = [
        max([min_widths[i] if i < len(min_widths) else 0] + [len(t) for r in cells for t in r[i]])
        for i in range(count)
    ]
    lines = []
    for row in cells:
        for at in range(max(len(c) for c in row)):
            parts = [
                _align(c[at] if at < len(c) else "", width, i in right)
                for i, (c, width) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append(indent + GAP.join(parts).rstrip())
    return lines


def _lines(cell: str, wrap: int | None) -> list[str]:
    """A cell's lines: itself, or wrapped at ``wrap`` characters (an empty cell is one line)."""
    if wrap is None:
        return [cell]
    import textwrap  # only a wrapping table needs it, not every command's start

    return textwrap.wrap(cell, wrap) or [""]


def _align(text: str, width: int, right: bool) -> str:
    return text.rjust(width) if right else text.ljust(width)
