"""The papermill ``parameters`` cell: names, literal defaults, types and ``# choices:`` hints."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from mlnb.analysis import python_source
from mlnb.errors import CellRef, ParametersSyntaxError


@dataclass(frozen=True)
class Parameter:
    """One ``name = default`` line of the parameters cell."""

    name: str
    default: Any
    type_name: str
    comment: str = ""

    @property
    def choices(self) -> tuple[str, ...]:
        """Values listed in a trailing ``# choices: a, b`` comment."""
        head, _, rest = self.comment.partition(":")
        if head.strip().lower() != "choices":
            return ()
        return tuple(part.strip() for part in rest.split(",") if part.strip())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "default": self.default,
            "type": self.type_name,
            "comment": self.comment,
            "choices": list(self.choices),
        }


def read_parameters(
    source: str, *, cell: CellRef | None = None, notebook: str | None = None
) -> tuple[Parameter, ...]:
    """Top-level assignments of the parameters cell, in order.

    A default that is not a literal is kept as its source text with type ``expr``. A cell
    that is not valid Python raises :class:`ParametersSyntaxError` naming the line: reading
    no parameters at all would make every ``-p NAME VALUE`` fail as unknown.
    """
    code = python_source(source)
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise _syntax_error(exc, code, cell, notebook) from None
    lines = code.splitlines()
    found: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        comment = _trailing_comment(lines[node.end_lineno - 1] if node.end_lineno else "")
        default, type_name = _literal(value)
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = Parameter(target.id, default, type_name, comment)
    return tuple(found.values())


def _syntax_error(
    exc: SyntaxError, code: str, cell: CellRef | None, notebook: str | None
) -> ParametersSyntaxError:
    lines = code.splitlines()
    number = exc.lineno or 0
    text = lines[number - 1].strip() if 0 < number <= len(lines) else ""
    where = "" if cell is not None else "the parameters cell: "
    shown = f" ({text!r})" if text else ""
    return ParametersSyntaxError(
        f"{where}line {number}{shown} is not valid Python ({exc.msg}), "
        "so none of its parameters can be read or set",
        fix="correct that line of the parameters cell; each line there is NAME = VALUE",
        notebook=notebook,
        cell=cell,
    )


def _literal(node: ast.expr) -> tuple[Any, str]:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ast.unparse(node), "expr"
    if value is None:
        return None, "none"
    return value, type(value).__name__


def _trailing_comment(line: str) -> str:
    """The comment at the end of a line, ignoring ``#`` inside string literals."""
    quote: str | None = None
    for i, char in enumerate(line):
        if quote:
            if char == quote and line[i - 1] != "\\":
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#":
            return line[i + 1 :].strip()
    return ""
