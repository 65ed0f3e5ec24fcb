"""The data contract checker, in a process of its own beside the kernel.

pandera takes about half a second to import and its first validation a quarter more. The
kernel starts this process when its first cell runs (when a data stage is to run), so the
import happens on the machine's other core while the notebook's first cells run, and never
in a thread of the kernel (a thread importing while the notebook imports can see a module
half initialised). At a data stage's end the kernel sends the references of the values it
just saved; this process loads them (hash-checked), learns or checks them and answers one
JSON line.

Protocol, one JSON object per line: first ``{"text", "file", "sha256", "store"}`` from the
kernel, then ``{"stage", "refs"}`` per data stage, each answered ``{"report": ...}`` or
``{"error": {"code", "message", "fix"}}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
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


class ContractClient:
    """The kernel's side: start the checker process, ask it per data stage.

    When the process cannot start or stops answering, the kernel checks in its own process
    (slower to import, the same verdict).
    """

    def __init__(self, text: str | None, file: str, sha: str | None, store: Path) -> None:
        self.text, self.file, self.sha = text, file, sha
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_MLNB_PARENT, env.get("PYTHONPATH")]))
        self.process: subprocess.Popen[str] | None = None
        with contextlib.suppress(OSError):
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlnb.contract.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
            )
            self._send({"text": text, "file": file, "sha256": sha, "store": str(store)})

    def _send(self, message: Mapping[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def apply(
        self, stage: str, values: Mapping[str, Any], refs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The stage's report (see :meth:`mlnb.contract.StageChecker.apply`)."""
        from mlnb.contract import is_tabular
        from mlnb.errors import ContractFileError

        tabular = {n: refs[n] for n, v in values.items() if n in refs and is_tabular(v)}
        answer = None
        if self.process is not None and self.process.poll() is None:
            try:
                self._send({"stage": stage, "refs": tabular})
                assert self.process.stdout is not None
                answer = json.loads(self.process.stdout.readline() or "null")
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
        if self.process is not None:
            with contextlib.suppress(OSError):
                if self.process.stdin is not None:
                    self.process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=2)
            if self.process.poll() is None:
                self.process.kill()


def main() -> None:
    from mlnb.contract import warm_up

    warm_up()
    serve(iter(sys.stdin.readline, ""), sys.stdout)


if __name__ == "__main__":
    main()
