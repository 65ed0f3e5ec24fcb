"""JSON from outside mlnb, parsed within limits: a size, a nesting depth, and a named error.

Every parser of JSON that mlnb did not write itself in this process goes through
:func:`loads`: request bodies of the server extension, legacy monitoring logs,
``reference.json``, the output of mlnb's own subprocesses (``-y`` YAML parameters use
:func:`deeper_than` and the same errors). A document that breaks a limit is an
:class:`~mlnb.errors.InputLimitError` naming what was parsed, the limit and the fix, never a
``RecursionError`` or a 500. The generated service's ``/predict`` parses with pydantic-core,
whose parser refuses documents nested over 200 levels; :mod:`mlnb.serving.http` answers that
with a 400 of the same words (it does not import this module: a Bento ships only mlnb's
``serving`` and ``monitoring`` packages).

The standard library only.
"""

from __future__ import annotations

import json
from typing import Any

from mlnb.errors import InputLimitError


def loads(
    text: str | bytes,
    *,
    max_bytes: int,
    max_depth: int,
    what: str,
    fix: str | None = None,
    constants: bool = True,
) -> Any:
    """``json.loads(text)`` for ``text`` of at most ``max_bytes`` (characters, for a str)
    nested at most ``max_depth`` levels (``[]`` is one, ``{"rows": [[1]]}`` three).

    ``constants=False`` refuses the bare ``NaN``, ``Infinity`` and ``-Infinity`` that Python
    writes and JSON lacks. Raises :class:`InputLimitError` (``reason`` ``too-large``,
    ``too-deep`` or ``invalid``).
    """
    if len(text) > max_bytes:
        raise too_large(what, len(text), max_bytes, fix)
    try:
        value = json.loads(text, parse_constant=None if constants else _refuse_constant)
    except RecursionError:
        raise too_deep(what, max_depth, fix) from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an int of over 4,300 digits
        raise invalid(what, str(exc), fix) from None
    # only a document with more brackets than max_depth (strings may hold some) is walked
    if _brackets(text) > max_depth and deeper_than(value, max_depth):
        raise too_deep(what, max_depth, fix)
    return value


def deeper_than(value: Any, max_depth: int, max_items: int | None = None) -> bool:
    """Whether lists and dicts nest more than ``max_depth`` levels in ``value`` (or it holds
    more than ``max_items`` values, counting every visit of a shared one), without recursion."""
    if not isinstance(value, (dict, list)):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    items = 0
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return True
        children = item.values() if isinstance(item, dict) else item
        if max_items is not None:
            items += len(children)
            if items > max_items:
                return True
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def too_large(what: str, size: int, max_bytes: int, fix: str | None = None) -> InputLimitError:
    return InputLimitError(
        f"{what} has {size:,} bytes, more than the {max_bytes:,} mlnb reads",
        what=what,
        reason="too-large",
        limit=max_bytes,
        fix=fix or "send or keep less in it",
    )


def too_deep(what: str, max_depth: int, fix: str | None = None) -> InputLimitError:
    return InputLimitError(
        f"{what} nests lists and objects more than {max_depth} levels deep",
        what=what,
        reason="too-deep",
        limit=max_depth,
        fix=fix or f"flatten it to at most {max_depth} levels",
    )


def invalid(what: str, problem: str, fix: str | None = None) -> InputLimitError:
    return InputLimitError(
        f"{what} is not valid JSON: {problem}",
        what=what,
        reason="invalid",
        fix=fix or "check that it is whole, valid JSON",
    )


def _brackets(text: str | bytes) -> int:
    """Opening brackets in ``text``: an upper bound of its depth (strings may hold some)."""
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"bare {name} is not JSON")
