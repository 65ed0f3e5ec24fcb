"""Every route of the REST API through a real Jupyter server: answers, auth, paths, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import mlnb
from tests.conftest import ROOT

ERROR_KEYS = {
    "error",
    "message",
    "fix",
    "notebook",
    "cell",
    "cell_index",
    "cell_first_line",
    "stage",
    "status",
}


async def call(
    jp_fetch: Any,
    route: str,
    *,
    method: str = "GET",
    body: Any = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """``(status, JSON)`` of a request to ``/mlnb/<route>``, whatever the status."""
    kwargs: dict[str, Any] = {"method": method, "raise_error": False}
    if method == "POST":
        kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
    response = await jp_fetch("mlnb", *route.split("/"), params=params, headers=headers, **kwargs)
    return response.code, json.loads(response.body) if response.body else None


def assert_error(payload: Any, status: int, code: str | None = None) -> None:
    assert set(payload) >= ERROR_KEYS, payload
    assert payload["status"] == status
    assert payload["message"]
    if code is not None:
        assert payload["error"] == code, payload


ROUTES = [
    ("GET", "version", None, None),
    ("GET", "inspect", {"path": "breast_cancer.ipynb"}, None),
    ("POST", "inspect", None, {"path": "breast_cancer.ipynb", "notebook": {}}),
    ("GET", "runs", {"path": "breast_cancer.ipynb"}, None),
    ("POST", "runs", None, {"path": "breast_cancer.ipynb", "parameters": {}}),
    ("GET", "runs/20260101-000000-abcdef", {"path": "breast_cancer.ipynb"}, None),
    ("GET", "runs/20260101-000000-abcdef/notebook", {"path": "breast_cancer.ipynb"}, None),
    ("POST", "builds", None, {"path": "breast_cancer.ipynb"}),
    ("GET", "jobs/abc123", None, None),
]


@pytest.mark.parametrize(("method", "route", "params", "body"), ROUTES)
async def test_every_route_refuses_a_request_without_a_token(
    jp_fetch: Any, root: Path, method: str, route: str, params: Any, body: Any
) -> None:
    status, payload = await call(
        jp_fetch, route, method=method, params=params, body=body, headers={"Authorization": ""}
    )
    assert status == 403
    assert_error(payload, 403, "http-403")
    assert not (root / ".mlnb").exists()  # nothing ran


async def test_version_matches_the_package_and_the_sidebar(jp_fetch: Any) -> None:
    status, payload = await call(jp_fetch, "version")
    assert status == 200
    assert payload == {"version": mlnb.__version__, "api": 1}
    frontend = json.loads((ROOT / "package.json").read_text())["version"]
    version_ts = (ROOT / "labextension" / "src" / "version.ts").read_text()
    assert frontend == mlnb.__version__
    assert f"'{frontend}'" in version_ts


async def test_inspect_is_mlnb_inspect_json(jp_fetch: Any, root: Path) -> None:
    status, payload = await call(jp_fetch, "inspect", params={"path": "breast_cancer.ipynb"})
    assert status == 200
    cli = subprocess.run(
        [sys.executable, "-m", "mlnb", "inspect", "--json", "breast_cancer.ipynb"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert payload == json.loads(cli.stdout)
    assert [s["name"] for s in payload["stages"]] == ["load", "fit", "serve"]
    assert payload["notebook"] == "breast_cancer.ipynb"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("../breast_cancer.ipynb", 403, "path-outside-root"),
        ("sub/../../root_dir/breast_cancer.ipynb", 403, "path-outside-root"),
        ("/etc/passwd.ipynb", 403, "path-outside-root"),
        ("", 400, "bad-request"),
        ("breast_cancer.py", 400, "bad-request"),
        ("missing.ipynb", 404, "notebook-unreadable"),
    ],
)
async def test_inspect_refuses_bad_paths(
    jp_fetch: Any, root: Path, path: str, status: int, code: str
) -> None:
    got, payload = await call(jp_fetch, "inspect", params={"path": path})
    assert got == status
    assert_error(payload, status, code)
    assert str(root) not in json.dumps(payload)  # no server paths leak


async def test_inspect_without_path_is_a_400(jp_fetch: Any) -> None:
    status, payload = await call(jp_fetch, "inspect")
    assert status == 400
    assert_error(payload, 400, "bad-request")
    assert "path" in payload["message"]


async def test_a_validation_error_names_cell_and_stage_and_lists_the_stages(
    jp_fetch: Any, root: Path
) -> None:
    status, payload = await call(jp_fetch, "inspect", params={"path": "sub/broken.ipynb"})
    assert status == 400
    assert_error(payload, 400, "undefined-name")
    assert payload["stage"] == "data"
    assert payload["cell_index"] == 1 and payload["cell"] == 1  # cells[1], cell 2 to people
    assert payload["notebook"] == "sub/broken.ipynb"
    assert "'x'" in payload["message"] and payload["fix"]
    assert payload["stages"] == [
        {"name": "data", "kind": "data", "cells": [1], "cell_indexes": [1]},
        {"name": "train", "kind": "train", "cells": [2], "cell_indexes": [2]},
    ]


async def test_post_inspect_reads_unsaved_content(jp_fetch: Any, root: Path) -> None:
    document = json.loads((root / "diabetes.ipynb").read_text())
    _, on_disk = await call(jp_fetch, "inspect", params={"path": "diabetes.ipynb"})
    assert on_disk["stages"][0]["name"] == "load"
    # The user tags the setup cell as a data stage in the browser, without saving.
    setup = next(i for i, c in enumerate(document["cells"]) if c["cell_type"] == "code")
    document["cells"][setup]["metadata"]["tags"] = ["mlnb:data:imports"]
    status, payload = await call(
        jp_fetch, "inspect", method="POST", body={"path": "diabetes.ipynb", "notebook": document}
    )
    assert status == 200
    assert payload["stages"][0]["name"] == "imports"
    assert payload["notebook"] == "diabetes.ipynb"
    # The file on disk is untouched.
    assert "mlnb:data:imports" not in (root / "diabetes.ipynb").read_text()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("not json", 400, "bad-request"),
        ([1, 2], 400, "bad-request"),
        ({"path": "diabetes.ipynb", "notebook": {"cells": []}}, 404, "notebook-unreadable"),
        ({"path": "../x.ipynb", "notebook": {}}, 403, "path-outside-root"),
    ],
)
async def test_post_inspect_refuses_bad_bodies(
    jp_fetch: Any, root: Path, body: Any, status: int, code: str
) -> None:
    got, payload = await call(jp_fetch, "inspect", method="POST", body=body)
    assert got == status
    assert_error(payload, status, code)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"path": "../breast_cancer.ipynb"}, 403, "path-outside-root"),
        ({"parameters": {}}, 400, "bad-request"),
        ({"path": "sub/broken.ipynb"}, 400, "undefined-name"),
        ({"path": "breast_cancer.ipynb", "parameters": {"nope": 1}}, 400, "unknown-parameter"),
        ({"path": "breast_cancer.ipynb", "parameters": {"seed": "x"}}, 400, "bad-request"),
        ({"path": "breast_cancer.ipynb", "parameters": {"seed": True}}, 400, "bad-request"),
        ({"path": "breast_cancer.ipynb", "parameters": [1]}, 400, "bad-request"),
    ],
)
async def test_post_runs_refuses_bad_requests_before_starting_anything(
    jp_fetch: Any, root: Path, body: Any, status: int, code: str
) -> None:
    got, payload = await call(jp_fetch, "runs", method="POST", body=body)
    assert got == status
    assert_error(payload, status, code)
    assert not (root / ".mlnb").exists()


@pytest.mark.parametrize(
    ("route", "params", "status", "code"),
    [
        ("runs/20260101-000000-abcdef", {"path": "breast_cancer.ipynb"}, 404, "run-not-found"),
        ("runs/..", {"path": "breast_cancer.ipynb"}, 400, "bad-request"),
        ("runs/.hidden", {"path": "breast_cancer.ipynb"}, 400, "bad-request"),
        ("runs/20260101-000000-abcdef", {"path": "../breast_cancer.ipynb"}, 403, None),
        ("runs", {"path": "../breast_cancer.ipynb"}, 403, "path-outside-root"),
        ("jobs/0123abcd", None, 404, "job-not-found"),
        ("jobs/not-a-job", None, 404, "job-not-found"),
    ],
)
async def test_unknown_ids_and_outside_paths_are_4xx(
    jp_fetch: Any, root: Path, route: str, params: Any, status: int, code: str | None
) -> None:
    got, payload = await call(jp_fetch, route, params=params)
    assert got == status
    assert_error(payload, status, code)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"path": "../breast_cancer.ipynb"}, 403, "path-outside-root"),
        ({"path": "breast_cancer.ipynb", "run_id": "../x"}, 400, "bad-request"),
        ({"path": "sub/broken.ipynb"}, 400, "undefined-name"),
        ({"path": "missing.ipynb"}, 404, "notebook-unreadable"),
    ],
)
async def test_post_builds_refuses_bad_requests(
    jp_fetch: Any, root: Path, body: Any, status: int, code: str
) -> None:
    got, payload = await call(jp_fetch, "builds", method="POST", body=body)
    assert got == status
    assert_error(payload, status, code)


async def test_a_symlink_out_of_the_root_is_refused(
    jp_fetch: Any, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.ipynb").write_text((root / "diabetes.ipynb").read_text())
    (root / "link").symlink_to(outside)
    status, payload = await call(jp_fetch, "inspect", params={"path": "link/secret.ipynb"})
    assert status == 403
    assert_error(payload, 403, "path-outside-root")
