"""Why a run failed, in one line for people: ``mlnb run``, a grid's points and the panel say it.

Pure (no papermill): the edges that show a failed run's record import it. The record module
is imported when a message is made, not with this module: ``mlnb run`` imports this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["failure_message"]


def failure_message(record: Mapping[str, Any]) -> str:
    """``run ID failed in stage 'fit', cell 6 ('model.fit(X)'): ValueError: ...``"""
    from mlnb.run.record import error_place

    error = record.get("error") or {}
    known = error.get("stage") or isinstance(error.get("cell_index", error.get("cell")), int)
    place = f" in {error_place(error)}" if known else ""
    if not known and error.get("injected") == "start":
        place = " before its first stage"
    message = f"run {record['run_id']} failed{place}: {error.get('ename')}"
    if error.get("evalue"):
        message += f": {error['evalue']}"
    return message
