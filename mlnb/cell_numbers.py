"""The one conversion between a cell's index and the number a person reads.

Inside mlnb a cell is its 0-based index in the notebook's ``cells`` list (markdown cells
included). Every number a person reads is 1-based, as in JupyterLab's status bar ("Cell 6/12"
for ``cells[5]``). Public JSON keeps the 0-based index under an explicit name (``cell_index``,
``cell_indexes``, ...). Use these functions wherever a cell number is shown; never add 1 by hand.
"""

from __future__ import annotations

from collections.abc import Iterable


def cell_number(index: int) -> int:
    """The number a person reads for the cell at 0-based ``index``: ``cells[5]`` is cell 6."""
    return index + 1


def cell_label(index: int) -> str:
    """``5`` -> ``"cell 6"``."""
    return f"cell {cell_number(index)}"


def cell_ranges(indexes: Iterable[int]) -> str:
    """0-based indexes as 1-based ranges for people: ``(0, 1, 2, 4)`` -> ``"1-3, 5"``."""
    return number_ranges(cell_number(index) for index in indexes)


def cell_list(indexes: Iterable[int]) -> str:
    """0-based indexes as a word and 1-based ranges: ``(3,)`` -> ``"cell 4"``,
    ``(3, 4, 6)`` -> ``"cells 4-5, 7"``."""
    ordered = sorted(set(indexes))
    word = "cell" if len(ordered) == 1 else "cells"
    return f"{word} {cell_ranges(ordered)}"


def number_ranges(numbers: Iterable[int]) -> str:
    """Numbers as they are, runs joined: ``(1, 2, 3, 5)`` -> ``"1-3, 5"``."""
    parts: list[str] = []
    start: int | None = None
    prev: int | None = None
    for number in [*numbers, None]:
        if number is not None and prev is not None and number == prev + 1:
            prev = number
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = number
    return ", ".join(parts)
