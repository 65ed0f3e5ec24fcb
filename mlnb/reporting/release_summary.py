"""What a release's monitoring folder says: each version's traffic, latency, predictions,
drift and live accuracy, how often the candidate agrees with the primary, and the switches.

A release folder ``R`` (written by the release service, see ``mlnb release``) holds
``release.json``, ``routing.json``, ``switches.jsonl``, the ``traffic/`` and ``feedback/``
logs, and one ordinary monitoring folder per version (``R/primary``, ``R/candidate``), each
with the ``reference.json`` of its own Bento, so each version's drift is scored against its
own training profile by :func:`mlnb.reporting.summary.summarise`. Every log is read a chunk
at a time (:mod:`mlnb.reporting.logs`); the row-by-row comparisons go through partition
files (:mod:`mlnb.reporting.release_join`). What cannot be read (a missing file, a damaged
segment, rows with bad values) is counted in ``problems``, never raised: only a folder
without ``release.json`` is refused.
"""

from __future__ import annotations

import datetime
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mlnb import bounded_json
from mlnb.errors import InputLimitError
from mlnb.monitoring.drift import FeatureDrift
from mlnb.monitoring.feedback import MARGIN_ENV, MIN_LABELS_ENV, WINDOW_ENV
from mlnb.monitoring.feedback_log import (
    DEFAULT_MARGIN,
    DEFAULT_MIN_LABELS,
    DEFAULT_WINDOW,
    breaches,
    training_metric,
)
from mlnb.monitoring.records import PREDICTION, REFERENCE_FILE, REQUEST
from mlnb.reporting.logs import MonitorFolder, MonitorLogError, open_monitor_folder
from mlnb.reporting.paths import RELEASE_FILE
from mlnb.reporting.release_join import (
    FEEDBACK_COLUMNS,
    FEEDBACK_LOG,
    PARTITION_ROWS,
    Agreement,
    FeedbackRows,
    Joined,
    LiveMetric,
    VersionRows,
    join_release,
)
from mlnb.reporting.release_traffic import (
    ROLES,
    SAMPLE_SIZE,
    TRAFFIC_COLUMNS,
    TRAFFIC_LOG,
    VERSIONS,
    BoundedSample,
    RoleTraffic,
    TrafficTally,
)
from mlnb.reporting.summary import MonitorSummary, summarise

ROUTING_FILE = "routing.json"
SWITCHES_FILE = "switches.jsonl"
MAX_FILE_BYTES = 4 * 1024 * 1024  # release.json, routing.json
MAX_DEPTH = 16
MAX_LINE_BYTES = 256 * 1024  # one switch
MAX_SWITCHES = 1_000  # the newest switches kept (all are counted)
QUANTILES = {"p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}
HISTOGRAM_BINS = 12


@dataclass
class VersionSummary:
    """One version of a release: what it answered, shadowed, refused and predicted."""

    role: str  # "primary" or "candidate"
    tag: str | None
    run_id: str | None
    training_metrics: dict[str, Any]
    traffic: dict[str, RoleTraffic]  # "answer", "shadow"
    rows_logged: int
    rejections_logged: int
    rejection_reasons: dict[str, int]
    predictions: dict[str, Any]
    drift: list[FeatureDrift]
    drift_rows: int
    live: LiveMetric | None
    unmatched_labels: int = 0  # labels of rows this version has no prediction for
    margin: float = DEFAULT_MARGIN
    min_labels: int = DEFAULT_MIN_LABELS

    @property
    def answered(self) -> int:
        return self.traffic["answer"].ok

    @property
    def shadowed(self) -> int:
        return self.traffic["shadow"].ok

    @property
    def rejected(self) -> int:
        """Requests refused: the same refusal is in the traffic log (4xx) and the version's
        rejections log, so the larger of the two counts."""
        calls = sum(t.rejected for t in self.traffic.values())
        return max(calls, self.rejections_logged)

    @property
    def errors(self) -> int:
        return sum(t.errors for t in self.traffic.values())

    @property
    def drifted_features(self) -> list[str]:
        return [d.feature for d in self.drift if d.drifted]

    @property
    def training_metric(self) -> float | None:
        """The training figure of the live metric (accuracy, MAE), when the run has it."""
        task = "classification" if self.live and self.live.metric == "accuracy" else "regression"
        return training_metric(task, self.training_metrics)[1] if self.live else None

    @property
    def alerting(self) -> bool:
        """Whether the live figure over the window is past the training figure by the
        margin, over at least ``min_labels`` labels (as ``/metrics`` alerts)."""
        live = self.live
        if live is None or live.recent_labels < min(self.min_labels, live.window):
            return False
        return bool(breaches(live.metric, live.recent, self.training_metric, self.margin))

    def to_json(self) -> dict[str, Any]:
        live = self.live
        return {
            "tag": self.tag,
            "run_id": self.run_id,
            "requests_answered": self.answered,
            "requests_shadowed": self.shadowed,
            "rows_answered": self.traffic["answer"].rows,
            "rows_shadowed": self.traffic["shadow"].rows,
            "rejected": self.rejected,
            "rejections_logged": self.rejections_logged,
            "rejection_reasons": self.rejection_reasons,
            "errors": self.errors,
            "traffic": {role: t.to_json() for role, t in self.traffic.items()},
            "rows_logged": self.rows_logged,
            "predictions": self.predictions,
            "drift_rows": self.drift_rows,
            "drifted_features": self.drifted_features,
            "drift": {d.feature: d.to_json() for d in self.drift},
            "training_metrics": self.training_metrics,
            "live": None
            if live is None
            else {
                "metric": live.metric,
                "training": self.training_metric,
                "live": _round(live.recent),
                "labels": live.labelled,
                "window": live.recent_labels,
                "all_labels": _round(live.value),
                "unmatched": self.unmatched_labels,
                "alerting": self.alerting,
            },
        }


@dataclass
class ReleaseSummary:
    folder: str
    release: str
    mode: str | None  # "shadow", "canary", None when release.json could not be read
    percent: float | None
    key: str | None
    task: str  # "classification" or "regression"
    versions: dict[str, VersionSummary]
    agreement: Agreement | None  # shadow only
    routing: dict[str, Any] | None
    switches: list[dict[str, Any]]  # the newest MAX_SWITCHES, oldest first
    switches_total: int
    rules: dict[str, Any]
    traffic_rows: int
    feedback: FeedbackRows | None
    prediction_histogram: dict[str, Any] | None = None  # regressors: both on the same bins
    first: str | None = None  # the oldest and newest traffic row (ISO 8601)
    last: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def candidate_share(self) -> float | None:
        """The share of answered requests the candidate answered."""
        answered = sum(v.answered for v in self.versions.values())
        return self.versions["candidate"].answered / answered if answered else None

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "release": self.release,
            "mode": self.mode,
            "percent": self.percent,
            "key": self.key,
            "task": self.task,
            "first": self.first,
            "last": self.last,
            "traffic_rows": self.traffic_rows,
            "candidate_share": _round(self.candidate_share),
            "versions": {role: v.to_json() for role, v in self.versions.items()},
            "agreement": None if self.agreement is None else self.agreement.to_json(),
            "prediction_histogram": self.prediction_histogram,
            "feedback": None if self.feedback is None else self.feedback.to_json(),
            "routing": self.routing,
            "switches": self.switches,
            "switches_total": self.switches_total,
            "rules": self.rules,
            "problems": self.problems,
        }


def summarise_release(
    folder: str | Path,
    *,
    sample_size: int = SAMPLE_SIZE,
    partition_rows: int = PARTITION_ROWS,
    window: int | None = None,
    margin: float | None = None,
    min_labels: int | None = None,
) -> ReleaseSummary:
    """The comparison of a release's two versions; raises :class:`MonitorLogError` only
    when ``folder`` holds no ``release.json``.

    ``window``, ``margin`` and ``min_labels`` judge the live accuracy (or MAE) as the
    service does (:mod:`mlnb.monitoring.feedback`), by default from the same environment
    variables."""
    window = window if window is not None else int(_setting(WINDOW_ENV, DEFAULT_WINDOW))
    margin = margin if margin is not None else _setting(MARGIN_ENV, DEFAULT_MARGIN)
    if min_labels is None:
        min_labels = int(_setting(MIN_LABELS_ENV, DEFAULT_MIN_LABELS))
    path = Path(folder)
    if not (path / RELEASE_FILE).is_file():
        raise MonitorLogError(
            f"{path} is not a release monitoring folder: it has no {RELEASE_FILE}",
            fix="pass the folder a release service logs to (shown by `mlnb serve`), or the "
            "release Bento's tag",
        )
    problems: list[str] = []
    release = _read_json(path / RELEASE_FILE, problems) or {}
    logs = {role: _version_folder(path / role, role, problems) for role in VERSIONS}
    monitors = {role: _summarise(logs[role], role, problems) for role in VERSIONS}
    task = _task(release, logs)
    root = MonitorFolder(path, {})
    traffic = TrafficTally(sample_size)
    for table in root.tables(TRAFFIC_LOG, columns=TRAFFIC_COLUMNS):
        traffic.add(table)
        del table
    _unreadable(root, TRAFFIC_LOG, problems)
    if not (path / TRAFFIC_LOG).is_dir():
        problems.append(f"{TRAFFIC_LOG}/ is missing: no requests, latencies or errors")
    if traffic.bad_rows:
        problems.append(
            f"{TRAFFIC_LOG}: {traffic.bad_rows} row(s) without a known version, role or "
            "HTTP status were not counted"
        )
    mode = release.get("mode") if release.get("mode") in ("shadow", "canary") else None
    shadow = mode == "shadow" or (
        mode is None and any(traffic.roles[(v, "shadow")].calls for v in VERSIONS)
    )
    joined = _join(
        path, logs, monitors, root, task, shadow, (sample_size, partition_rows, window), problems
    )
    for role in VERSIONS:
        for problem in dict.fromkeys([*monitors[role].unreadable_segments, *logs[role].unreadable]):
            problems.append(f"{role}: a log segment could not be read: {problem}")
        if monitors[role].unreadable_lines:
            problems.append(f"{role}: {monitors[role].unreadable_lines} log line(s) unreadable")
        rows = joined.versions.get(role) if joined else None
        if rows is not None and rows.bad_values:
            problems.append(f"{role}: {rows.bad_values} logged row(s) have no usable prediction")
    switches, total = _switches(path / SWITCHES_FILE, problems)
    routing = _read_json(path / ROUTING_FILE, problems) if (path / ROUTING_FILE).exists() else None
    entries = release.get("versions")
    entries = entries if isinstance(entries, dict) else {}
    versions = {
        role: _version(role, entries.get(role), traffic, monitors[role], joined, task)
        for role in VERSIONS
    }
    for v in versions.values():
        v.margin, v.min_labels = margin, min_labels
    return ReleaseSummary(
        folder=str(path),
        release=str(release.get("release") or path.name),
        mode=mode,
        percent=_number(release.get("percent")),
        key=release.get("key") if isinstance(release.get("key"), str) else None,
        task=task,
        versions=versions,
        agreement=joined.agreement if joined else None,
        routing=_plain_object(routing) if isinstance(routing, dict) else None,
        switches=switches,
        switches_total=total,
        rules={
            "promote_if": _texts(release.get("promote_if")),
            "rollback_if": _texts(release.get("rollback_if")),
            "after": release.get("after") if isinstance(release.get("after"), int) else None,
        },
        traffic_rows=traffic.rows,
        feedback=joined.feedback if joined else None,
        prediction_histogram=_histogram(joined) if joined and task == "regression" else None,
        first=None if traffic.first is None else _iso(traffic.first),
        last=None if traffic.last is None else _iso(traffic.last),
        problems=problems,
    )


def _version_folder(path: Path, role: str, problems: list[str]) -> MonitorFolder:
    """A version's monitoring folder; without its reference (no drift) when that is
    missing or damaged."""
    if not path.is_dir():
        problems.append(f"{role}/ is missing: this version has logged nothing yet")
        return MonitorFolder(path, {})
    if not (path / REFERENCE_FILE).is_file():
        problems.append(f"{role}/{REFERENCE_FILE} is missing: no drift for the {role}")
        return MonitorFolder(path, {})
    try:
        return open_monitor_folder(path)
    except MonitorLogError as error:
        problems.append(f"{role}: no drift: {error.message}")
        return MonitorFolder(path, {})


def _summarise(logs: MonitorFolder, role: str, problems: list[str]) -> MonitorSummary:
    """:func:`summarise` of a version's folder; empty when its logs hold values of types
    its writer never writes (a segment of another tool's)."""
    try:
        return summarise(logs)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError) as exc:
        problems.append(f"{role}: its logs could not be summarised (no drift): {exc}")
        return MonitorSummary(logs.reference.get("bento", ""), 0, 0, 0, {}, [], 0, {})


def _task(release: dict[str, Any], logs: dict[str, MonitorFolder]) -> str:
    """The release's task, else a version's, else what its logged predictions are."""
    for source in (release, *(f.reference for f in logs.values())):
        if source.get("task") in ("classification", "regression"):
            return str(source["task"])
    for folder in logs.values():
        for table in folder.tables(columns=[PREDICTION]):
            if PREDICTION in table.column_names:
                kind = table.schema.field(PREDICTION).type
                return "regression" if pa.types.is_floating(kind) else "classification"
    return "classification"


def _join(
    path: Path,
    logs: dict[str, MonitorFolder],
    monitors: dict[str, MonitorSummary],
    root: MonitorFolder,
    task: str,
    shadow: bool,
    sizes: tuple[int, int, int],
    problems: list[str],
) -> Joined | None:
    sample_size, partition_rows, window = sizes
    feedback = None
    if (path / FEEDBACK_LOG).is_dir():
        feedback = root.tables(FEEDBACK_LOG, columns=FEEDBACK_COLUMNS)
    try:
        joined = join_release(
            {role: logs[role].tables(columns=[REQUEST, PREDICTION]) for role in VERSIONS},
            feedback,
            classification=task == "classification",
            shadow=shadow,
            expected_rows=sum(m.rows_logged for m in monitors.values()),
            partition_rows=partition_rows,
            sample_size=sample_size,
            window=window,
        )
    except OSError as exc:
        problems.append(
            f"the versions could not be compared row by row (temporary files: {exc}); set "
            "TMPDIR to a folder with room"
        )
        return None
    _unreadable(root, FEEDBACK_LOG, problems)
    labels = joined.feedback
    if labels is not None and labels.bad:
        problems.append(
            f"{FEEDBACK_LOG}: {labels.bad} label row(s) without a request id, row "
            "or label were not counted"
        )
    if labels is not None and labels.not_numbers:
        problems.append(
            f"{FEEDBACK_LOG}: {labels.not_numbers} label(s) of a regressor are not numbers"
        )
    return joined


def _unreadable(root: MonitorFolder, log: str, problems: list[str]) -> None:
    for problem in dict.fromkeys(root.unreadable):
        problems.append(f"{log}: a log segment could not be read: {problem}")
    root.unreadable.clear()


def _version(
    role: str,
    entry: Any,
    traffic: TrafficTally,
    monitor: MonitorSummary,
    joined: Joined | None,
    task: str,
) -> VersionSummary:
    entry = entry if isinstance(entry, dict) else {}
    metrics = entry.get("metrics") if isinstance(entry.get("metrics"), dict) else {}
    rows = joined.versions.get(role) if joined else None
    live = joined.live.get(role) if joined and joined.feedback is not None else None
    labels = joined.feedback.labels if joined and joined.feedback else 0
    return VersionSummary(
        role=role,
        tag=entry.get("tag") if isinstance(entry.get("tag"), str) else monitor.bento or None,
        run_id=entry.get("run_id") if isinstance(entry.get("run_id"), str) else None,
        training_metrics={str(k): v for k, v in metrics.items() if _is_number(v)},
        traffic={r: traffic.roles[(role, r)] for r in ROLES},
        rows_logged=monitor.rows_logged,
        rejections_logged=monitor.rejected_requests,
        rejection_reasons=monitor.rejection_reasons,
        predictions=_predictions(rows, monitor, task),
        drift=monitor.drift,
        drift_rows=monitor.window_rows,
        live=live,
        unmatched_labels=labels - live.labelled if live else 0,
    )


def _predictions(rows: VersionRows | None, monitor: MonitorSummary, task: str) -> dict[str, Any]:
    """Class shares (classifiers) or quantiles (regressors) of the logged predictions, with
    the training figures of the version's reference beside them."""
    reference = monitor.predictions
    if task == "classification":
        counts = rows.classes if rows else {}
        total = sum(counts.values())
        training = None
        if reference.get("kind") == "categorical":
            training = dict(zip(reference["labels"], reference["training"], strict=True))
        return {
            "kind": "classes",
            "rows": total,
            "shares": {
                label: round(count / total, 6)
                for label, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            },
            "training": training,
        }
    sample = rows.values if rows else BoundedSample()
    return {
        "kind": "values",
        "rows": sample.count,
        "mean": _round(sample.mean),
        "quantiles": {name: _round(sample.quantile(q)) for name, q in QUANTILES.items()},
        "exact": sample.exact,
    }


def _histogram(joined: Joined) -> dict[str, Any] | None:
    """Both versions' predicted values over the same equal-width bins."""
    samples = {role: joined.versions[role].values.values for role in VERSIONS}
    together = np.concatenate(list(samples.values()))
    if not len(together):
        return None
    edges = np.histogram_bin_edges(together, bins=HISTOGRAM_BINS)
    shares = {}
    for role, values in samples.items():
        counts, _ = np.histogram(values, bins=edges)
        shares[role] = (counts / max(len(values), 1)).round(6).tolist()
    return {"edges": [round(float(e), 6) for e in edges], **shares}


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        value = bounded_json.loads(
            data, max_bytes=MAX_FILE_BYTES, max_depth=MAX_DEPTH, what=path.name, constants=False
        )
    except OSError as exc:
        problems.append(f"{path.name} could not be read: {exc.strerror or exc}")
        return None
    except InputLimitError as error:
        problems.append(f"{path.name} could not be read: {error.message}")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path.name} is not a JSON object")
        return None
    return value


def _switches(path: Path, problems: list[str]) -> tuple[list[dict[str, Any]], int]:
    """The newest ``MAX_SWITCHES`` switches, oldest first, and how many there are."""
    if not path.exists():
        return [], 0
    kept: deque[dict[str, Any]] = deque(maxlen=MAX_SWITCHES)
    total = bad = 0
    try:
        with path.open("rb") as handle:
            for line in _lines(handle):
                if line is not None and not line.strip():
                    continue
                record = _switch(line)
                if record is None:
                    bad += 1
                    continue
                total += 1
                kept.append(record)
    except OSError as exc:
        problems.append(f"{SWITCHES_FILE} could not be read: {exc.strerror or exc}")
    if bad:
        problems.append(f"{SWITCHES_FILE}: {bad} line(s) are not switch records")
    return list(kept), total


def _lines(handle: Any) -> Iterator[bytes | None]:
    """Lines of at most ``MAX_LINE_BYTES``; a longer one is skipped and given as None."""
    while line := handle.readline(MAX_LINE_BYTES + 1):
        if len(line) <= MAX_LINE_BYTES:
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = handle.readline(MAX_LINE_BYTES + 1)
        yield None


def _switch(line: bytes | None) -> dict[str, Any] | None:
    if line is None:
        return None
    try:
        value = bounded_json.loads(
            line.decode("utf-8", "replace"),
            max_bytes=MAX_LINE_BYTES,
            max_depth=MAX_DEPTH,
            what=SWITCHES_FILE,
            constants=False,
        )
    except InputLimitError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("action"), str):
        return None
    record: dict[str, Any] = {
        key: _text(value.get(key)) for key in ("time", "action", "from", "to", "by", "why")
    }
    figures = value.get("figures")
    record["figures"] = _plain_object(figures) if isinstance(figures, dict) else {}
    return record


def _plain_object(value: dict[str, Any]) -> dict[str, Any]:
    """A JSON object's scalar entries (text, numbers, booleans, null); others as text."""
    plain: dict[str, Any] = {}
    for key, item in value.items():
        if item is None or isinstance(item, (str, int, float, bool)):
            plain[str(key)] = item
        else:
            plain[str(key)] = _text(item)
    return plain


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:1000]


def _texts(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _setting(name: str, default: float) -> float:
    """A number from the environment; ``default`` when unset or not a number."""
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return float(default)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _iso(micros: int) -> str:
    moment = datetime.datetime.fromtimestamp(micros / 1e6, datetime.timezone.utc)
    return moment.isoformat()
