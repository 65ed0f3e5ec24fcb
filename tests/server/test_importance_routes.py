"""GET and POST /mlnb/runs/ID/importance through a real Jupyter server: not computed, then
computed in a subprocess and cached in the store, then read back; bad ids and auth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlnb.store import Store
from tests.test_importance import make_run

from .test_routes import assert_error, call


def a_run(root: Path) -> str:
    store = Store.for_notebook(root / "breast_cancer.ipynb")
    record = make_run(store, run_id="20261201-000000-abcdef")
    record["notebook"] = {"path": str(root / "breast_cancer.ipynb")}
    store.save_run(record)
    return str(record["run_id"])


async def test_importance_is_computed_on_request_then_read_from_the_store(
    jp_fetch: Any, root: Path
) -> None:
    run_id = a_run(root)
    route, params = f"runs/{run_id}/importance", {"path": "breast_cancer.ipynb"}
    status, payload = await call(jp_fetch, route, params=params)
    assert status == 200 and payload == {
        "run_id": run_id,
        "status": "not-computed",
        "importance": None,
    }
    status, payload = await call(jp_fetch, route, method="POST", body={"path": params["path"]})
    assert status == 200, payload
    assert payload["status"] == "computed" and payload["importance"]["available"]
    assert payload["importance"]["features"][0]["feature"] == "strong"
    status, again = await call(jp_fetch, route, params=params)
    assert again["status"] == "computed"
    assert again["importance"]["features"] == payload["importance"]["features"]


async def test_importance_refuses_bad_ids_unknown_runs_and_no_token(
    jp_fetch: Any, root: Path
) -> None:
    params = {"path": "breast_cancer.ipynb"}
    status, payload = await call(jp_fetch, "runs/..bad/importance", params=params)
    assert_error(payload, 400)
    status, payload = await call(jp_fetch, "runs/20260101-000000-000000/importance", params=params)
    assert_error(payload, 404, "run-not-found")
    status, payload = await call(
        jp_fetch,
        "runs/20260101-000000-000000/importance",
        method="POST",
        body=params,
        headers={"Authorization": ""},
    )
    assert status == 403
