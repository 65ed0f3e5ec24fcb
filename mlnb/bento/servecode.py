"""The serve stage's code as it goes into a service: its definitions, not its demo calls.

From the serve stage's cells this keeps imports, functions, classes and assignments, in order,
with the comment lines just above each; calls and bare expressions (``predict(X_test.head())``)
are left out. From the setup cells it keeps the imports and definitions the serve code needs.
The notebook's parameters it reads become constants with the run's values, and the train
stage's model variable is the one name it may take from the stages before it.

The contract: ``predict(frame)`` (one prediction per row), optional ``preprocess(frame)`` and
``postprocess(result)``, each taking one positional argument.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlnb.analysis import BUILTIN_NAMES, free_names, python_source
from mlnb.bento.cell_trees import python_tree
from mlnb.cell_numbers import cell_label
from mlnb.errors import CellRef, ServeCodeError
from mlnb.pipeline import Pipeline, Stage

CONTRACT = ("predict", "preprocess", "postprocess")
_KEPT = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Import,
    ast.ImportFrom,
    ast.Assign,
    ast.AnnAssign,
)


@dataclass(frozen=True)
class Block:
    """One kept top-level statement: its code and where it came from."""

    code: str
    cell: int
    defines: frozenset[str]
    reads: frozenset[str]
    first_line: int  # 1-based, in the cell


@dataclass
class ServeCode:
    """What the service runs: setup imports, parameter constants and the serve definitions."""

    model_variable: str
    setup: list[Block] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # "cell 12, line 1: predict(...)"
    model_members: frozenset[str] = frozenset()
    cells: tuple[int, ...] = ()
    stage: str | None = None

    @property
    def defined(self) -> set[str]:
        return {name for block in self.blocks for name in block.defines}

    @property
    def functions(self) -> dict[str, bool]:
        """Which of predict, preprocess and postprocess the serve code defines."""
        defined = self.defined
        return {name: name in defined for name in CONTRACT}

    @property
    def source(self) -> str:
        """The serve code's part of ``service.py``, with blank lines between blocks."""
        return "\n\n\n".join(block.code for block in self.blocks)

    @property
    def setup_source(self) -> str:
        return "\n".join(block.code for block in self.setup)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "setup": [b.code for b in self.setup],
            "parameters": self.parameters,
            "blocks": [b.code for b in self.blocks],
            "model_variable": self.model_variable,
        }


def extract_serve_code(
    pipeline: Pipeline, model_variable: str, parameters: Mapping[str, Any]
) -> ServeCode:
    """The serve stage's definitions and what they need, or a ServeCodeError naming the cell."""
    stages = pipeline.stages_of_kind("serve")
    code = ServeCode(model_variable=model_variable)
    if not stages:
        return code
    code.stage = stages[0].name
    code.cells = tuple(cell for stage in stages for cell in stage.cells)
    for stage in stages:
        for cell, source in zip(stage.cells, stage.sources, strict=True):
            kept, left = _blocks(cell, source, pipeline)
            code.blocks.extend(kept)
            code.left_out.extend(left)
    setup_blocks = []
    for cell, source in zip(pipeline.setup_cells, pipeline.setup_sources, strict=True):
        kept, _ = _blocks(cell, source, pipeline)
        setup_blocks.extend(kept)
    _resolve(code, pipeline, stages[0], setup_blocks, parameters)
    code.left_out.sort(key=lambda text: [int(n) for n in re.findall(r"\d+", text)[:2]])
    _check_contract(code, pipeline)
    code.model_members = frozenset(_members_of(model_variable, code.blocks))
    return code


def _blocks(cell: int, source: str, pipeline: Pipeline) -> tuple[list[Block], list[str]]:
    """The kept statements of one cell, and a line for each one left out; the cell's tree
    is the pipeline's parse when it can be (:func:`mlnb.bento.cell_trees.python_tree`)."""
    text = python_source(source)
    try:
        tree = python_tree(cell, source, pipeline.parsed)
    except SyntaxError as exc:
        raise ServeCodeError(
            f"line {exc.lineno} is not valid Python ({exc.msg})",
            fix="correct the syntax",
            notebook=pipeline.notebook,
            cell=CellRef.of(cell, source),
        ) from None
    lines = text.splitlines()
    original = source.splitlines()
    kept: list[Block] = []
    left: list[str] = []
    previous_end = 0
    for node in tree.body:
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        end = node.end_lineno or node.lineno
        if isinstance(node, _KEPT) and _is_plain(node):
            first = start
            while first - 1 > previous_end and lines[first - 2].lstrip().startswith("#"):
                first -= 1
            code = "\n".join(original[first - 1 : end]).rstrip()
            kept.append(
                Block(code, cell, frozenset(_defines(node)), frozenset(_reads(node)), start)
            )
        elif not (isinstance(node, ast.Pass) and start == 1 and source.startswith("%%")):
            snippet = original[start - 1].strip()
            left.append(f"{cell_label(cell)}, line {start}: {snippet[:60]}")
        previous_end = end
    return kept, left


def _is_plain(node: ast.stmt) -> bool:
    """Assignments to plain names only: ``df["x"] = ...`` changes data, it defines nothing."""
    if isinstance(node, ast.Assign):
        return all(_plain_target(t) for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.value is not None
    return True


def _plain_target(target: ast.expr) -> bool:
    if isinstance(target, ast.Name):
        return True
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(_plain_target(t) for t in target.elts)
    return False


def _defines(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {a.asname or a.name.split(".")[0] for a in node.names if a.name != "*"}
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]  # type: ignore[attr-defined]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _reads(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names = free_names(node)
        for expr in [*node.decorator_list, *getattr(node, "bases", [])]:
            names |= {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
        return names - {node.name}
    value = node.value  # type: ignore[attr-defined]
    return free_names(ast.Expression(value)) if value is not None else set()


def _resolve(
    code: ServeCode,
    pipeline: Pipeline,
    stage: Stage,
    setup_blocks: list[Block],
    parameters: Mapping[str, Any],
) -> None:
    """Find every name the serve code needs; error on one only an earlier stage defines.

    An assignment that reads what the service cannot have (``sample = X_test.head()``) is
    left out when nothing the contract functions use depends on it.
    """
    setup_by_name = {name: b for b in setup_blocks for name in b.defines}
    known = set(BUILTIN_NAMES) | {code.model_variable} | set(setup_by_name) | set(parameters)
    defined = code.defined
    reachable = _reachable(code.blocks)
    kept = []
    for block in code.blocks:
        unresolved = block.reads - known - defined
        if unresolved and not block.defines & reachable:
            name = sorted(unresolved)[0]
            first = block.code.strip().splitlines()[0][:60]
            code.left_out.append(
                f"{cell_label(block.cell)}, line {block.first_line}: {first} (reads {name!r})"
            )
            continue
        kept.append(block)
    code.blocks = kept
    defined = code.defined
    needed = {name for block in kept for name in block.reads} - defined
    chosen_setup: list[Block] = []
    frontier = set(needed)
    seen: set[str] = set()
    while frontier:
        name = frontier.pop()
        seen.add(name)
        if name in BUILTIN_NAMES or name == code.model_variable:
            continue
        if name in setup_by_name:
            block = setup_by_name[name]
            if block not in chosen_setup:
                chosen_setup.append(block)
                frontier |= block.reads - seen - defined
        elif name in parameters:
            code.parameters[name] = parameters[name]
        else:
            _raise_missing(name, code, pipeline, stage)
    code.setup = sorted(chosen_setup, key=lambda b: (b.cell, b.first_line))


def _reachable(blocks: list[Block]) -> set[str]:
    """The names the contract functions use, directly or through other definitions."""
    by_name = {name: b for b in blocks for name in b.defines}
    found: set[str] = set()
    frontier = {name for name in CONTRACT if name in by_name}
    while frontier:
        name = frontier.pop()
        found.add(name)
        block = by_name.get(name)
        if block is not None:
            frontier |= (block.reads | block.defines) & set(by_name) - found
    return found


def _raise_missing(name: str, code: ServeCode, pipeline: Pipeline, stage: Stage) -> None:
    defined_by_stage = {
        defined: s.name for s in pipeline.stages if s.kind != "serve" for defined in s.defines
    }
    block = next((b for b in code.blocks if name in b.reads), None)
    cell = block.cell if block else stage.cells[0]
    source = dict(zip(stage.cells, stage.sources, strict=True)).get(cell, "")
    if name in defined_by_stage:
        message = (
            f"the serve code reads {name!r}, which stage {defined_by_stage[name]!r} defines; "
            f"a service has only the trained model ({code.model_variable!r}), not the "
            "notebook's other variables"
        )
        fix = (
            f"make {name!r} part of the model (a scikit-learn Pipeline), or define it in the "
            "serve cell from constants"
        )
    else:
        message = f"the serve code reads {name!r}, which nothing defines"
        fix = f"define or import {name!r} in the serve cell or in the setup cells"
    raise ServeCodeError(
        message,
        fix=fix,
        notebook=pipeline.notebook,
        cell=CellRef.of(cell, source),
        stage=stage.name,
    )


def _check_contract(code: ServeCode, pipeline: Pipeline) -> None:
    for block in code.blocks:
        node = ast.parse(block.code).body[0]
        if not isinstance(node, ast.FunctionDef) or node.name not in CONTRACT:
            continue
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        required = len(positional) - len(args.defaults)
        if (not positional and not args.vararg) or required > 1:
            argument = "frame" if node.name != "postprocess" else "result"
            raise ServeCodeError(
                f"{node.name} must take one argument ({node.name}({argument})), "
                f"it takes {required or 'none'}",
                fix=f"define it as def {node.name}({argument}): ...",
                notebook=pipeline.notebook,
                cell=CellRef.of(block.cell, block.code),
                stage=code.stage,
            )
    async_defs = [b for b in code.blocks if b.code.lstrip().startswith("async def")]
    if async_defs:
        raise ServeCodeError(
            "async functions are not supported in the serve code",
            fix="define predict with a plain def",
            notebook=pipeline.notebook,
            cell=CellRef.of(async_defs[0].cell, async_defs[0].code),
            stage=code.stage,
        )


def _members_of(variable: str, blocks: Iterable[Block]) -> set[str]:
    """The attributes the serve code takes from the model (``model.predict_proba`` ...)."""
    members = set()
    for block in blocks:
        for node in ast.walk(ast.parse(block.code)):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == variable
            ):
                members.add(node.attr)
    return members
