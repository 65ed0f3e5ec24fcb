"""The panel's data contracts and top features: every contract state from hand-made run records
(the shape the run writes), escaped names, and the top features computed in a process."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from mlnb.panel.state import contract_rows, feature_rows, importance_note, violation_text
from mlnb.panel.widgets import MlnbPanel
from mlnb.store import Store

from .conftest import NOTEBOOKS
from .test_importance import HOSTILE, make_run

VIOLATION = {
    "value": "X_train",
    "column": "mean radius",
    "rule": "less_than_or_equal_to",
    "severity": "error",
    "rows": 3,
    "examples": [1000.0, 1200.5],
    "message": "mean radius above its range",
}


def stage(name: str, status: str | None, violations: list[dict[str, Any]] = ()) -> dict:  # type: ignore[assignment]
    found: dict[str, Any] = {"name": name, "kind": "data", "status": "ran"}
    if status is not None:
        found["contract"] = {
            "status": status,
            "file": "nb.contract.yaml",
            "violations": list(violations),
        }
    return found


def record_with_every_state() -> dict[str, Any]:
    warn = {**VIOLATION, "severity": "warn", "column": HOSTILE, "rows": 1, "examples": ["z"]}
    stages = [
        stage("clean", "passed"),
        stage("drift", "warned", [warn]),
        stage("broken", "failed", [VIOLATION] * 5),
        stage("first", "learned"),
        stage("other", "unchecked"),
        stage("old", None),  # a run made before contracts
        {"name": "fit", "kind": "train", "status": "ran"},
    ]
    return {
        "run_id": "r0",
        "status": "failed",
        "started_at": "2026-12-01T00:00:00+00:00",
        "stages": stages,
    }


def test_contract_rows_give_each_data_stage_its_state_and_first_violations() -> None:
    rows = contract_rows(record_with_every_state())
    assert [(r.stage, r.status) for r in rows] == [
        ("clean", "passed"),
        ("drift", "warned"),
        ("broken", "failed"),
        ("first", "learned"),
        ("other", "unchecked"),
        ("old", "-"),
    ]
    broken = rows[2]
    assert len(broken.violations) == 3 and broken.more == 2
    assert broken.violations[0] == (
        'X_train["mean radius"]: less_than_or_equal_to, 3 rows (e.g. 1000.0, 1200.5)'
    )
    assert rows[1].violations[0].endswith("1 row (e.g. z) [warn]")
    assert violation_text({"value": "y", "rule": "column_missing"}) == "y: column_missing"


def test_feature_rows_and_the_note() -> None:
    importance = {
        "ordered_by": "mean_abs_contribution",
        "features": [
            {
                "feature": "a",
                "mean_abs_contribution": 2.0,
                "permutation_mean": 0.1,
                "permutation_std": 0.01,
            },
            {
                "feature": "b",
                "mean_abs_contribution": 1.0,
                "permutation_mean": None,
                "permutation_std": None,
            },
        ],
        "contribution": {
            "available": True,
            "method": "tree",
            "exact": True,
            "rows": 89,
            "data": "holdout",
        },
        "permutation": {"available": False, "reason": "no labels"},
    }
    rows = feature_rows(importance)
    assert [(r.feature, r.contribution, r.permutation, r.share) for r in rows] == [
        ("a", "2", "0.1 ± 0.01", 1.0),
        ("b", "1", "-", 0.5),
    ]
    assert importance_note(importance) == (
        "mean |contribution|: tree SHAP (exact), 89 holdout rows; "
        "no permutation importance: no labels"
    )


def panel_for(tmp_path: Path, record: dict[str, Any] | None = None) -> tuple[MlnbPanel, Store]:
    notebook = tmp_path / "tiny.ipynb"
    shutil.copy(NOTEBOOKS / "tiny.ipynb", notebook)
    store = Store(tmp_path / ".mlnb")
    if record is not None:
        record["notebook"] = {"path": str(notebook.resolve())}
        store.create_run(record)
        store.index_run(record)
    return MlnbPanel(notebook, store=str(store.root)), store


def test_the_panel_shows_every_contract_state_escaped(tmp_path: Path) -> None:
    panel, _ = panel_for(tmp_path, record_with_every_state())
    html = panel.contracts.value
    for status in ("passed", "warned", "failed", "learned", "unchecked"):
        assert f">{status}</b>" in html
    assert "and 2 more" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert panel.features_button.disabled  # no successful run with a model yet


def test_top_features_are_computed_in_a_process_then_read_from_the_store(tmp_path: Path) -> None:
    notebook = tmp_path / "tiny.ipynb"
    shutil.copy(NOTEBOOKS / "tiny.ipynb", notebook)
    store = Store(tmp_path / ".mlnb")
    record = make_run(store)
    record["notebook"] = {"path": str(notebook.resolve())}
    store.save_run(record)

    async def compute() -> MlnbPanel:  # the panel follows the process on the (kernel's) loop
        panel = MlnbPanel(notebook, store=str(store.root))
        assert panel.features.value == ""  # not computed yet
        assert panel.start_importance() == "r1"
        assert panel.features_status.value == "computing the top features of run r1..."
        assert panel.features_button.disabled
        await panel.settled(120)
        return panel

    panel = asyncio.run(compute())
    assert panel.features_status.value == "run r1", panel.error.value
    assert not panel.features_button.disabled
    assert "<td style='padding:2px 8px'>strong</td>" in panel.features.value
    assert "linear SHAP (exact)" in panel.features.value
    # A new panel shows them at once: the store's cache, nothing computed.
    again = MlnbPanel(notebook, store=str(store.root))
    assert "strong" in again.features.value and not again.features_button.disabled
