"""Run reports: a recorded run rendered with nbconvert into one self-contained HTML page.

The executed notebook is grouped under a heading per stage, mlnb's injected cells are removed,
and a header shows the run record (parameters, stages, metrics, lineage) and the global
importance of the run's model (:mod:`mlnb.importance`, cached in the store). The template is
``templates/nbconvert/mlnb_report``; ``template_dir`` points at a user's own template folder.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from markupsafe import Markup

from mlnb.errors import MlnbError
from mlnb.store import NOTEBOOK_FILE, Store
from mlnb.templating import packaged_templates_dir

TEMPLATE_NAME = "mlnb_report"
INJECTED_TAG = "mlnb-injected"
RUN_META = "mlnb_run"
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]")


def group_by_stage(notebook: dict[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the executed notebook without injected cells, a heading before each stage."""
    owner = {index: stage for stage in record.get("stages", []) for index in stage.get("cells", [])}
    document = copy.deepcopy(notebook)
    cells: list[dict[str, Any]] = []
    current: str | None = None
    for cell in document.get("cells", []):
        meta = cell.get("metadata", {})
        if INJECTED_TAG in meta.get("tags", []) or "injected" in meta.get(RUN_META, {}):
            continue
        stage = owner.get(meta.get(RUN_META, {}).get("cell"))
        if stage is not None and stage.get("name") != current:
            current = stage.get("name")
            heading = _stage_heading(stage)
            if document.get("nbformat_minor", 0) >= 5:
                heading["id"] = _cell_id(str(current))
            cells.append(heading)
        cells.append(cell)
    document["cells"] = cells
    return document


def _stage_heading(stage: dict[str, Any]) -> dict[str, Any]:
    """A markdown cell of escaped HTML: markdown would pass markup in a name or reason through."""
    seconds = stage.get("seconds")
    timing = f", {seconds:.2f} s" if isinstance(seconds, (int, float)) else ""
    reason = f" ({stage['reason']})" if stage.get("reason") else ""
    text = Markup(
        "<h2>Stage <code>{name}</code> · {kind}</h2>\n\n"
        "<p><strong>{status}</strong>{timing}{reason}</p>"
    ).format(
        name=str(stage.get("name")),
        kind=str(stage.get("kind")),
        status=str(stage.get("status")),
        timing=timing,
        reason=reason,
    )
    return {
        "cell_type": "markdown",
        "metadata": {"tags": ["mlnb-stage-heading"]},
        "source": str(text),
    }


def _cell_id(name: str) -> str:
    """An nbformat cell id (letters, digits, ``-``, ``_``; at most 64) for a stage's heading."""
    return ("mlnb-stage-" + _NOT_IN_ID.sub("_", name))[:64]


def _nbconvert_template_dirs() -> list[str]:
    """nbconvert's own templates (``lab``) also when running in a virtual environment.

    nbconvert looks under ``sys.prefix``; a venv made with ``--system-site-packages`` has
    nbconvert's files under ``sys.base_prefix`` instead.
    """
    found = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        folder = Path(prefix) / "share" / "jupyter" / "nbconvert" / "templates"
        if folder.is_dir():
            found.append(str(folder))
    return found


def run_importance(store: Store, record: Mapping[str, Any]) -> dict[str, Any]:
    """The global importance of a run's model, or ``{"available": False, "reason": ...}``:
    the report is written either way."""
    from mlnb.importance import importance_of_run

    if record.get("status") != "succeeded" or not record.get("model"):
        return {"available": False, "reason": "the run recorded no trained model"}
    try:
        return {"available": True, **importance_of_run(store, record)}
    except MlnbError as error:
        return {"available": False, "reason": error.message}


def importance_view(importance: dict[str, Any], top: int = 10) -> dict[str, Any]:
    """What the report's template shows of an importance result: the top features, one chart
    per available figure (Markup: every name escaped by the chart), and how each was made."""
    from mlnb.importance import top_features
    from mlnb.reporting.charts import PALETTE, horizontal_bars

    if not importance.get("available"):
        return {"available": False, "reason": importance.get("reason")}
    features = top_features(importance, top)
    names = [str(f["feature"]) for f in features]
    charts = []
    for key, part, colour, title in (
        ("mean_abs_contribution", "contribution", PALETTE[0], "mean |contribution|"),
        ("permutation_mean", "permutation", PALETTE[1], "permutation importance"),
    ):
        if importance.get(part, {}).get("available"):
            values = [float(f[key]) for f in features]
            errors = (
                [float(f["permutation_std"]) for f in features] if part == "permutation" else None
            )
            charts.append(horizontal_bars(names, values, errors=errors, colour=colour, title=title))
    return {
        "available": True,
        "features": features,
        "charts": charts,
        "contribution": importance.get("contribution") or {},
        "permutation": importance.get("permutation") or {},
        "ordered_by": importance.get("ordered_by"),
        "total": len(importance.get("features") or []),
    }


def render_run_report(
    store: Store,
    run_id: str,
    template_dir: str | Path | None = None,
    importance: dict[str, Any] | None = None,
) -> str:
    """The HTML report of one run in the store (``importance``: :func:`run_importance`'s,
    computed here when not given)."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbformat.v4 import new_notebook as empty_notebook

    record = store.get_run(run_id)
    if importance is None:
        importance = run_importance(store, record)
    executed = store.run_dir(run_id) / NOTEBOOK_FILE
    # a run whose kernel never started has no executed notebook: an empty one stands in
    # (nbformat and nbconvert are untyped)
    raw = nbformat.read(executed, as_version=4) if executed.is_file() else empty_notebook()  # type: ignore[no-untyped-call]
    document = nbformat.from_dict(group_by_stage(dict(raw), record))  # type: ignore[no-untyped-call]
    if "metadata" not in document:
        document["metadata"] = {}
    if template_dir is not None:
        folder = Path(template_dir).resolve()
        bases, name = [str(folder.parent)], folder.name
    else:
        bases, name = [str(packaged_templates_dir() / "nbconvert")], TEMPLATE_NAME
    own = _nbconvert_template_dirs()
    exporter = HTMLExporter(  # type: ignore[no-untyped-call]
        template_name=name,
        extra_template_basedirs=bases + own,  # finds the `lab` template we build on
        extra_template_paths=own,  # resolves `{% extends 'lab/index.html.j2' %}`
        embed_images=True,
    )
    resources = {"mlnb": record, "mlnb_importance": importance_view(importance)}
    body, _ = exporter.from_notebook_node(document, resources=resources)
    return body
