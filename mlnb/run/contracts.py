"""The run's side of data contracts: what the kernel checks against, and the file it learns.

Before the kernel starts, the contract beside the notebook is read (a broken file stops the
run here, naming the field) and stored as an object, so the kernel, the run record and a
later build all see the same bytes. After a run that learned a contract (there was none), the
file is written, and the data stages' cache entries are marked as checked against it, so the
next run reuses them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from mlnb import contract
from mlnb.record_types import ContractRef, RunRecord, StageEntry
from mlnb.run.outputs import write_object
from mlnb.run.plan import RunPlan
from mlnb.store import Store

DATA_KIND = "data"


def kernel_config(plan: RunPlan, store: Store) -> dict[str, Any] | None:
    """What the kernel learns or checks data stages against; None when no data stage runs."""
    if not contract.enabled():
        return None
    if not any(s.action == "run" and s.stage.kind == DATA_KIND for s in plan.stages):
        return None
    path = contract.contract_path(plan.notebook)
    found = contract.read(path)
    if found is None:
        return {"file": path.name, "sha256": None, "object": None}
    text, _ = found
    ref = _store_text(store, text)
    return {"file": path.name, "sha256": ref["sha256"], "object": ref}


def start_checker(config: dict[str, Any] | None) -> Any:
    """The checker process the kernel connects to (its socket goes into ``config``); None
    when no data stage runs or the process cannot start (the kernel then starts its own)."""
    if config is None:
        return None
    from mlnb.contract.worker import CheckerProcess

    try:
        checker = CheckerProcess()
    except OSError:
        return None
    config["socket"] = checker.path
    return checker


def record_contract(plan: RunPlan, store: Store) -> ContractRef | None:
    """The run record's ``contract`` for a run that checked nothing (its data stages were
    reused): the file as it is, which the plan found unchanged since they were checked."""
    path = contract.contract_path(plan.notebook)
    if not contract.enabled() or not path.is_file():
        return None
    if not any(s.stage.kind == DATA_KIND for s in plan.stages):
        return None
    return _reference(path, _store_text(store, path.read_text(encoding="utf-8")))


def settle(
    plan: RunPlan,
    store: Store,
    record: RunRecord,
    used: Mapping[str, Any] | None,
    learned: Mapping[str, Any],
    notice: Callable[[str], None],
) -> None:
    """After the run: write the contract it learned (when it succeeded and none exists yet)
    and point the record and the data stages' cache entries at the contract they met."""
    path = contract.contract_path(plan.notebook)
    if used and used.get("object"):
        record["contract"] = _reference(path, used["object"])
        return
    if used is None:  # no data stage ran: the file as it is
        record["contract"] = record_contract(plan, store)
        return
    record["contract"] = None
    if record["status"] != "succeeded" or not learned:
        return
    document = contract.new_document(learned)
    text = contract.render(document, Path(plan.notebook).name, record["run_id"])
    if contract.write_new(path, text):
        notice(
            f"wrote the data contract {path.name}, learned from this run's data stages: "
            "review it and commit it; every run now checks them against it"
        )
    else:  # another run wrote one meanwhile: when it learned the same, these values meet it
        text = path.read_text(encoding="utf-8", errors="replace")
        if not contract.same_rules(text, contract.render(document, "", "")):
            return
    ref = _store_text(store, text)
    _mark_checked(plan, store, record, ref["sha256"])
    record["contract"] = _reference(path, ref)


def _reference(path: Path, ref: Mapping[str, str]) -> ContractRef:
    return {"file": str(path), "sha256": ref["sha256"], "object": dict(ref)}


def _mark_checked(plan: RunPlan, store: Store, record: RunRecord, sha: str | None) -> None:
    """The learned stages' values pass the contract learned from them: record it so."""
    learned = [s for s in record["stages"] if _contract_status(s) == "learned"]
    for stage in learned:
        stage["contract"] = {**stage["contract"], "sha256": sha}
        key = plan.stage(stage["name"]).key
        entry = store.cache_lookup([key]).get(key)
        if entry is not None and entry.get("run_id") == record["run_id"]:
            entry["contract"] = {**stage["contract"], "status": "passed"}
            store.cache_put(key, plan.notebook, stage["name"], entry)


def _contract_status(stage: StageEntry) -> str | None:
    verdict = stage.get("contract")
    return verdict.get("status") if verdict else None


def _store_text(store: Store, text: str) -> dict[str, str]:
    data = text.encode("utf-8")

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    sha, relative = write_object(store.root, write)
    return {"path": relative, "sha256": sha}
