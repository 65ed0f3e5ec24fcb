"""Side effects in the code a service runs: commands, network, file writes, found statically.

The serve code and the setup code it needs run at import in every worker of the service, and
the build runs them too (its checks answer held-out rows through ``predict``). A call that
runs a command (``os.system``, ``subprocess.*``, ``os.exec*``, ``os.spawn*``), opens a
connection (``socket``, ``urllib.request``, ``requests``, ``httpx``, ``http.client`` ...) or
changes files (``open(..., "w")``, ``Path.write_text``, ``os.remove``, ``shutil.*`` ...) is
refused wherever it is in that code, at the top level or inside a function such as
``predict`` (which the build's checks call), unless the build is given
``--allow-side-effects``. The check reads the code (``ast``) and runs none of it; names are
resolved through the code's imports (``from subprocess import run as go`` then ``go(...)``).
It is a guard against mistakes, not a sandbox: ``getattr(os, "system")`` passes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mlnb.analysis import python_source
from mlnb.bento.servecode import Block, ServeCode
from mlnb.errors import CellRef, SideEffectInServeCodeError

RUNS = "runs a command"
NETWORK = "opens a network connection"
WRITES = "changes files"
# Qualified names, or module prefixes ending in ".", and what a call of them does.
_CALLS: tuple[tuple[str, str], ...] = (
    ("os.system", RUNS),
    ("os.popen", RUNS),
    ("os.exec", RUNS),  # execv, execlp ...
    ("os.spawn", RUNS),
    ("os.posix_spawn", RUNS),
    ("os.fork", RUNS),
    ("os.kill", RUNS),
    ("subprocess.", RUNS),
    ("pty.spawn", RUNS),
    ("socket.", NETWORK),
    ("urllib.request.", NETWORK),
    ("urllib3.", NETWORK),
    ("requests.", NETWORK),
    ("httpx.", NETWORK),
    ("http.client.", NETWORK),
    ("aiohttp.", NETWORK),
    ("ftplib.", NETWORK),
    ("smtplib.", NETWORK),
    ("os.remove", WRITES),
    ("os.unlink", WRITES),
    ("os.rmdir", WRITES),
    ("os.removedirs", WRITES),
    ("os.rename", WRITES),
    ("os.replace", WRITES),
    ("os.truncate", WRITES),
    ("os.mkdir", WRITES),
    ("os.makedirs", WRITES),
    ("os.open", WRITES),
    ("shutil.", WRITES),
)
_HARMLESS = frozenset({"shutil.which", "shutil.get_terminal_size", "shutil.disk_usage"})
# Methods that change files whatever they are called on (pathlib's, chiefly).
_FILE_METHODS = frozenset(
    {"write_text", "write_bytes", "unlink", "rmdir", "touch", "mkdir", "symlink_to"}
    | {"hardlink_to"}
)
_OPENS = frozenset({"open", "io.open", "builtins.open", "codecs.open"})


@dataclass(frozen=True)
class SideEffect:
    cell: int
    cell_source: str
    line: int  # 1-based, in the cell
    call: str  # as mlnb reads it: "os.system", "open(..., 'w')"
    what: str  # "runs a command"
    function: str | None  # the function it is in; None: at import

    def describe(self) -> str:
        when = (
            f"in {self.function}, which the service runs on requests and this build runs to "
            "check it"
            if self.function
            else "at import, in every worker of the service and in each of this build's checks"
        )
        return f"line {self.line} calls {self.call}, which {self.what}, {when}"


def find_side_effects(serve: ServeCode, sources: dict[int, str]) -> list[SideEffect]:
    """Every side-effect call in the code the service runs (setup blocks, serve blocks), in
    cell and line order; ``sources`` maps a cell index to its source, for the message."""
    blocks = [*serve.setup, *serve.blocks]
    aliases = _aliases(blocks)
    found = [
        effect
        for block in blocks
        for effect in _block_effects(block, aliases, sources.get(block.cell, block.code))
    ]
    return sorted(set(found), key=lambda e: (e.cell, e.line, e.call))


def check_no_side_effects(
    serve: ServeCode, sources: dict[int, str], notebook: str, *, allowed: bool
) -> list[SideEffect]:
    """Raise for the first side effect unless ``allowed``; return them all (to be reported)."""
    effects = find_side_effects(serve, sources)
    if effects and not allowed:
        first = effects[0]
        more = f" ({len(effects) - 1} more found)" if len(effects) > 1 else ""
        raise SideEffectInServeCodeError(
            first.describe() + more,
            fix="keep commands, network calls and file writes out of the code the service "
            "runs (do them in a data or train stage), or, if the service must do this, "
            "build with: mlnb build --allow-side-effects",
            notebook=notebook,
            cell=CellRef.of(first.cell, first.cell_source),
            stage=serve.stage,
        )
    return effects


def _parse(code: str) -> ast.Module | None:
    for text in (code, python_source(code)):
        try:
            return ast.parse(text)
        except SyntaxError:
            continue
    return None


def _aliases(blocks: Iterable[Block]) -> dict[str, str]:
    """Local name -> what it imports: ``sp`` -> ``subprocess``, ``run`` -> ``subprocess.run``."""
    aliases: dict[str, str] = {}
    for block in blocks:
        tree = _parse(block.code)
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        aliases[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _block_effects(block: Block, aliases: dict[str, str], source: str) -> Iterator[SideEffect]:
    tree = _parse(block.code)
    if tree is None:
        return
    leading = 0  # the comment lines kept above the statement
    for line in block.code.splitlines():
        if not line.lstrip().startswith("#"):
            break
        leading += 1
    offset = block.first_line - leading - 1
    for node, function in _calls(tree, None):
        found = _classify(node, aliases)
        if found is not None:
            call, what = found
            yield SideEffect(block.cell, source, offset + node.lineno, call, what, function)


def _calls(node: ast.AST, function: str | None) -> Iterator[tuple[ast.Call, str | None]]:
    """Every call, with the name of the function it is in (None at the top level)."""
    for child in ast.iter_child_nodes(node):
        inner = function
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner = child.name if function is None else f"{function}.{child.name}"
        elif isinstance(child, ast.Lambda):
            inner = function or "a lambda"
        if isinstance(child, ast.Call):
            yield child, function
        yield from _calls(child, inner)


def _classify(node: ast.Call, aliases: dict[str, str]) -> tuple[str, str] | None:
    name = _qualified(node.func, aliases)
    if name in _OPENS or (name is None and _method(node) == "open"):
        mode = _mode(node, 0 if name is None else 1)
        if mode is not None and not any(flag in mode for flag in "wax+"):
            return None
        shown = repr(mode) if mode is not None else "a mode set at run time"
        return (f"open(..., {shown})" if name is not None else f".open({shown})"), WRITES
    if name is not None and name not in _HARMLESS:
        for prefix, what in _CALLS:
            if name.startswith(prefix) and (prefix.endswith(".") or _follows(name, prefix)):
                return name, what
    method = _method(node)
    if method in _FILE_METHODS and name is None:
        return f".{method}()", WRITES
    return None


def _follows(name: str, prefix: str) -> bool:
    """``os.exec`` covers ``os.execv``; ``os.system`` is not ``os.systemx``-like by accident."""
    rest = name[len(prefix) :]
    return rest == "" or (prefix in {"os.exec", "os.spawn", "os.posix_spawn"} and "." not in rest)


def _qualified(func: ast.expr, aliases: dict[str, str]) -> str | None:
    """``os.path.join`` for ``os.path.join``, through imports; None for a call on a value."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    base = aliases.get(func.id)
    if base is None:
        if parts:
            return None  # a method of a local value (frame.rename, path.open)
        base = func.id  # a builtin such as open
    return ".".join([base, *reversed(parts)])


def _method(node: ast.Call) -> str | None:
    return node.func.attr if isinstance(node.func, ast.Attribute) else None


def _mode(node: ast.Call, position: int) -> str | None:
    """The mode of an open call: "r" when it is not given, None when it is not a constant."""
    given: ast.expr | None = None
    if len(node.args) > position:
        given = node.args[position]
    for keyword in node.keywords:
        if keyword.arg == "mode":
            given = keyword.value
    if given is None:
        return "r"
    if isinstance(given, ast.Constant) and isinstance(given.value, str):
        return given.value
    return None
