"""``%%mlnb`` and ``%mlnb``: the notebook-side edge of mlnb.

``%%mlnb KIND [options]`` runs its body in the user namespace exactly as the cell would run
without the first line (the value of a last expression is displayed, exceptions propagate so
papermill sees them) and records the stage. ``%mlnb`` shows a panel (stages, a parameters form,
Run and Build, run history); ``%mlnb status`` prints the pipeline of the notebook this kernel
belongs to; ``%mlnb run`` and ``%mlnb build`` hand that notebook to the CLI in a
subprocess, so the kernel is never the one doing the work.
"""

from __future__ import annotations

import ast
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, magics_class

from mlnb import child_process
from mlnb.analysis import analyse
from mlnb.errors import MlnbError
from mlnb.tags import StageMark, parse_magic_line

LINE_USAGE = """\
%mlnb [panel] [NOTEBOOK] [-k KERNEL]  a panel: stages, parameters form, Run, Build, history
%mlnb status [NOTEBOOK]            the pipeline of this notebook, and stages run in this kernel
%mlnb run [NOTEBOOK] [-p|-r NAME VALUE]... [-y YAML] [-k KERNEL]   run it with `mlnb run`
                                   (a VALUE may start with '-': -r name -x)
%mlnb build [NOTEBOOK]             build a BentoML service with `mlnb build` (a new process)
%%mlnb data|train|serve [--name N] [--model VAR] [--metrics a,b]   mark and run a stage cell"""


@dataclass(frozen=True)
class RecordedStage:
    """A ``%%mlnb`` cell as executed in this kernel."""

    name: str
    kind: str
    seconds: float
    defines: tuple[str, ...]
    status: str  # "ok" or "failed"


@magics_class
class MlnbMagics(Magics):
    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)  # type: ignore[no-untyped-call]  # IPython's is untyped
        self.recorded: dict[str, RecordedStage] = {}
        self.panel: Any = None

    @line_cell_magic  # type: ignore[untyped-decorator]  # IPython's is untyped
    def mlnb(self, line: str, cell: str | None = None) -> Any:
        if cell is None:
            return self._line_magic(line)
        try:
            mark = parse_magic_line(line)
        except MlnbError as error:
            raise UsageError(str(error)) from None
        return self._run_stage(mark, cell)

    def _run_stage(self, mark: StageMark, body: str) -> Any:
        shell = self.shell
        assert shell is not None
        code = shell.transform_cell(body)
        tree = shell.compile.ast_parse(code)
        last_expr = None
        if tree.body and isinstance(tree.body[-1], ast.Expr) and not _silenced(code):
            last_expr = ast.Expression(tree.body.pop().value)
        namespace = shell.user_ns
        started = time.perf_counter()
        status = "failed"
        try:
            exec(shell.compile(tree, "<mlnb stage>", "exec"), namespace)
            result = None
            if last_expr is not None:
                result = eval(shell.compile(last_expr, "<mlnb stage>", "eval"), namespace)
            status = "ok"
            return result
        finally:
            self.recorded[mark.name] = RecordedStage(
                mark.name,
                mark.kind,
                round(time.perf_counter() - started, 6),
                _defined_names(body, namespace),
                status,
            )

    def _line_magic(self, line: str) -> None:
        words = shlex.split(line)
        command, rest = (words[0], words[1:]) if words else ("panel", [])
        if command == "panel":
            self._panel(rest)
        elif command == "status":
            self._status(rest)
        elif command in ("run", "build"):
            self._cli(command, rest)
        else:
            raise UsageError(f"unknown %mlnb command {command!r}\n{LINE_USAGE}")

    def _panel(self, args: list[str]) -> None:
        from IPython.display import display

        from mlnb.panel.widgets import MlnbPanel

        kernel = None
        rest = list(args)
        for flag in ("-k", "--kernel"):
            if flag in rest:
                at = rest.index(flag)
                if at + 1 >= len(rest):
                    raise UsageError(f"{flag} needs a kernel name\n{LINE_USAGE}")
                kernel = rest[at + 1]
                del rest[at : at + 2]
        notebook = rest[0] if rest else None
        self.panel = MlnbPanel(kernel_notebook(self.shell, notebook), kernel=kernel)
        display(self.panel.widget)  # type: ignore[no-untyped-call]

    def _status(self, args: list[str]) -> None:
        from mlnb.pipeline import load_pipeline
        from mlnb.pipeline_table import render_table

        path = kernel_notebook(self.shell, args[0] if args else None)
        try:
            pipeline = load_pipeline(path)
        except MlnbError as error:
            raise UsageError(str(error)) from None
        print(render_table(pipeline))
        if self.recorded:
            print("\nstages run in this kernel:")
            for stage in self.recorded.values():
                names = ", ".join(stage.defines) or "-"
                print(
                    f"  {stage.name} ({stage.kind}): {stage.status}, {stage.seconds:.2f} s, {names}"
                )

    def _cli(self, command: str, args: list[str]) -> None:
        notebook_arg = args[0] if args and args[0].endswith(".ipynb") else None
        options = args[1:] if notebook_arg else args
        path = kernel_notebook(self.shell, notebook_arg)
        if command == "run":
            options = parameters_as_yaml(options)
        if command == "run":
            from mlnb.panel.state import SAVED_NOTE

            print(f"mlnb: {SAVED_NOTE.format(notebook=path.name)}")
        completed = child_process.run([command, str(path), *options])
        print(completed.stdout, end="")
        if completed.returncode != 0:
            raise UsageError(completed.stderr.strip() or f"mlnb {command} failed")
        print(completed.stderr, end="", file=sys.stderr)


_TYPED = ("-p", "--parameter")
_RAW = ("-r", "--raw-parameter")


def parameters_as_yaml(options: list[str]) -> list[str]:
    """``-p``/``-r NAME VALUE`` as one ``-y`` mapping at the end, so that a VALUE may start
    with ``-`` (argparse in ``mlnb run`` would read ``-x`` as an option). The two words after
    ``-p`` or ``-r`` are NAME and VALUE whatever they look like; ``-r`` wins over ``-p`` and
    both over an earlier ``-y``, as in papermill."""
    from mlnb.run.params import resolve_type
    from mlnb.run_arguments import yaml_arguments

    rest: list[str] = []
    typed: dict[str, object] = {}
    raw: dict[str, str] = {}
    at = 0
    while at < len(options):
        word = options[at]
        if word in _TYPED + _RAW and at + 2 < len(options):
            name, value = options[at + 1], options[at + 2]
            if word in _RAW:
                raw[name] = value
            else:
                typed[name] = resolve_type(value)
            at += 3
            continue
        rest.append(word)
        at += 1
    return rest + yaml_arguments({**typed, **raw})


def _silenced(code: str) -> bool:
    """IPython does not display a cell's value when its last line ends with ``;``."""
    lines = [line for line in code.rstrip().splitlines() if line.strip()]
    return bool(lines) and lines[-1].split("#", 1)[0].rstrip().endswith(";")


def _defined_names(body: str, namespace: dict[str, Any]) -> tuple[str, ...]:
    try:
        defined = analyse([body]).defines
    except ValueError:
        return ()
    return tuple(sorted(name for name in defined if name in namespace))


def kernel_notebook(shell: InteractiveShell | None, explicit: str | None = None) -> Path:
    """The notebook this kernel belongs to, as far as the kernel can tell."""
    candidates: list[str | None] = [explicit, os.environ.get("MLNB_NOTEBOOK")]
    if shell is not None:
        candidates.append(shell.user_ns.get("__vsc_ipynb_file__"))
    session = os.environ.get("JPY_SESSION_NAME")  # set by jupyter_server for its kernels
    if session:
        candidates += [session, str(Path.cwd() / Path(session).name)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if explicit:
        raise UsageError(f"no such notebook: {explicit}")
    raise UsageError(
        "cannot tell which notebook this kernel belongs to; "
        "pass it, e.g. %mlnb status path/to/notebook.ipynb, or set MLNB_NOTEBOOK"
    )
