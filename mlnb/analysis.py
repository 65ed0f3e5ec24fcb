"""Static analysis of cell code: which global names a block of cells defines and which it reads.

The walk follows execution order at module level, so ``df = df.dropna()`` reads ``df`` before
it defines it. Names read inside functions and classes are read when they are called, so they
count as reads only when the block itself never defines them. IPython syntax (line magics,
shell escapes, cell magics) is blanked out first, keeping line numbers.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Names a Jupyter kernel provides without any cell defining them.
KERNEL_NAMES: frozenset[str] = frozenset(
    {"display", "get_ipython", "In", "Out", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii"}
)
BUILTIN_NAMES: frozenset[str] = frozenset(dir(builtins)) | KERNEL_NAMES
# Cell magics whose body is Python code; the body of any other cell magic is opaque.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "mlnb"})
_LINE_MAGIC = re.compile(r"^(\s*)(%|!)")
_ASSIGNED_MAGIC = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(%|!)")


@dataclass(frozen=True)
class NameUse:
    """The global names a block defines and the ones it reads from outside itself."""

    defines: frozenset[str]
    reads: frozenset[str]


class CodeSyntaxError(ValueError):
    """A cell's code is not valid Python; ``lineno`` is 1-based within that cell."""

    def __init__(self, message: str, lineno: int | None) -> None:
        super().__init__(message)
        self.lineno = lineno


def python_source(cell_source: str) -> str:
    """The cell's source with IPython-only syntax replaced by ``pass``/assignments."""
    lines = cell_source.splitlines()
    if lines and lines[0].startswith("%%"):
        magic = lines[0][2:].split(maxsplit=1)[0] if lines[0][2:].strip() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return "\n" * len(lines)
        lines = ["pass", *lines[1:]]
    out = []
    for line in lines:
        assigned = _ASSIGNED_MAGIC.match(line)
        if assigned:
            out.append(f"{assigned.group(1)}{assigned.group(2)} = None")
        elif _LINE_MAGIC.match(line):
            out.append(f"{_LINE_MAGIC.match(line).group(1)}pass")  # type: ignore[union-attr]
        elif line.rstrip().endswith("?") and not line.lstrip().startswith("#"):
            out.append("pass")  # `obj?` help syntax
        else:
            out.append(line)
    return "\n".join(out)


def parsed_cells(sources: Iterable[str]) -> Iterator[ast.Module]:
    """The syntax tree of each cell that parses (IPython syntax blanked out); others skipped."""
    for source in sources:
        try:
            yield ast.parse(python_source(source))
        except SyntaxError:
            continue


def analyse(sources: Iterable[str]) -> NameUse:
    """Analyse cells run one after the other, as one block of module-level code."""
    walker = _ModuleWalker()
    for source in sources:
        try:
            tree = ast.parse(python_source(source))
        except SyntaxError as exc:
            raise CodeSyntaxError(exc.msg, exc.lineno) from None
        for statement in tree.body:
            walker.visit(statement)
    deferred = walker.deferred_reads - walker.defined
    reads = (walker.reads | deferred) - BUILTIN_NAMES
    return NameUse(defines=frozenset(walker.defined), reads=frozenset(reads))


class _ModuleWalker(ast.NodeVisitor):
    """Walks module-level statements in execution order."""

    def __init__(self) -> None:
        self.defined: set[str] = set()
        self.reads: set[str] = set()
        self.deferred_reads: set[str] = set()

    def _define(self, name: str) -> None:
        self.defined.add(name)

    def _read(self, name: str) -> None:
        if name not in self.defined:
            self.reads.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        else:
            self._define(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
        self.visit(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for statement in [*node.body, *node.orelse]:
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._define(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._define(node.name)
        for statement in node.body:
            self.visit(statement)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)
        self._define(node.name)
        self.deferred_reads |= free_names(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self._define(node.name)
        self.deferred_reads |= free_names(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.deferred_reads |= free_names(node)

    def _visit_comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        for name in free_names(node):
            self._read(name)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension

    def visit_Global(self, node: ast.Global) -> None:
        return None

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self._define(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._define(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self.generic_visit(node)
        if node.rest:
            self._define(node.rest)


def free_names(node: ast.AST) -> set[str]:
    """Names a function, class, lambda or comprehension reads but does not bind itself.

    A deliberately simple approximation: a name bound anywhere inside counts as bound
    everywhere inside, which can only hide a read, never invent one.
    """
    bound: set[str] = set()
    loaded: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            (loaded if isinstance(child.ctx, ast.Load) else bound).add(child.id)
        elif isinstance(child, ast.arg):
            bound.add(child.arg)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if child is not node:
                bound.add(child.name)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            bound |= {a.asname or a.name.split(".")[0] for a in child.names}
        elif isinstance(child, ast.ExceptHandler) and child.name:
            bound.add(child.name)
        elif isinstance(child, (ast.Global, ast.Nonlocal)):
            bound -= set(child.names)
    return loaded - bound
