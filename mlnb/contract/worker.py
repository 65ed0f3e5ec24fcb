"""The data contract checker, in a process of its own beside the kernel.

pandera takes about half a second to import and its first validation a quarter more.
``mlnb run`` starts this process (:class:`CheckerProcess`) before it starts the kernel, when a
data stage is to run, so the imports happen on the machine's other core while the kernel
boots, and never in a thread of the kernel (a thread importing while the notebook imports
can see a module half initialised). The kernel connects to it over a Unix socket
(:class:`ContractClient`); at a data stage's end it sends the references of the values it
just saved; this process loads them (hash-checked), learns or checks them and answers one
JSON line. A kernel that finds no socket starts its own checker on pipes.

Protocol, one JSON object per line: first ``{"text", "file", "sha256", "store"}`` from the
kernel, then ``{"stage", "refs"}`` per data stage, each answered ``{"report": ...}`` or
``{"error": {"code", "message", "fix"}}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_MLNB_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def serve(lines: Any, out: Any) -> None:
    from mlnb.contract import StageChecker
    from mlnb.errors import MlnbError
    from mlnb.run.outputs import load_value

    first = json.loads(next(lines))
    store = Path(first["store"])
    checker: StageChecker | MlnbError
    try:
        checker = StageChecker(first["text"], first["file"], first["sha256"])
    except MlnbError as error:
        checker = error  # every answer reports it
    for line in lines:
        request = json.loads(line)
        try:
            if isinstance(checker, MlnbError):
                raise checker
            refs = request["refs"]
            values = {name: load_value(ref, store, name) for name, ref in refs.items()}
            answer: dict[str, Any] = {"report": checker.apply(request["stage"], values)}
        except MlnbError as error:
            answer = {"error": {"code": error.code, "message": error.message, "fix": error.fix}}
        except Exception as error:  # reported to the kernel, which checks there instead
            answer = {"error": {"code": "", "message": f"{type(error).__name__}: {error}"}}
        out.write(json.dumps(answer, default=str) + "\n")
        out.flush()


class CheckerProcess:
    """The run's side: the checker process, listening on a Unix socket until the kernel
    connects (or the run's process is gone)."""

    def __init__(self) -> None:
        # A short path: a Unix socket's path is limited to about 100 bytes.
        name = f"mlnb-contract-{os.getpid()}-{secrets.token_hex(4)}.sock"
        self.path = os.path.join(tempfile.gettempdir(), name)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlnb.contract.worker", "--socket", self.path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()  # reaped: no "still running" ResourceWarning
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class ContractClient:
    """The kernel's side: ask the checker per data stage.

    It connects to the run's checker process (``socket``), else starts one on pipes; when
    neither answers, the kernel checks in its own process (slower to import, the same
    verdict).
    """

    def __init__(
        self, text: str | None, file: str, sha: str | None, store: Path, socket_path: str | None
    ) -> None:
        self.text, self.file, self.sha = text, file, sha
        self.process: subprocess.Popen[str] | None = None
        self.connection: socket.socket | None = None
        self.reader: Any = None
        self.writer: Any = None
        with contextlib.suppress(OSError):
            if socket_path:
                self._connect(socket_path)
            if self.writer is None:
                self._spawn()
            self._send({"text": text, "file": file, "sha256": sha, "store": str(store)})

    def _connect(self, path: str) -> None:
        deadline = time.monotonic() + 10
        while True:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                connection.connect(path)
                break
            except OSError:
                connection.close()
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
        self.connection = connection
        self.reader = connection.makefile("r", encoding="utf-8")
        self.writer = connection.makefile("w", encoding="utf-8")

    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_MLNB_PARENT, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlnb.contract.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.reader, self.writer = self.process.stdout, self.process.stdin

    def _send(self, message: Mapping[str, Any]) -> None:
        self.writer.write(json.dumps(message) + "\n")
        self.writer.flush()

    def apply(
        self, stage: str, values: Mapping[str, Any], refs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The stage's report (see :meth:`mlnb.contract.StageChecker.apply`)."""
        from mlnb.contract import is_tabular
        from mlnb.errors import ContractFileError

        tabular = {n: refs[n] for n, v in values.items() if n in refs and is_tabular(v)}
        answer = None
        if self.writer is not None and (self.process is None or self.process.poll() is None):
            try:
                self._send({"stage": stage, "refs": tabular})
                answer = json.loads(self.reader.readline() or "null")
            except (OSError, ValueError):
                answer = None
        if answer and "report" in answer:
            report: dict[str, Any] = answer["report"]
            return report
        if answer and answer["error"].get("code") == ContractFileError.code:
            error = answer["error"]
            raise ContractFileError(error["message"], fix=error.get("fix"), stage=stage)
        return self._here(stage, {n: values[n] for n in tabular})

    def _here(self, stage: str, values: Mapping[str, Any]) -> dict[str, Any]:
        from mlnb.contract import StageChecker

        return StageChecker(self.text, self.file, self.sha).apply(stage, values)

    def close(self) -> None:
        for stream in (self.writer, self.reader):
            with contextlib.suppress(OSError, AttributeError):
                stream.close()
        if self.connection is not None:
            self.connection.close()
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def _listen(path: str) -> None:
    """Serve one connection on a Unix socket; leave when the run's process is gone."""
    from mlnb.contract import warm_up

    parent = os.getppid()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(1.0)
    warm_up()
    while True:
        try:
            connection, _ = server.accept()
            break
        except TimeoutError:
            if os.getppid() != parent:
                return
    connection.settimeout(None)
    reader = connection.makefile("r", encoding="utf-8")
    writer = connection.makefile("w", encoding="utf-8")
    with connection, reader, writer:
        serve(iter(reader.readline, ""), writer)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--socket":
        _listen(sys.argv[2])
        return
    from mlnb.contract import warm_up

    warm_up()
    serve(iter(sys.stdin.readline, ""), sys.stdout)


if __name__ == "__main__":
    main()
