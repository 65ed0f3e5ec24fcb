"""Static analysis of cell code: which global names a block of cells defines and which it reads.

The walk follows execution order at module level, so ``df = df.dropna()`` reads ``df`` before
it defines it. Names read inside functions and classes are read when they are called, so they
count as reads only when the block itself never defines them. A name the block reads and
changes in place (``X.dropna(inplace=True)``, ``X["a"] = 1``, ``model.fit(...)``) is both read and
defined: the block makes a new version of it.

Cells are read as the Python IPython turns them into (its own input transformer), and each
magic whose effect is known is replaced by the code it runs: ``%time model.fit(X)`` is
``model.fit(X)``, ``%%capture log`` runs its body and defines ``log``, ``!pip install {pkg}``
reads ``pkg``. A magic mlnb does not know, ``exec``, ``globals()`` and ``import *`` make the
block *opaque*: the analysis cannot tell what it reads or defines, and says so.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib.util
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """The global names a block defines and the ones it reads from outside itself.

    ``changes`` are names the block reads from outside and changes in place
    (``X.dropna(inplace=True)``, ``X["a"] = ...``, ``model.fit(...)``): each is a new version
    of the name, so it is in ``defines`` too. ``functions`` maps each function and class the
    block defines to the global names its body reads when called. ``opaque`` says why the
    analysis cannot tell what the block reads and defines (``%run``, ``exec``, ...), if it can't.
    """

    defines: frozenset[str]
    reads: frozenset[str]
    changes: frozenset[str] = frozenset()
    functions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    opaque: tuple[str, ...] = ()


class CodeSyntaxError(ValueError):
    """A cell's code is not valid Python; ``lineno`` is 1-based within that cell."""

    def __init__(self, message: str, lineno: int | None) -> None:
        super().__init__(message)
        self.lineno = lineno


def python_source(cell_source: str) -> str:
    """The cell's source with IPython-only syntax replaced by ``pass``/assignments.

    Line numbers are kept, so the result can be cut into pieces that match the cell (the build
    renders serve code from it). For what the code does, use :func:`parse_cell`.
    """
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


@dataclass(frozen=True)
class ParsedCell:
    """A cell as the Python IPython runs, with each magic replaced by the code it runs.

    ``ipython`` is the tree of IPython's own translation (``%time f()`` becomes
    ``get_ipython().run_line_magic('time', 'f()')``); ``tree`` is the same with every magic
    whose effect on names is known rewritten into plain Python (``f()``), for the analysis.
    ``source`` is the cell source it was parsed from.

    One parse serves a whole command (it travels with the pipeline): the trees are shared, so
    nothing may change them. Read them (``ast.walk``, a ``NodeVisitor``, ``ast.dump``); a
    transformer works on ``copy.deepcopy(tree)``.
    """

    ipython: ast.Module
    tree: ast.Module
    opaque: tuple[str, ...]
    source: str = ""


# Cell index -> its parse, read-only (the pipeline holds one: :attr:`Pipeline.parsed`).
ParsedCells = Mapping[int, ParsedCell]


def ipython_python(cell_source: str) -> str:
    """The Python IPython turns the cell into (its own input transformer)."""
    if not _MAY_HAVE_MAGIC.search(cell_source):
        return cell_source  # plain Python: nothing to transform
    return str(_transformer().transform_cell(cell_source))


@functools.cache
def _transformer() -> Any:
    """IPython's ``TransformerManager``, loaded from its own module file.

    ``inputtransformer2`` imports only the standard library, but importing it by name runs
    ``IPython/__init__``, which loads the whole shell (half a second): too much for the check
    of a notebook that has not changed. The module is the same file either way.
    """
    spec = importlib.util.find_spec("IPython")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("IPython is needed to read cells with magics")
    path = Path(next(iter(spec.submodule_search_locations))) / "core" / "inputtransformer2.py"
    module_spec = importlib.util.spec_from_file_location("_mlnb_inputtransformer2", path)
    if module_spec is None or module_spec.loader is None:  # pragma: no cover
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager()  # type: ignore[no-untyped-call]
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.TransformerManager()


# CPython 3.11 keeps the parser's recursion depth per interpreter: two threads parsing at once
# fail with "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905).
_PARSING = threading.Lock()


def parse_cell(cell_source: str) -> ParsedCell:
    """Parse a cell as IPython would run it; raises :class:`CodeSyntaxError`."""
    try:
        with _PARSING:
            text = ipython_python(cell_source)
            ipython = ast.parse(text)
            rewriter = _MagicRewriter()
            tree = rewriter.visit(ast.parse(text))
    except SyntaxError as exc:
        raise CodeSyntaxError(exc.msg, exc.lineno) from None
    except RecursionError:
        raise CodeSyntaxError("the code is nested too deeply to read", None) from None
    ast.fix_missing_locations(tree)
    return ParsedCell(ipython, tree, tuple(dict.fromkeys(rewriter.opaque)), cell_source)


def parsed_cells(sources: Iterable[str]) -> Iterator[ast.Module]:
    """The rewritten syntax tree of each cell that parses; others skipped."""
    for source in sources:
        try:
            yield parse_cell(source).tree
        except CodeSyntaxError:
            continue


def analyse(sources: Iterable[str]) -> NameUse:
    """Analyse cells run one after the other, as one block of module-level code."""
    return analyse_parsed(parse_cell(source) for source in sources)


def analyse_parsed(cells: Iterable[ParsedCell]) -> NameUse:
    """:func:`analyse` of cells parsed already (the trees are only read)."""
    walker = _ModuleWalker()
    for parsed in cells:
        walker.opaque.extend(parsed.opaque)
        for statement in parsed.tree.body:
            walker.visit(statement)
    deferred = walker.deferred_reads - walker.defined
    reads = (walker.reads | deferred) - BUILTIN_NAMES
    return NameUse(
        defines=frozenset(walker.defined),
        reads=frozenset(reads),
        changes=frozenset(walker.changed),
        functions={k: frozenset(v - BUILTIN_NAMES) for k, v in walker.functions.items()},
        opaque=tuple(dict.fromkeys(walker.opaque)),
    )


_FIT_METHODS = frozenset({"fit", "fit_transform", "fit_predict", "partial_fit"})


def fit_arguments(sources: Iterable[str]) -> dict[str, list[str]]:
    """``model.fit(X_train, y)`` -> ``{"model": ["X_train"]}``: the variable each fits on."""
    return fit_arguments_in(parsed_cells(sources))


def fit_arguments_in(trees: Iterable[ast.Module]) -> dict[str, list[str]]:
    """:func:`fit_arguments` of parsed cells (their rewritten trees, only read)."""
    found: dict[str, list[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner, args = node.func.value, node.args
            if (
                node.func.attr in _FIT_METHODS
                and isinstance(owner, ast.Name)
                and args
                and isinstance(args[0], ast.Name)
                and args[0].id not in found.setdefault(owner.id, [])
            ):
                found[owner.id].append(args[0].id)
    return found


# --- magics as the Python they run -------------------------------------------------------

# Line magics that neither read nor define notebook names.
_INERT_LINE_MAGICS = frozenset(
    {
        "matplotlib", "load_ext", "reload_ext", "unload_ext", "autoreload", "aimport",
        "config", "pip", "conda", "mamba", "pwd", "who", "whos", "who_ls", "precision",
        "xmode", "colors", "lsmagic", "magic", "history", "env", "set_env", "cd", "pdb",
        "autocall", "automagic", "page", "pprint", "alias_magic", "notebook", "pinfo",
        "pinfo2", "psource", "pdef", "pdoc", "pfile", "psearch", "clear", "ls", "watermark",
        "killbgscripts", "doctest_mode",
        "mlnb",
    }
)  # fmt: skip
# Line and cell magics whose argument (or body) is Python that runs in the notebook.
_PYTHON_MAGICS = frozenset({"time", "timeit", "prun", "capture", "mlnb", "debug"})
# Cell magics whose body is not Python; ``--out``/``--err``/``--proc`` name a variable.
_SCRIPT_CELL_MAGICS = frozenset(
    {"bash", "sh", "script", "perl", "ruby", "python2", "python3", "pypy", "system", "sx"}
)
_TEXT_CELL_MAGICS = frozenset(
    {"html", "HTML", "javascript", "js", "latex", "markdown", "svg", "writefile", "file"}
)
# Options of %time/%timeit/%prun that take a value, so the code starts after them.
_VALUE_OPTIONS = {"timeit": "nrp", "prun": "slTD", "time": "", "debug": "b", "capture": ""}
_OPAQUE_CALLS = frozenset({"exec", "eval", "globals", "locals", "vars", "execfile"})
_SHELL_EXPANSION = re.compile(r"\{([^{}]+)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_MAY_HAVE_MAGIC = re.compile(r"^\s*(%|!)|\?\s*$|=\s*(%|!)", re.MULTILINE)


def _ipython_call(node: ast.AST) -> tuple[str, list[str]] | None:
    """``get_ipython().METHOD('a', 'b')`` -> ``(METHOD, ['a', 'b'])``."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    owner = node.func.value
    if not (
        isinstance(owner, ast.Call)
        and isinstance(owner.func, ast.Name)
        and owner.func.id == "get_ipython"
    ):
        return None
    args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return node.func.attr, args


def _strip_options(magic: str, line: str) -> str:
    """The code after a magic's ``-x`` options (``-n 3 -r 2 f(x)`` -> ``f(x)``)."""
    takes_value = _VALUE_OPTIONS.get(magic, "")
    words = line.split(" ")
    i = 0
    while i < len(words) and words[i].startswith("-") and len(words[i]) > 1:
        if words[i][1:2] in takes_value and len(words[i]) == 2:
            i += 1
        i += 1
    return " ".join(words[i:])


def _option_values(line: str, names: tuple[str, ...]) -> list[str]:
    words = line.split()
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w in names]


class _MagicRewriter(ast.NodeTransformer):
    """Replaces each magic call IPython produced by the Python it runs, where that is known."""

    def __init__(self) -> None:
        self.opaque: list[str] = []

    def _parse(self, code: str, what: str) -> list[ast.stmt]:
        try:
            body = ast.parse(code).body
        except SyntaxError as exc:
            raise SyntaxError(f"{exc.msg} (in {what})", (None, exc.lineno, 0, "")) from None
        return [self.visit(statement) for statement in body]

    def _statements(self, call: ast.Call) -> list[ast.stmt] | None:
        """The statements a magic call stands for; None when it is not a magic call."""
        found = _ipython_call(call)
        if found is None:
            return None
        method, args = found
        if method == "run_line_magic" and args:
            magic, line = args[0], (args[1] if len(args) > 1 else "")
            if magic in _PYTHON_MAGICS - {"capture", "mlnb"}:
                return self._parse(_strip_options(magic, line), f"%{magic}") or [ast.Pass()]
            if magic in _INERT_LINE_MAGICS:
                return [ast.Pass()]
            if magic in ("sx", "system"):
                return [ast.Expr(self._shell_reads(line))]
            self.opaque.append(f"%{magic}")
            return [ast.Pass()]
        if method == "run_cell_magic" and len(args) >= 3:
            magic, line, body = args[0], args[1], args[2]
            if magic in _PYTHON_MAGICS:
                code = self._parse(body, f"the %%{magic} cell")
                setup: list[ast.stmt] = []
                if magic == "timeit":
                    setup = self._parse(_strip_options(magic, line), "%%timeit's setup")
                after: list[ast.stmt] = []
                if magic == "capture":
                    words = [w for w in line.split() if not w.startswith("-")]
                    if words:
                        after = [_assign_none(words[0])]
                return [*setup, *code, *after] or [ast.Pass()]
            if magic in _SCRIPT_CELL_MAGICS:
                outs = _option_values(line, ("--out", "--err", "--proc"))
                return [_assign_none(name) for name in outs] or [ast.Pass()]
            if magic in _TEXT_CELL_MAGICS:
                return [ast.Pass()]
            self.opaque.append(f"%%{magic}")
            return [ast.Pass()]
        if method in ("system", "getoutput") and args:
            return [ast.Expr(self._shell_reads(args[0]))]
        self.opaque.append(f"get_ipython().{method}")
        return [ast.Pass()]

    def _shell_reads(self, command: str) -> ast.expr:
        """The names a shell line expands (``{expr}`` and ``$name``), as one tuple."""
        parts: list[ast.expr] = []
        for match in _SHELL_EXPANSION.finditer(command):
            code = match.group(1) or match.group(2)
            try:
                parts.append(self.visit(ast.parse(code, mode="eval").body))
            except SyntaxError:
                continue
        return ast.Tuple(elts=parts, ctx=ast.Load())

    def visit_Expr(self, node: ast.Expr) -> Any:
        if isinstance(node.value, ast.Call):
            statements = self._statements(node.value)
            if statements is not None:
                return [ast.copy_location(s, node) for s in statements]
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> Any:
        found = _ipython_call(node)
        if found is not None:  # a magic used as a value: `y = %time f()`, `files = !ls`
            method, args = found
            if method in ("system", "getoutput") and args:
                return ast.copy_location(self._shell_reads(args[0]), node)
            if method == "run_line_magic" and len(args) == 2 and args[0] in _PYTHON_MAGICS:
                try:
                    value = ast.parse(_strip_options(args[0], args[1]), mode="eval").body
                    return ast.copy_location(self.visit(value), node)
                except SyntaxError:
                    pass
            self._statements(node)  # records why it is opaque, if it is
            return ast.copy_location(ast.Constant(None), node)
        if isinstance(node.func, ast.Name) and node.func.id in _OPAQUE_CALLS:
            self.opaque.append(f"{node.func.id}()")
        return self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        if any(alias.name == "*" for alias in node.names):
            self.opaque.append(f"from {node.module or '.'} import *")
        return node


def _assign_none(name: str) -> ast.stmt:
    if not _IDENTIFIER.match(name):
        return ast.Pass()
    return ast.Assign(targets=[ast.Name(name, ast.Store())], value=ast.Constant(None))


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Methods that change the object they are called on.
MUTATING_METHODS = frozenset(
    {
        "append", "extend", "insert", "pop", "popitem", "remove", "clear", "update",
        "setdefault", "sort", "reverse", "add", "discard", "fit", "partial_fit",
        "fit_transform", "fit_predict", "set_params", "set_output", "fill", "resize",
        "put", "itemset", "setflags", "__setitem__", "__delitem__", "appendleft",
        "extendleft", "rotate",
    }
)  # fmt: skip


def _base_name(node: ast.AST) -> str | None:
    """``X["a"].loc[1]`` -> ``"X"``: the variable an attribute or subscript chain starts at."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_inplace(call: ast.Call) -> bool:
    for keyword in call.keywords:
        if keyword.arg == "inplace":
            value = keyword.value
            return not (isinstance(value, ast.Constant) and not value.value)
    return False


class _ModuleWalker(ast.NodeVisitor):
    """Walks module-level statements in execution order."""

    def __init__(self) -> None:
        self.defined: set[str] = set()
        self.reads: set[str] = set()
        self.deferred_reads: set[str] = set()
        self.changed: set[str] = set()
        self.functions: dict[str, set[str]] = {}
        self.opaque: list[str] = []

    def _define(self, name: str) -> None:
        self.defined.add(name)

    def _read(self, name: str) -> None:
        if name not in self.defined:
            self.reads.add(name)

    def _change(self, node: ast.AST) -> None:
        """The variable ``node`` starts at is changed in place: read, then a new version."""
        name = _base_name(node)
        if name is None or name in BUILTIN_NAMES:
            return
        if name not in self.defined:
            self.reads.add(name)
            self.changed.add(name)
        self._define(name)

    def _visit_target(self, target: ast.expr) -> None:
        self.visit(target)
        for node in ast.walk(target):  # `X["a"] = ...`, `a, X.b = ...`, `*X[1:]`
            if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(
                node.ctx, (ast.Store, ast.Del)
            ):
                self._change(node)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and (func.attr in MUTATING_METHODS or _is_inplace(node)):
            self._change(func.value)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._visit_target(target)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        else:
            self._define(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._visit_target(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
        self._visit_target(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        self._visit_target(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._visit_target(node.target)
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
        self.functions[node.name] = free_names(node)
        self.deferred_reads |= self.functions[node.name]

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self._define(node.name)
        self.functions[node.name] = free_names(node)
        self.deferred_reads |= self.functions[node.name]

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
