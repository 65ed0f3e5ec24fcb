"""The plan of a run: each stage's key, whether it runs or is reused, and why.

Also what each stage saves when it runs (the names it defines that a later stage uses, its
declared outputs) and what a reused stage must load for the stages that run after it. All of
it is decided before any kernel starts, from the notebook, the parameters and one lookup in
the store's index.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlnb.contract import contract_path, file_sha256
from mlnb.contract import enabled as contracts_enabled
from mlnb.pipeline import Pipeline, Stage
from mlnb.run.keys import CodeFacts, StageKey, code_facts, display_path, explain_change, stage_keys
from mlnb.store import PlanAnswer, PlanNeeds, Store

Action = Literal["run", "cached"]


@dataclass
class StagePlan:
    stage: Stage
    key: str
    components: dict[str, Any]
    action: Action
    reason: str
    entry: dict[str, Any] | None = None  # the cache entry reused when cached
    save: tuple[str, ...] = ()  # names to save after the stage runs
    load: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> output reference

    @property
    def name(self) -> str:
        return self.stage.name


@dataclass
class RunPlan:
    pipeline: Pipeline
    notebook: str  # absolute path
    base_dir: Path
    parameters: dict[str, Any]
    given: dict[str, Any]
    stages: list[StagePlan]
    no_cache: bool = False
    warnings: list[str] = field(default_factory=list)  # damaged results found while planning

    @property
    def all_cached(self) -> bool:
        return all(s.action == "cached" for s in self.stages)

    def stage(self, name: str) -> StagePlan:
        return next(s for s in self.stages if s.name == name)


def providers(pipeline: Pipeline) -> dict[tuple[str, str], str]:
    """(stage, name it uses) -> the latest earlier stage that defines the name."""
    found: dict[tuple[str, str], str] = {}
    defined_by: dict[str, str] = {}
    for stage in pipeline.stages:
        for name in stage.uses:
            if name in defined_by:
                found[(stage.name, name)] = defined_by[name]
        for name in stage.defines:
            defined_by[name] = stage.name
    return found


def saved_names(pipeline: Pipeline) -> dict[str, tuple[str, ...]]:
    """Per stage: the names it defines that a later stage uses, plus its declared outputs."""
    saves: dict[str, set[str]] = {s.name: set(s.options.outputs) for s in pipeline.stages}
    for (_, name), provider in providers(pipeline).items():
        saves[provider].add(name)
    return {stage: tuple(sorted(names)) for stage, names in saves.items()}


def make_plan(
    pipeline: Pipeline,
    parameters: dict[str, Any],
    given: dict[str, Any],
    store: Store,
    *,
    no_cache: bool = False,
) -> RunPlan:
    notebook = os.path.abspath(pipeline.notebook)
    base_dir = Path(notebook).parent
    code = code_facts(pipeline, base_dir)  # from the pipeline's parse, once for every round
    settled: list[_Settled] = []

    def needs(answer: PlanAnswer) -> PlanNeeds:
        found = _settle(pipeline, parameters, base_dir, code, answer, no_cache)
        if found.missing:
            return PlanNeeds(keys=found.missing)
        settled[:] = [found]
        saved = (
            [] if no_cache else [r for e in found.entries.values() for _, r in _saved_objects(e)]
        )
        return PlanNeeds(files=[*found.reused_files, *store.object_files(saved)])

    answer = store.plan_lookup(notebook, code.paths, needs)  # the one read of the index
    latest, (final,) = answer.latest, settled
    pipeline, keys, entries = final.pipeline, final.keys, final.entries
    saves = saved_names(pipeline)
    current = {p: answer.hashes.get(p) for p in final.reused_files}

    saved = [] if no_cache else [r for e in entries.values() for _, r in _saved_objects(e)]
    contract_file = contract_path(notebook)
    contract_sha = file_sha256(contract_file)
    checking = contracts_enabled()
    damaged = store.object_problems(saved, known=answer.hashes)  # as the index has them
    stages: list[StagePlan] = []
    warnings: list[str] = []
    for stage in pipeline.stages:
        key = keys[stage.name]
        save = saves[stage.name]
        entry = entries.get(key.key)
        damage = None if entry is None or no_cache else _damage(entry, damaged)
        if damage:
            warnings.append(f"stage {stage.name!r}: {damage}")
        problem = None if entry is None else damage or _unusable(entry, save, current, base_dir)
        if entry is not None and problem is None and stage.kind == "data" and checking:
            problem = _contract_changed(entry, contract_sha, contract_file.name)
        if no_cache:
            stages.append(_run(stage, key, save, "--no-cache"))
        elif entry is not None and problem is None:
            stages.append(StagePlan(stage, key.key, key.components, "cached", "", entry, save))
        elif entry is not None:
            stages.append(_run(stage, key, save, problem or ""))
        else:
            previous = latest.get(stage.name)
            reason = explain_change(previous and previous.get("components"), key.components)
            stages.append(_run(stage, key, save, reason))
    _rerun_dependents(stages, keys)
    for reused in stages:
        if reused.action == "cached":
            assert reused.entry is not None
            reused.reason = f"unchanged since run {reused.entry['run_id']}"
    while True:
        _plan_loads(pipeline, stages)
        found = _verify_loads(stages, store)
        if not found:
            break
        warnings += found
    return RunPlan(pipeline, notebook, base_dir, parameters, given, stages, no_cache, warnings)


@dataclass
class _Settled:
    """The stages' keys once what each stage was seen to change in place is settled."""

    pipeline: Pipeline  # with those changes
    keys: dict[str, StageKey]
    entries: dict[str, dict[str, Any]]  # cache key -> entry, for the keys that have one
    missing: list[str]  # keys still to look up in the index (then nothing else is settled)
    reused_files: list[str]  # the files the found entries read, sorted


def _settle(
    pipeline: Pipeline,
    parameters: dict[str, Any],
    base_dir: Path,
    code: CodeFacts,
    answer: PlanAnswer,
    no_cache: bool,
) -> _Settled:
    """What each stage was seen to change in place when it last ran, then (once the keys are
    known) when the cached result about to be reused ran: later stages read those versions,
    which changes their keys. Replayed from what the index answered so far; stops at the
    first keys it has not looked up."""
    latest = answer.latest
    written = {
        item["path"]: name
        for name, entry in latest.items()
        for item in entry.get("artifacts") or []
        if item.get("path")
    }
    names = {s.name for s in pipeline.stages}
    observed = {name: entry.get("changed") or [] for name, entry in latest.items()}
    for _ in range(len(pipeline.stages) + 1):
        linked = pipeline.with_changes({k: v for k, v in observed.items() if k in names})
        keys = stage_keys(linked, parameters, base_dir, answer.hashes_of, written, code)
        found = {} if no_cache else answer.lookup(k.key for k in keys.values())
        if found is None:
            return _Settled(linked, keys, {}, [k.key for k in keys.values()], [])
        entries = found
        seen = dict(observed)
        for name, key in keys.items():
            if key.key in entries:
                seen[name] = entries[key.key].get("changed") or []
        if seen == observed:
            break
        observed = seen
    reused = sorted(
        {i["path"] for e in entries.values() for i in e.get("inputs", []) if i.get("path")}
    )
    return _Settled(linked, keys, entries, [], reused)


def _run(stage: Stage, key: StageKey, save: tuple[str, ...], reason: str) -> StagePlan:
    return StagePlan(stage, key.key, key.components, "run", reason, None, save)


def _unusable(
    entry: Mapping[str, Any],
    save: tuple[str, ...],
    current: Mapping[str, str | None],
    base_dir: Path,
) -> str | None:
    """Why a cache entry with the right key cannot be reused, or None when it can."""
    outputs = entry.get("outputs") or {}
    for name in save:
        if name not in outputs:
            return f"a later stage now uses {name!r}, which the cached result did not save"
    for item in entry.get("inputs", []):
        if item.get("path") and current.get(item["path"]) != item.get("sha256"):
            path = display_path(item["path"], base_dir)
            return f"{INPUT_CHANGED}{path} changed since run {entry['run_id']}"
    return None


def _saved_objects(entry: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(what, reference) of each object a cache entry refers to."""
    training = entry.get("training_data") or {}
    found = [(f"the saved value of {n!r}", r) for n, r in (entry.get("outputs") or {}).items()]
    for what, ref in (
        ("the saved model", entry.get("model")),
        ("the saved training sample", training.get("sample")),
        ("the saved holdout sample", training.get("holdout")),
        ("the saved holdout labels", (training.get("holdout") or {}).get("labels")),
    ):
        if ref:
            found.append((what, ref))
    return found


def _damage(entry: Mapping[str, Any], damaged: Mapping[str, str]) -> str | None:
    """What is wrong with the first object a cache entry saved that is missing or holds other
    bytes than its name (``damaged``: from the fingerprint index, see
    :meth:`Store.object_problems`)."""
    for what, ref in _saved_objects(entry):
        problem = damaged.get(str(ref.get("path")))
        if problem:
            return f"{what}: {problem}"
    return None


def _verify_loads(stages: list[StagePlan], store: Store) -> list[str]:
    """Hash each object the kernel is to load, once, just before it starts. A reused stage
    whose object does not match runs instead (the object is set aside); the kernel gets the
    size and mtime it was hashed at, so it does not hash it again."""
    warnings: list[str] = []
    for plan in stages:
        for name, ref in list(plan.load.items()):
            problem = store.object_problem(ref)
            if problem is None:
                stat = os.stat(store.resolve(ref["path"]))
                plan.load[name] = {**ref, "verified": [stat.st_size, stat.st_mtime_ns]}
                continue
            warnings.append(f"stage {plan.name!r}: the saved value of {name!r}: {problem}")
            plan.action, plan.entry, plan.load = "run", None, {}
            plan.reason = f"the saved value of {name!r} is damaged or missing"
            break
    return warnings


INPUT_CHANGED = "input changed: "


def _rerun_dependents(stages: list[StagePlan], keys: Mapping[str, StageKey]) -> None:
    """A stage that runs again because a file it read changed may give new outputs: the
    stages after it that depend on it run again too (their keys alone would not change)."""
    fresh: dict[str, str] = {}
    for plan in stages:
        if plan.action == "run" and plan.reason.startswith(INPUT_CHANGED):
            plan.reason = plan.reason[len(INPUT_CHANGED) :]
            fresh[plan.name] = plan.reason
    changed = bool(fresh)
    while changed:
        changed = False
        for plan in stages:
            deps = [*plan.stage.depends_on, *keys[plan.name].file_deps]
            upstream = [d for d in deps if d in fresh]
            if plan.name in fresh or not upstream:
                continue
            fresh[plan.name] = fresh[upstream[0]]  # the root cause
            if plan.action == "cached":
                plan.action, plan.entry = "run", None
                plan.reason = f"stage {upstream[0]!r} runs again ({fresh[upstream[0]]})"
            changed = True


def _plan_loads(pipeline: Pipeline, stages: list[StagePlan]) -> None:
    """A reused stage loads the saved names that a stage running after it needs."""
    by_name = {s.name: s for s in stages}
    for (user, name), provider in providers(pipeline).items():
        source = by_name[provider]
        if by_name[user].action == "run" and source.action == "cached":
            assert source.entry is not None
            source.load.setdefault(name, source.entry["outputs"][name])


def _contract_changed(entry: Mapping[str, Any], current: str | None, name: str) -> str | None:
    """Why a data stage's cached result was not checked against the contract there is now
    (the sha256 of the contract file, None when there is none)."""
    checked = (entry.get("contract") or {}).get("sha256")
    if checked == current:
        return None
    run = entry.get("run_id")
    if current is None:
        return f"its data contract {name} was removed since run {run} (running it learns one)"
    if checked is None:
        return f"the data contract {name} was not there when run {run} made it"
    return f"its data contract {name} changed since run {run}"
