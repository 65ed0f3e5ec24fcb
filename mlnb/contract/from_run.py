"""Learn a notebook's data contract again from the values a run's data stages saved.

The edge of :mod:`mlnb.contract` that reads the store: pick the run, load each data stage's
saved values (hash-checked), learn, keep each value's ``warn`` list, diff, write.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb import contract
from mlnb.errors import ContractFileError, RunNotFoundError
from mlnb.record_types import RunRecord
from mlnb.store import Store, write_atomic


@dataclass(frozen=True)
class Learned:
    file: str
    run_id: str
    diff: str
    changed: bool
    written: bool

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def learn_from_run(
    notebook: str, store_dir: str | None, run_id: str | None, *, write: bool
) -> Learned:
    from mlnb.run.outputs import load_value

    path = contract.contract_path(notebook)
    store = Store.for_notebook(notebook, store_dir)
    with store:
        record = store.get_run(run_id) if run_id else _latest_with_data(store, notebook)
        stages = [s for s in record["stages"] if s.get("kind") == "data"]
        if not stages:
            raise ContractFileError(
                f"run {record['run_id']} has no data stage, so there is nothing to learn",
                fix="tag the cells that load and prepare data `mlnb:data` (or `%%mlnb data`)",
                notebook=notebook,
            )
        missing = [s["name"] for s in stages if not s.get("outputs")]
        if missing:
            raise ContractFileError(
                f"data stage {missing[0]!r} of run {record['run_id']} saved no values",
                fix=f"run the notebook (`mlnb run {notebook}`), then learn from that run",
                notebook=notebook,
            )
        learned = {}
        for stage in stages:
            values = {n: load_value(r, store.root, n) for n, r in stage["outputs"].items()}
            learned[stage["name"]], _ = contract.learn_stage(values)
    found = contract.read(path)
    old_text, old_document = found if found is not None else ("", None)
    document = contract.refreshed(old_document, learned)
    text = contract.render(document, Path(notebook).name, record["run_id"])
    changed = not contract.same_rules(text, old_text)
    if changed and write:
        write_atomic(path, text)
    return Learned(
        path.name,
        record["run_id"],
        contract.diff(old_text, text, path.name) if changed else "",
        changed,
        changed and write,
    )


def _latest_with_data(store: Store, notebook: str) -> RunRecord:
    for record in store.list_runs(notebook):
        stages = [s for s in record["stages"] if s.get("kind") == "data"]
        if stages and all(s.get("outputs") for s in stages):
            return record
    raise RunNotFoundError(
        f"no run of {notebook} has saved its data stages' values",
        fix=f"run it first: mlnb run {notebook}",
        notebook=notebook,
    )
