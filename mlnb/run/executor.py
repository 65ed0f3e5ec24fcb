"""papermill at the edge: execute the assembled notebook in a fresh kernel, survive failures.

papermill injects the parameters after the ``parameters`` cell and nbclient runs the cells.
mlnb hooks in through nbclient's callbacks (to see each cell start and finish, and to keep the
notebook object when the kernel dies) and a kernel manager that sends the kernel's own output
to the run's log instead of the terminal. Ctrl-C or SIGTERM interrupts the kernel, so the
running cell fails with ``KeyboardInterrupt`` and the executed notebook is still written; a
kernel that does not stop within a grace period, or a second signal, kills it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from mlnb.store import write_atomic

INTERRUPT_GRACE_S = 10.0


@dataclass
class Failure:
    ename: str
    evalue: str
    cell: dict[str, Any] | None  # the failing cell's metadata.mlnb_run


class RunInterrupted(Exception):
    """Raised before the next cell starts once the run was interrupted."""


class Execution:
    """One run of one notebook: its kernel, its current cell, and the signals it received."""

    def __init__(self, log_path: Path, on_cell_done: Callable[[], None]) -> None:
        self.log_path = log_path
        self.on_cell_done = on_cell_done
        self.notebook: Any = None
        self.current: dict[str, Any] | None = None
        self.kernel: subprocess.Popen[bytes] | None = None
        self.signal_name: str | None = None
        self.signals = 0
        self.done = False
        self.killed = False
        self.kernel_name = ""
        self._log: IO[bytes] | None = None

    # --- signals (installed by the runner for the whole run) ---

    @contextlib.contextmanager
    def signals_handled(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only; its owner handles them
            return
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.signal_name = self.signal_name or signal.Signals(signum).name
        kernel = self.kernel
        if kernel is None or kernel.poll() is not None or self.done:
            return
        if self.signals == 1:
            with contextlib.suppress(OSError):
                os.kill(kernel.pid, signal.SIGINT)
            timer = threading.Timer(INTERRUPT_GRACE_S, self._kill_kernel)
            timer.daemon = True
            timer.start()
        else:
            self._kill_kernel()

    def _kill_kernel(self) -> None:
        kernel = self.kernel
        if kernel is not None and kernel.poll() is None and not self.done:
            self.killed = True
            with contextlib.suppress(OSError):
                kernel.kill()

    @property
    def interrupted(self) -> bool:
        return self.signal_name is not None

    # --- nbclient hooks ---

    def _notebook_started(self, notebook: Any, **_: Any) -> None:
        self.notebook = notebook

    def _cell_started(self, cell: Any, cell_index: int, **_: Any) -> None:
        if self.interrupted:
            raise RunInterrupted(self.signal_name)
        if cell.get("cell_type") == "code":
            self.current = dict(cell.get("metadata", {}).get("mlnb_run") or {})

    def _cell_executed(self, cell: Any, cell_index: int, **_: Any) -> None:
        self.on_cell_done()

    # --- execution ---

    def execute(
        self,
        document: dict[str, Any],
        output_path: Path,
        parameters: dict[str, Any],
        kernel_name: str,
        cwd: Path,
    ) -> Failure | None:
        """Run the notebook; write the executed notebook to ``output_path`` whatever happens."""
        import nbformat
        import papermill  # type: ignore[import-untyped]
        from papermill.exceptions import PapermillExecutionError  # type: ignore[import-untyped]

        self.kernel_name = kernel_name
        partial = output_path.with_name(f".{output_path.stem}.partial{output_path.suffix}")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in finally)
        failure: Failure | None = None
        try:
            with _loggers_to(self._log):
                papermill.execute_notebook(
                    nbformat.from_dict(document),  # type: ignore[no-untyped-call]
                    str(partial),
                    parameters=parameters or None,
                    kernel_name=kernel_name,
                    progress_bar=False,
                    log_output=False,
                    request_save_on_cell_execute=False,
                    resources={"metadata": {"path": str(cwd)}},
                    kernel_manager_class=_kernel_manager_class(self),
                    on_notebook_start=self._notebook_started,
                    on_cell_start=self._cell_started,
                    on_cell_executed=self._cell_executed,
                )
        except PapermillExecutionError as exc:
            ename, evalue = exc.ename, exc.evalue
            if ename == "CellExecutionError" and not evalue:  # no error output: read stderr
                ename, evalue = _stderr_error(self._current_cell()) or (ename, evalue)
            failure = self._failure(ename, evalue)
        except RunInterrupted:
            failure = self._failure("KeyboardInterrupt", "")
        except Exception as exc:
            failure = self._failure(type(exc).__name__, str(exc))
        finally:
            self.done = True
            self._log.close()
        if partial.exists():
            os.replace(partial, output_path)
        elif self.notebook is not None:
            write_atomic(output_path, nbformat.writes(self.notebook))  # type: ignore[no-untyped-call]
        return failure

    def _current_cell(self) -> Any:
        """The executed notebook's cell that was running, found by its ``mlnb_run`` metadata."""
        if self.notebook is None or self.current is None:
            return None
        for cell in self.notebook.get("cells", []):
            if cell.get("cell_type") == "code" and (
                dict(cell.get("metadata", {}).get("mlnb_run") or {}) == self.current
            ):
                return cell
        return None

    def _failure(self, ename: str, evalue: str) -> Failure:
        cell = self.current
        if self.interrupted:
            how = "interrupted by SIGINT (Ctrl-C)"
            if self.signal_name != "SIGINT":
                how = f"stopped by {self.signal_name}"
            if self.killed:
                how += f"; the kernel did not stop within {INTERRUPT_GRACE_S:g} s and was killed"
            return Failure("KeyboardInterrupt", f"the run was {how}", cell)
        if ename == "DeadKernelError":
            return Failure("DeadKernelError", self._death(), cell)
        if ename == "NoSuchKernel":
            return Failure(ename, _no_such_kernel(self.kernel_name), None)
        return Failure(ename, evalue, cell)

    def _death(self) -> str:
        code = None if self.kernel is None else self.kernel.poll()
        if code is None:
            return "the kernel died while running this cell"
        if code < 0:
            name = f"signal {-code}"
            with contextlib.suppress(ValueError):
                name = signal.Signals(-code).name
            return f"the kernel was killed by {name} while running this cell"
        return f"the kernel exited with code {code} while running this cell (os._exit?)"


_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)): ?(.*)$")
MISSING_MLNB_MAGIC = "Cell magic `%%mlnb` not found"


def _stderr_error(cell: Any) -> tuple[str, str] | None:
    """IPython's error name and message when a cell failed without an error output.

    IPython reports a :class:`~IPython.core.error.UsageError` (an unknown magic, bad magic
    arguments) as a line on stderr, ``UsageError: Cell magic `%%x` not found.``, and papermill
    then knows only ``CellExecutionError``.
    """
    if cell is None:
        return None
    lines: list[str] = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = output.get("text", "")
            lines += ("".join(text) if isinstance(text, list) else str(text)).splitlines()
    lines = [line.strip() for line in lines if line.strip()]
    if not lines:
        return None
    for line in reversed(lines):
        match = _ERROR_LINE.match(line)
        if match:
            ename, evalue = match.group(1), match.group(2)
            if MISSING_MLNB_MAGIC in evalue:
                evalue += " (add a first code cell `%load_ext mlnb` to the notebook)"
            return ename, evalue
    return "CellExecutionError", lines[-1]


def _no_such_kernel(name: str) -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    installed = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
    return (
        f"no Jupyter kernel named {name!r} is installed "
        f"(installed: {installed}); "
        "set the notebook's kernel to one of them, or install it "
        "(python -m ipykernel install --user --name NAME)"
    )


def _kernel_manager_class(execution: Execution) -> type:
    """A kernel manager whose kernel writes to the run's log and reports its process."""
    from jupyter_client.manager import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw.setdefault("stdin", subprocess.DEVNULL)
            kw.setdefault("stdout", execution._log)
            kw.setdefault("stderr", execution._log)
            await super().start_kernel(**kw)
            process = getattr(self.provisioner, "process", None)
            if isinstance(process, subprocess.Popen):
                execution.kernel = process

    return RunKernelManager


@contextlib.contextmanager
def _loggers_to(stream: IO[bytes]) -> Iterator[None]:
    """papermill's, nbclient's and jupyter_client's log lines go to the run's log file."""
    handler = logging.StreamHandler(_TextWriter(stream))
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in ("papermill", "traitlets", "nbclient")]
    saved = [(lg, lg.propagate, list(lg.handlers)) for lg in loggers]
    for logger in loggers:
        logger.handlers = [handler]
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate, handlers in saved:
            logger.handlers = handlers
            logger.propagate = propagate


class _TextWriter:
    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if not self.stream.closed:
            self.stream.write(text.encode(errors="replace"))
        return len(text)

    def flush(self) -> None:
        if not self.stream.closed:
            self.stream.flush()
