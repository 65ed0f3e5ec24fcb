"""Running ``mlnb run ... --json`` in a child process, for commands made of many runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def run_in_child(
    notebook: str, options: list[str], store: str | None, no_cache: bool
) -> tuple[dict[str, Any] | None, str | None]:
    """``(run record, None)``, or ``(None, the error mlnb printed)`` when no record came back."""
    argv = [sys.executable, "-m", "mlnb", "run", notebook, "--json", *options]
    if store:
        argv += ["--store", store]
    if no_cache:
        argv.append("--no-cache")
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    completed = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    try:
        record = json.loads(completed.stdout)
    except ValueError:
        record = None
    if isinstance(record, dict) and "run_id" in record:
        return record, None
    message = completed.stderr.strip().removeprefix("mlnb: error: ")
    return None, message or f"mlnb run exited {completed.returncode}"
