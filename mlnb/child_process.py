"""``python -m mlnb ...`` in a child process: its command line, its environment, its start,
and the JSON it answers with.

Every part of mlnb that hands work to another mlnb process comes here: the build that runs a
notebook with no run yet, the CLI's commands made of many runs, the ``%mlnb`` magic and panel
(the kernel never does the work), and the server extension (it never blocks). So there is one
answer to what the child inherits (:func:`environment`) and one reader of its ``--json``
answer (:func:`read_json`), whose error names the command.

The standard library and :mod:`mlnb.bounded_json` only: no IPython, tornado or BentoML.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mlnb import bounded_json
from mlnb.errors import MlnbError

MAX_OUTPUT_BYTES = 256 * 1024 * 1024  # `mlnb runs --json` of a store with many runs
MAX_OUTPUT_DEPTH = 200


def command(words: Sequence[str], python: str | None = None) -> list[str]:
    """``[python, "-m", "mlnb", *words]``, the interpreter running this one by default."""
    return [python or sys.executable, "-m", "mlnb", *words]


def environment(cwd: str | Path | None = None) -> dict[str, str]:
    """What a child mlnb process inherits: this process's environment, and

    - ``BENTOML_DO_NOT_TRACK=True``: no usage tracking from the processes mlnb starts;
    - ``PYTHONUNBUFFERED=1``: its progress (stderr) arrives as it is written, so a job's log
      is live and nothing is lost when it is killed;
    - ``PWD`` naming the folder it starts in (``cwd``, else this process's), as a shell sets
      it: a served Bento reads where it was started from ``$PWD``
      (:func:`mlnb.serving.runtime.serving_folder`), and a parent started elsewhere leaves
      it stale.
    """
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PYTHONUNBUFFERED": "1"}
    with contextlib.suppress(OSError):  # a working folder removed meanwhile: leave PWD
        env["PWD"] = os.path.abspath(cwd) if cwd is not None else os.getcwd()
    return env


def named(words: Sequence[str]) -> str:
    """The command as a person names it: ``mlnb run``, ``mlnb runs``, ``mlnb report``."""
    return " ".join(["mlnb", *words[:1]])


def read_json(output: str | bytes, words: Sequence[str]) -> Any:
    """The JSON a ``--json`` command printed; an :class:`~mlnb.errors.InputLimitError`
    naming the command (``the output of `mlnb run` is not valid JSON: ...``) when it is not
    JSON, or breaks the size and depth limits."""
    return bounded_json.loads(
        output,
        max_bytes=MAX_OUTPUT_BYTES,
        max_depth=MAX_OUTPUT_DEPTH,
        what=f"the output of `{named(words)}`",
        fix=f"run `{named(words)} --json` in a terminal to see what it prints",
    )


def run_record(output: str | bytes, words: Sequence[str] = ("run",)) -> dict[str, Any] | None:
    """The run record ``mlnb run --json`` printed (a mapping with a ``run_id``), or None."""
    try:
        found = read_json(output, words)
    except MlnbError:
        return None
    return found if isinstance(found, dict) and "run_id" in found else None


def error_message(stderr: str) -> str:
    """What mlnb said went wrong on stderr, without argparse's ``mlnb: error:`` prefix."""
    return stderr.strip().removeprefix("mlnb: error: ")


@dataclass(frozen=True)
class Finished:
    """A child mlnb command that ended: its words, exit code and output."""

    words: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """:func:`read_json` of its standard output."""
        return read_json(self.stdout, self.words)

    def run_record(self) -> dict[str, Any] | None:
        return run_record(self.stdout, self.words)


def run(
    words: Sequence[str],
    *,
    cwd: str | Path | None = None,
    show_progress: bool = False,
    python: str | None = None,
) -> Finished:
    """Run ``mlnb WORDS`` to its end and capture what it prints; ``show_progress`` leaves its
    stderr (progress and errors) on this process's own, for a person to watch."""
    completed = subprocess.run(
        command(words, python),
        stdout=subprocess.PIPE,
        stderr=None if show_progress else subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=environment(cwd),
        text=True,
        errors="replace",
        check=False,
    )
    return Finished(tuple(words), completed.returncode, completed.stdout, completed.stderr or "")


async def run_async(
    words: Sequence[str],
    *,
    timeout: float,
    cwd: str | Path | None = None,
    python: str | None = None,
) -> Finished:
    """:func:`run` on the running asyncio loop (a server that must not block): the child is
    killed, and :class:`TimeoutError` raised, after ``timeout`` seconds."""
    import asyncio  # here, not at import: every CLI command imports this module

    process = await asyncio.create_subprocess_exec(
        *command(words, python),
        cwd=None if cwd is None else str(cwd),
        env=environment(cwd),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise TimeoutError(f"`{named(words)}` took over {timeout:g} s") from None
    return Finished(
        tuple(words),
        int(process.returncode or 0),
        stdout.decode("utf-8", "replace"),
        stderr.decode("utf-8", "replace"),
    )


@dataclass
class Started:
    """A child mlnb command going on in its own session, its output kept in files: whoever
    started it polls :attr:`finished` (the panel, on the kernel's event loop) and never blocks
    on a pipe the child fills."""

    words: tuple[str, ...]
    process: subprocess.Popen[bytes]
    _stdout: IO[bytes] = field(repr=False)
    _stderr: IO[bytes] = field(repr=False)
    _texts: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.process.poll() is not None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def output(self) -> tuple[str, str]:
        """Standard output and error, once finished: read the first time, when their files
        are closed (an open temporary file left to the garbage collector is a leak)."""
        if self._texts is None:
            texts = []
            for handle in (self._stdout, self._stderr):
                with handle:
                    handle.seek(0)
                    texts.append(handle.read().decode(errors="replace"))
            self._texts = (texts[0], texts[1])
        return self._texts


def start(
    words: Sequence[str], *, cwd: str | Path | None = None, python: str | None = None
) -> Started:
    """Start ``mlnb WORDS`` and return at once (see :class:`Started`)."""
    stdout = tempfile.TemporaryFile()  # noqa: SIM115 (read once the process ends)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115
    process = subprocess.Popen(
        command(words, python),
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=environment(cwd),
        start_new_session=True,
    )
    return Started(tuple(words), process, stdout, stderr)
