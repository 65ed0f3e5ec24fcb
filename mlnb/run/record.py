"""The run record (``run.json``): made from the plan, updated from the kernel's events.

Stage status comes from what executed: a stage is ``ran`` when its closing injected cell
reported, ``running`` between its opening and closing cells, ``cached`` when reused,
``failed`` when the run stopped inside it, and ``not-run`` otherwise.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

from mlnb import __version__
from mlnb.cell_numbers import cell_label
from mlnb.record_types import (
    RECORD_VERSION,
    ArtifactEntry,
    ErrorInfo,
    FileRef,
    RunRecord,
    RunStatus,
    StageContract,
    StageEntry,
)
from mlnb.run.plan import RunPlan, StagePlan
from mlnb.store import Store, utc_now


def new_record(
    plan: RunPlan, run_id: str, store: Store, status: RunStatus = "running"
) -> RunRecord:
    """The record of a run about to start: every stage as the plan decided it."""
    pipeline = plan.pipeline
    return {
        "record_version": RECORD_VERSION,
        "run_id": run_id,
        "status": status,
        "notebook": {
            "path": plan.notebook,
            "sha256": pipeline.notebook_sha256,
            "flavour": pipeline.flavour,
        },
        "parameters": plan.parameters,
        "given_parameters": plan.given,
        "stages": [stage_entry(s) for s in plan.stages],
        "notices": list(pipeline.notices),
        "metrics": {},
        "model": None,
        "training_data": None,
        "environment": None,
        "git": None,
        "inputs": [],
        "artifacts": [],
        "error": None,
        "started_at": utc_now(),
        "finished_at": None,
        "seconds": None,
        "builds": [],
        "store": str(store.root),
        "executed_notebook": f"runs/{run_id}/notebook.ipynb",
        "kernel": pipeline.kernel_name or "python3",
        "no_cache": plan.no_cache,
        "mlnb_version": __version__,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }


def with_index_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    """A run record with the explicit 0-based keys (``error.cell_index``, each stage's
    ``cell_indexes``) filled in from the old ones: records written before issue 20 have only
    ``cell`` and ``cells``. The record itself is not changed."""
    public = dict(record)
    error = public.get("error")
    if isinstance(error, Mapping) and "cell_index" not in error:
        public["error"] = {**error, "cell_index": error.get("cell")}
    stages = public.get("stages")
    if isinstance(stages, list):
        public["stages"] = [
            {**s, "cell_indexes": s.get("cells")}
            if isinstance(s, Mapping) and "cell_indexes" not in s and "cells" in s
            else s
            for s in stages
        ]
    return public


def error_place(error: Mapping[str, Any]) -> str:
    """Where a run failed, for people: ``stage 'train', cell 6 ('model.fit(X)')``."""
    where = [f"stage {error['stage']!r}"] if error.get("stage") else []
    index = error.get("cell_index", error.get("cell"))
    if isinstance(index, int):
        first = f" ({error['first_line']!r})" if error.get("first_line") else ""
        where.append(f"{cell_label(index)}{first}")
    return ", ".join(where) or "before its first stage"


def stage_entry(plan: StagePlan) -> StageEntry:
    entry = plan.entry or {}
    cached = plan.action == "cached"
    stage: StageEntry = {
        "name": plan.name,
        "kind": plan.stage.kind,
        "cells": list(plan.stage.cells),
        "cell_indexes": list(plan.stage.cells),
        "depends_on": list(plan.stage.depends_on),
        "action": plan.action,
        "status": "cached" if cached else "not-run",
        "seconds": 0.0 if cached else None,
        "cache_key": plan.key,
        "reason": plan.reason,
        "from_run": entry.get("run_id") if cached else None,
        "outputs": dict(entry.get("outputs") or {}) if cached else {},
        "metrics": dict(entry.get("metrics") or {}) if cached else {},
    }
    if cached and entry.get("contract"):
        stage["contract"] = entry["contract"]
    return stage


class Recorder:
    """Applies the kernel's events to the record, the stage cache and the progress display."""

    def __init__(self, plan: RunPlan, record: RunRecord, store: Store, progress: Any) -> None:
        self.plan = plan
        self.record = record
        self.store = store
        self.progress = progress
        self.results: dict[str, dict[str, Any]] = {}  # stage -> its end event (or cache entry)
        self.contracts: dict[str, dict[str, Any]] = {}  # data stage -> its contract report
        self.learned: dict[str, dict[str, Any]] = {}  # data stage -> the contract it learned
        self.kernel: dict[str, Any] | None = None
        self.finished = False
        # Values a stage changed in place that the plan did not foresee. The stages after it
        # that load them ran on the changed value but under keys that miss the change, so
        # their results are not cached; where such a stage was reused instead, its result is
        # stale, and the runner runs the notebook again on the corrected plan.
        self.unforeseen: list[str] = []
        self._tainted_names: set[str] = set()
        self._tainted_stages: set[str] = set()
        self.started_monotonic = time.monotonic()
        for stage in plan.stages:
            if stage.action == "cached" and stage.entry is not None:
                self.results[stage.name] = stage.entry

    def stage(self, name: str) -> StageEntry:
        return next(s for s in self.record["stages"] if s["name"] == name)

    def apply(self, events: Iterable[Mapping[str, Any]]) -> None:
        changed = False
        for event in events:
            changed = True
            kind = event.get("event")
            if kind == "start":
                self.kernel = dict(event)
            elif kind == "begin":
                entry = self.stage(event["stage"])
                entry["status"] = "running"
                entry["started_at"] = utc_now()
                self.progress.stage_started(entry)
            elif kind == "end":
                self._stage_ended(dict(event))
            elif kind == "contract":
                self._contract(dict(event))
            elif kind == "loaded":
                self.stage(event["stage"])["loaded"] = list(event.get("names", []))
            elif kind == "finish":
                self.finished = True
        if changed:
            self.store.save_run(self.record)

    def _stage_ended(self, event: dict[str, Any]) -> None:
        name = event["stage"]
        plan = self.plan.stage(name)
        paths = sorted(set(event.get("inputs", [])) | set(event.get("artifacts", [])))
        hashes = self.store.fingerprints(paths) if paths else {}
        event["inputs"] = [{"path": p, "sha256": hashes.get(p)} for p in event.get("inputs", [])]
        event["artifacts"] = [
            {"path": p, "sha256": hashes.get(p)} for p in event.get("artifacts", [])
        ]
        entry = self.stage(name)
        entry["status"] = "ran"
        entry["seconds"] = round(float(event.get("seconds", 0.0)), 3)
        entry["save_seconds"] = round(float(event.get("save_seconds", 0.0)), 3)
        entry["outputs"] = event.get("outputs", {})
        entry["metrics"] = event.get("metrics", {})
        if event.get("changed"):
            entry["changed"] = event["changed"]
        if event.get("unchecked"):
            entry["unchecked"] = event["unchecked"]
        if event.get("model_guessed"):
            entry["model_guessed"] = event["model_guessed"]
        if event.get("model_guessed"):
            self._notice(
                f"step {name!r} serves {event['model_guessed']!r}, the one fitted model it "
                'defines (to name another: cell.metadata.mlnb = {"version": 1, "model": VAR})'
            )
        self.results[name] = event
        tainted = self._taint(plan, event.get("unplanned_changes") or [])
        if tainted:
            entry["not_cached"] = tainted
        else:
            self._cache(plan, entry, event)
        self._collect()
        self.progress.stage_finished(entry)

    def _contract(self, event: dict[str, Any]) -> None:
        """A data stage's contract report: kept with the stage (and its cache entry); what
        it learned is kept for the runner to write; warnings are shown."""
        name = event["stage"]
        report = dict(event["report"])
        learned = report.pop("learned", None)
        if learned:
            self.learned[name] = learned
        self.contracts[name] = report
        entry = self.stage(name)
        entry["contract"] = cast(StageContract, report)
        if report["status"] == "failed":
            entry["outputs"] = event.get("outputs") or {}  # `mlnb contract` can learn from them
        for violation in report.get("violations") or []:
            if violation["severity"] == "warn":
                self._notice(
                    f"stage {name!r}: {violation['value']}: {violation['message']} (a `warn` "
                    f"rule of {report['file']})"
                )
        for value, why in (report.get("not_learned") or {}).items():
            self._notice(f"stage {name!r}: no contract learned for {value!r} ({why})")

    def _notice(self, text: str) -> None:
        notice = getattr(self.progress, "notice", None)
        if notice is not None:
            notice(text)

    def _taint(self, plan: StagePlan, unplanned: list[str]) -> str | None:
        """Why this stage's result must not be cached, when it ran on a wrong plan."""
        stage = plan.stage
        reason = None
        wrong = self._tainted_names & set(stage.loads)
        upstream = self._tainted_stages & set(stage.depends_on)
        if wrong:
            reason = f"it loads {', '.join(sorted(wrong))}, which an earlier stage changed in place"
        elif upstream:
            reason = f"stage {sorted(upstream)[0]!r} ran on a plan that was corrected"
        if reason:
            self._tainted_stages.add(stage.name)
        position = next(i for i, s in enumerate(self.plan.stages) if s.name == stage.name)
        later = self.plan.stages[position + 1 :]
        reused = {n for s in later if s.action == "cached" for n in s.stage.loads}
        for name in unplanned:
            self._tainted_names.add(name)
            if name not in reused:
                continue  # the stages after it that read it ran here, on the changed value
            self.unforeseen.append(
                f"stage {stage.name!r} changed {name!r} in place, which mlnb's reading of the "
                "code did not foresee"
            )
        return reason

    def _cache(self, plan: StagePlan, entry: StageEntry, event: dict[str, Any]) -> None:
        name = plan.name
        cache_entry = {
            "run_id": self.record["run_id"],
            "stage": name,
            "components": plan.components,
            "seconds": entry["seconds"],
            **{
                k: event.get(k)
                for k in ("outputs", "metrics", "model", "training_data", "inputs", "artifacts")
            },
            "changed": event.get("changed") or [],
        }
        if name in self.contracts:
            cache_entry["contract"] = self.contracts[name]
        if "model" not in event:
            cache_entry.pop("model")
            cache_entry.pop("training_data")
        self.store.cache_put(plan.key, self.plan.notebook, name, cache_entry)

    def _collect(self) -> None:
        """Run-level metrics, model and training data from the stages' results, in order."""
        metrics: dict[str, Any] = {}
        for stage in self.plan.stages:
            result = self.results.get(stage.name)
            if result is None:
                continue
            metrics.update(result.get("metrics") or {})
            if result.get("model"):
                self.record["model"] = result["model"]
                self.record["training_data"] = result.get("training_data")
        self.record["metrics"] = metrics

    def finish(self, error: ErrorInfo | None) -> RunRecord:
        """Close the record: status, error, stages that did not run, inputs and artifacts."""
        record = self.record
        if error is None and not self.finished:
            error = {
                "stage": None,
                "cell": None,
                "cell_index": None,
                "ename": "IncompleteRun",
                "evalue": "the notebook stopped before its last cell (sys.exit()?)",
            }
        for entry in record["stages"]:
            if entry["status"] == "running":
                entry["status"] = "failed"
                if error is not None and error.get("stage") is None:
                    error["stage"] = entry["name"]
        failed_stage = error.get("stage") if error is not None else None
        if failed_stage:
            failed = self.stage(failed_stage)
            if failed["status"] in ("not-run", "running", "cached"):  # cached: its load failed
                failed["status"] = "failed"
        self._collect()
        record["inputs"] = self._inputs()
        record["artifacts"] = self._artifacts()
        record["error"] = error
        record["status"] = "failed" if error else "succeeded"
        if self.unforeseen:
            record["unforeseen_changes"] = list(self.unforeseen)
        record["finished_at"] = utc_now()
        record["seconds"] = round(time.monotonic() - self.started_monotonic, 3)
        return record

    def _inputs(self) -> list[FileRef]:
        found: dict[str, Any] = {}
        for stage in self.plan.stages:
            for path, sha in (stage.components.get("files") or {}).items():
                found[str(self.plan.base_dir / path)] = sha
            for item in (self.results.get(stage.name) or {}).get("inputs") or []:
                found[item["path"]] = item.get("sha256")
        return [{"path": p, "sha256": sha} for p, sha in sorted(found.items())]

    def _artifacts(self) -> list[ArtifactEntry]:
        items: list[ArtifactEntry] = []
        model = self.record.get("model")
        if model:
            items.append({"path": model["path"], "sha256": model["sha256"], "kind": "model"})
        training = self.record.get("training_data") or {}
        for what in ("sample", "holdout"):
            if training.get(what):
                ref = training[what]
                kind = f"training {what}"
                items.append({"path": ref["path"], "sha256": ref["sha256"], "kind": kind})
        for stage in self.plan.stages:
            for item in (self.results.get(stage.name) or {}).get("artifacts") or []:
                items.append(cast(ArtifactEntry, {**item, "kind": "file", "stage": stage.name}))
        return items


def cached_run_record(plan: RunPlan, run_id: str, store: Store) -> RunRecord:
    """The record of a run in which every stage was reused (no kernel started)."""
    record = new_record(plan, run_id, store, status="succeeded")
    recorder = Recorder(plan, record, store, _Silent())
    recorder.finished = True
    return recorder.finish(None)


class _Silent:
    def stage_started(self, entry: Mapping[str, Any]) -> None:
        pass

    def stage_finished(self, entry: Mapping[str, Any]) -> None:
        pass
