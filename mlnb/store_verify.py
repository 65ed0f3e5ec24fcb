"""``mlnb store verify [--repair]``: check every object, record and index row of a store.

What is checked, and what ``--repair`` does about it:

- the index (``PRAGMA quick_check``): rebuilt from the files when damaged;
- each object under ``objects/``: hashed; one whose bytes do not match its name is set aside
  in ``objects/damaged/``; leftovers of writers that died are deleted;
- each ``run.json``: readable and consistent; the objects it refers to are present (a run
  whose model is gone cannot be repaired, only run again, and is reported);
- each index row against its file, both ways: a row is rewritten, added or dropped to match;
- each stage cache entry: one that refers to a missing object is forgotten, so that the next
  run runs its stage again instead of failing to load it.

Pure core over :class:`mlnb.store.Store`; the CLI prints what it returns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from mlnb.record_types import RunRecord
from mlnb.store import (
    CACHE_DIR,
    RUN_FILE,
    Store,
    cache_file_problem,
    dumps,
    pid_alive,
    read_record,
    run_record_problem,
    sha256_file,
)


@dataclass
class Finding:
    subject: str  # what it is about: "index", "objects/ab/ab..", "run 2026..", "cache entry .."
    problem: str
    fixed: bool = False
    fix: str | None = None  # what the user can do when --repair cannot


@dataclass
class VerifyReport:
    store: str
    repair: bool
    objects: int = 0
    runs: int = 0
    cache_entries: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def open_problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.fixed]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": not self.open_problems}


Progress = Callable[[int, int], None]


def verify(store: Store, *, repair: bool = False, progress: Progress | None = None) -> VerifyReport:
    report = VerifyReport(str(store.root), repair)
    found = report.findings
    problem = store.index_problem()
    if problem:
        if repair:
            store.rebuild_index(problem)
        found.append(Finding("index mlnb.db", problem, fixed=repair, fix=_REPAIR))
    damaged = _check_objects(store, report, progress)
    records = _check_runs(store, report)
    if problem and not repair:
        return report  # the rows of a damaged index say nothing
    _check_run_rows(store, records, report)
    _check_cache(store, damaged, report)
    return report


_REPAIR = "run `mlnb store verify --repair`"


def _check_objects(store: Store, report: VerifyReport, progress: Progress | None) -> set[str]:
    """Hash every object; return the store-relative paths of those that are gone now."""
    objects = store.root / "objects"
    paths = sorted(_object_files(objects))
    gone: set[str] = set()
    for done, path in enumerate(paths, 1):
        if progress is not None:
            progress(done, len(paths))
        relative = store.relative(path)
        try:
            ok = sha256_file(path) == path.name
        except OSError as exc:
            report.findings.append(Finding(relative, f"cannot be read ({exc})"))
            continue
        report.objects += 1
        if ok:
            continue
        fixed = report.repair and store.set_aside(path) is not None
        if fixed:
            gone.add(relative)
        report.findings.append(
            Finding(relative, "its bytes do not match its sha256 (set aside when repaired)", fixed)
        )
    for part in sorted((objects / "tmp").glob("*.part")):
        pid = part.name.split("-", 1)[0]
        if pid.isdigit() and pid_alive(int(pid)):
            continue  # a writer is still at work
        fixed = report.repair and _unlink(part)
        report.findings.append(
            Finding(store.relative(part), "an unfinished write of a process that ended", fixed)
        )
    return gone


def _object_files(objects: Path) -> Iterator[Path]:
    if not objects.is_dir():
        return
    for folder in objects.iterdir():
        if len(folder.name) != 2 or not folder.is_dir():
            continue  # tmp/ and damaged/
        yield from (p for p in folder.iterdir() if p.is_file())


def _check_runs(store: Store, report: VerifyReport) -> dict[str, dict[str, Any]]:
    """Read every run.json; report unreadable ones and runs whose objects are gone."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted((store.root / "runs").glob(f"*/{RUN_FILE}")):
        subject = f"run {path.parent.name}"
        try:
            record = read_record(path)
        except (OSError, ValueError) as exc:
            report.findings.append(
                Finding(subject, f"its run.json cannot be read ({exc})", fix=_RUN_AGAIN)
            )
            continue
        problem = run_record_problem(record, path.parent.name)
        if problem:
            report.findings.append(Finding(subject, f"its run.json: {problem}", fix=_RUN_AGAIN))
            continue
        report.runs += 1
        records[record["run_id"]] = record
        for what, ref in _run_objects(record):
            if not store.resolve(ref["path"]).is_file():
                report.findings.append(
                    Finding(subject, f"{what} ({ref['path']}) is missing", fix=_RUN_AGAIN)
                )
    return records


_RUN_AGAIN = "run the notebook again to make a complete run (its cache entries are dropped)"


def _run_objects(record: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    model = record.get("model")
    if isinstance(model, dict) and model.get("path"):
        yield "its model", model
    training = record.get("training_data")
    if isinstance(training, dict):
        for which in ("sample", "holdout"):
            ref = training.get(which)
            if isinstance(ref, dict) and ref.get("path"):
                yield f"its training {which}", ref
        labels = (training.get("holdout") or {}).get("labels")
        if isinstance(labels, dict) and labels.get("path"):
            yield "its holdout labels", labels
    contract = record.get("contract")
    if isinstance(contract, dict) and isinstance(contract.get("object"), dict):
        yield "its data contract", contract["object"]


def _check_run_rows(store: Store, records: dict[str, dict[str, Any]], report: VerifyReport) -> None:
    rows = store.indexed_runs()
    for run_id, record in records.items():
        text = rows.get(run_id)
        if text is not None and _same(text, record):
            continue
        problem = "is not in the index" if text is None else "differs from its index row"
        if report.repair:
            store.index_run(cast(RunRecord, record))  # as its run.json holds it
        report.findings.append(Finding(f"run {run_id}", f"its run.json {problem}", report.repair))
    for run_id in sorted(set(rows) - set(records)):
        if (store.root / "runs" / run_id / RUN_FILE).exists():
            continue  # an unreadable run.json, reported above
        if report.repair:
            store.unindex_run(run_id)
        report.findings.append(
            Finding(f"run {run_id}", "the index lists it but it has no run.json", report.repair)
        )


def _check_cache(store: Store, gone: set[str], report: VerifyReport) -> None:
    rows = store.indexed_cache()
    files: dict[str, dict[str, Any]] = {}
    for path in sorted((store.root / CACHE_DIR).glob("*/*.json")):
        problem: str | None
        try:
            data = read_record(path)
        except (OSError, ValueError) as exc:
            data, problem = None, f"cannot be read ({exc})"
        else:
            problem = cache_file_problem(data, path.stem)
        if problem or data is None:
            fixed = report.repair and path.stem not in rows and _unlink(path)
            report.findings.append(Finding(store.relative(path), problem or "", fixed))
            continue
        files[path.stem] = data
    for key in sorted(set(rows) | set(files)):
        data = files.get(key) or rows[key]
        report.cache_entries += 1
        subject = f"cache entry of stage {data['stage']!r} ({key[:12]})"
        missing = [
            ref["path"]
            for ref in _entry_objects(data["entry"])
            if ref["path"] in gone or not store.resolve(ref["path"]).is_file()
        ]
        if missing:
            if report.repair:
                store.cache_forget(key)
            report.findings.append(
                Finding(subject, f"refers to {missing[0]}, which is missing", report.repair)
            )
            continue
        if key in files and key in rows and _same(dumps(rows[key]), files[key]):
            continue
        where = "the index only" if key not in files else "its file only"
        if key in files and key in rows:
            where = "an index row that differs from its file"
        if report.repair:
            store.index_cache_file(data)
        report.findings.append(Finding(subject, f"is in {where}", report.repair))


def _entry_objects(entry: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    refs = list((entry.get("outputs") or {}).values())
    refs.append(entry.get("model"))
    training = entry.get("training_data") or {}
    refs += [training.get("sample"), training.get("holdout")]
    refs.append((training.get("holdout") or {}).get("labels"))
    yield from (r for r in refs if isinstance(r, dict) and r.get("path"))


def _same(text: str, value: Any) -> bool:
    try:
        return bool(json.loads(text) == json.loads(dumps(value)))
    except ValueError:
        return False


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True
