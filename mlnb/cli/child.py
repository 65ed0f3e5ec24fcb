"""Running ``mlnb run ... --json`` in a child process, for commands made of many runs."""

from __future__ import annotations

from typing import Any

from mlnb import child_process


def run_in_child(
    notebook: str, options: list[str], store: str | None, no_cache: bool
) -> tuple[dict[str, Any] | None, str | None]:
    """``(run record, None)``, or ``(None, the error mlnb printed)`` when no record came back."""
    words = ["run", notebook, "--json", *options]
    if store:
        words += ["--store", store]
    if no_cache:
        words.append("--no-cache")
    finished = child_process.run(words)
    record = finished.run_record()
    if record is not None:
        return record, None
    message = child_process.error_message(finished.stderr)
    return None, message or f"mlnb run exited {finished.returncode}"
