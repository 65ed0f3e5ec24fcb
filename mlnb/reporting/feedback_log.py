"""The live figures of a monitoring folder, computed offline from its logs (``mlnb monitor``).

:func:`read_feedback` reads the labels :mod:`mlnb.monitoring.feedback_log` wrote, and
:func:`live_metrics` joins them to a monitoring folder's ``predictions/`` (an ordinary
service's, or a release's ``primary/`` and ``candidate/``) by request id and row position
within the request, comparing as the live book does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mlnb import bounded_json
from mlnb.errors import InputLimitError
from mlnb.monitoring import segments
from mlnb.monitoring.feedback_log import (
    DEFAULT_MARGIN,
    DEFAULT_MIN_LABELS,
    DEFAULT_WINDOW,
    FEEDBACK_LOG,
    FEEDBACK_SCHEMA,
    breaches,
    same_class,
    training_metric,
)
from mlnb.reporting.logs import MonitorLogError, read_reference
from mlnb.reporting.paths import RELEASE_FILE

logger = logging.getLogger("mlnb.monitoring")

MAX_RELEASE_BYTES = 1024 * 1024


def read_feedback(folder: str | Path) -> pa.Table:
    """Every label in ``<folder>/feedback/`` (complete and partial segments), oldest first,
    with the columns of :data:`FEEDBACK_SCHEMA`; an empty table when there are none. A
    segment that cannot be read is skipped with a warning."""
    batches: list[pa.RecordBatch] = []
    for path in segments.segments(Path(folder) / FEEDBACK_LOG):
        try:
            batches.extend(segments.read_segment(path))
        except (pa.ArrowInvalid, OSError) as exc:
            logger.warning("mlnb feedback: %s cannot be read: %s", path.name, exc)
    return pa.Table.from_batches(batches, schema=FEEDBACK_SCHEMA)


def live_metrics(
    folder: str | Path,
    *,
    training: Mapping[str, Mapping[str, Any]] | None = None,
    window: int = DEFAULT_WINDOW,
    margin: float = DEFAULT_MARGIN,
    min_labels: int = DEFAULT_MIN_LABELS,
) -> dict[str, dict[str, Any]]:
    """Per version, the live figures of a monitoring folder's labels, from its logs.

    ``folder`` is a release's folder (``release.json``, ``feedback/``, and ``primary/`` and
    ``candidate/`` with their ``predictions/``: versions ``primary`` and ``candidate``, their
    training metrics from ``release.json``) or an ordinary service's (``reference.json``,
    ``predictions/``, ``feedback/``: one version, named by the Bento version; its training
    metrics come from ``training``, ``{version: {"accuracy": ...}}``, which also overrides a
    release's). Each label is joined to the row at its position among the rows logged under
    its request id; a row labelled twice counts once (the first label).

    Returns ``{version: {"tag", "metric" ("accuracy" | "mae"), "training" (float | None),
    "live" (over the last ``window`` joined labels, None before any), "labels" (joined),
    "window" (labels ``live`` is over), "unmatched" (labels with no logged row in this
    version), "alerting" (live past the training figure by ``margin``, over at least
    ``min_labels`` labels)}}``.
    """
    root = Path(folder)
    task, versions = _layout(root)
    labels = read_feedback(root)
    first = _first_labels(labels)
    wanted = pa.array(sorted({rid for rid, _ in first}), pa.string())
    figures = {}
    for name, (tag, predictions, metrics) in versions.items():
        metric, trained = training_metric(task, (training or {}).get(name, metrics))
        logged = _logged_rows(predictions, wanted)
        scores: list[float] = []
        for (request_id, row), (text, value) in first.items():
            predicted = logged.get((request_id, row))
            if predicted is None:
                continue
            if task == "classification":
                scores.append(1.0 if same_class(predicted, text) else 0.0)
            elif isinstance(predicted, float) and value is not None and math.isfinite(predicted):
                scores.append(abs(predicted - value))
        recent = scores[-window:]
        live = math.fsum(recent) / len(recent) if recent else None
        past = breaches(metric, live, trained, margin) if len(recent) >= min_labels else None
        figures[name] = {
            "tag": tag,
            "metric": metric,
            "training": trained,
            "live": live,
            "labels": len(scores),
            "window": len(recent),
            "unmatched": len(first) - len(scores),
            "alerting": bool(past),
        }
    return figures


def _layout(root: Path) -> tuple[str, dict[str, tuple[str | None, Path, Mapping[str, Any]]]]:
    """The task, and each version's tag, predictions log and training metrics."""
    release = root / RELEASE_FILE
    if not release.is_file():
        reference = read_reference(root / "reference.json")  # checked; names the fix
        tag = str(reference.get("bento") or "")
        version = tag.partition(":")[2] or tag or root.name
        return str(reference.get("task")), {version: (tag or None, root / "predictions", {})}
    fix = "copy the whole release folder again (the release service writes the file)"
    try:
        data = bounded_json.loads(
            release.read_bytes(), max_bytes=MAX_RELEASE_BYTES, max_depth=16, what=str(release),
            fix=fix,
        )  # fmt: skip
    except OSError as exc:
        raise MonitorLogError(f"cannot read {release}: {exc.strerror or exc}", fix=fix) from None
    except InputLimitError as error:
        raise MonitorLogError(f"cannot read {error.message}", fix=fix) from None
    versions = data.get("versions") if isinstance(data, dict) else None
    if not isinstance(versions, dict) or not all(isinstance(v, dict) for v in versions.values()):
        raise MonitorLogError(f"{release} has no versions object", fix=fix)
    found = {
        str(name): (spec.get("tag"), root / str(name) / "predictions", spec.get("metrics") or {})
        for name, spec in versions.items()
    }
    return str(data.get("task")), found


def _first_labels(labels: pa.Table) -> dict[tuple[str, int], tuple[str, float | None]]:
    """Each labelled ``(request id, row)``'s first label: its text and value, in log order."""
    first: dict[tuple[str, int], tuple[str, float | None]] = {}
    columns = [labels.column(n).to_pylist() for n in ("request_id", "row", "label", "value")]
    for request_id, row, text, value in zip(*columns, strict=True):
        first.setdefault((request_id, row), (text, value))
    return first


def _logged_rows(folder: Path, wanted: pa.Array) -> dict[tuple[str, int], Any]:
    """The logged prediction of each row of the ``wanted`` requests, by (request id, position
    among the rows of that request id)."""
    rows: dict[tuple[str, int], Any] = {}
    seen: dict[str, int] = {}
    if not len(wanted):
        return rows
    for path in segments.segments(folder):
        try:
            for batch in segments.read_segment(path, columns=["request_id", "prediction"]):
                if batch.num_columns < 2:
                    continue
                kept = batch.filter(pc.is_in(batch.column(0), value_set=wanted))
                ids = kept.column(0).to_pylist()
                for request_id, predicted in zip(ids, kept.column(1).to_pylist(), strict=True):
                    position = seen.get(request_id, 0)
                    seen[request_id] = position + 1
                    rows[(request_id, position)] = predicted
        except (pa.ArrowInvalid, OSError) as exc:
            logger.warning("mlnb feedback: %s cannot be read: %s", path.name, exc)
    return rows
