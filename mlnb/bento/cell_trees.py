"""A notebook cell's syntax tree as the build reads it, taken from the pipeline's one parse.

The serve-code extraction and the credential scan read a cell as
``ast.parse(python_source(source))`` (:func:`mlnb.analysis.python_source`: IPython-only lines
replaced, line numbers kept). For a cell that neither IPython nor ``python_source`` rewrites,
that is the tree the pipeline already holds (:attr:`mlnb.pipeline.Pipeline.parsed`, the
``ipython`` tree of :class:`mlnb.analysis.ParsedCell`): it is taken from there instead of
parsing the cell again. Any other cell, and code that is not a notebook cell, is parsed here.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from mlnb.analysis import ParsedCell, ipython_python, python_source


def python_tree(cell: int, source: str, parsed: Mapping[int, ParsedCell]) -> ast.Module:
    """``ast.parse(python_source(source))`` of cell ``cell``: ``parsed``'s tree when it holds
    this cell with this source and that tree is the same, else parsed now (raises
    :class:`SyntaxError`). The tree may be shared with the whole command: read it, never
    change it."""
    held = parsed.get(cell)
    if held is not None and held.source == source and _read_as_written(source):
        return held.ipython
    return ast.parse(python_source(source))


def _read_as_written(source: str) -> bool:
    """Whether both IPython and :func:`python_source` give the cell's own text (at most a
    final newline apart, which changes no tree)."""
    return _same(python_source(source), source) and _same(ipython_python(source), source)


def _same(text: str, source: str) -> bool:
    return text == source or text + "\n" == source or text == source + "\n"
