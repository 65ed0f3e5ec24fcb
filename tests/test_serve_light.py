"""The served process tree, as `mlnb serve` starts it on 127.0.0.1: a light arbiter, a worker
that loads the model, BentoML's per-request extras off unless asked for, old templates still
building and serving."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mlnb.serving.runtime import bentoml_config

from .build_support import Server, post, project, start_server, user_env, wait_ready
from .conftest import code_cell, mlnb, notebook_json

HERE = Path(__file__).resolve().parent
OLD_TEMPLATES = HERE / "old_templates"  # service.py.j2 and bentofile.yaml.j2 of the old layout
HEAVY = ("pandas", "numpy", "onnxruntime", "pyarrow", "sklearn")
ACCESS_LINE = re.compile(r"path=/predict.*")  # BentoML's access log line of a request


def mapped(pid: int) -> str:
    """What the process has mapped: every shared library it imported is in there."""
    return Path(f"/proc/{pid}/maps").read_text()


def rows(count: int = 3) -> list[dict]:
    built = project().build("breast_cancer.ipynb")
    record = json.loads((project().store / "runs" / built["run_id"] / "run.json").read_text())
    import pandas as pd

    frame = pd.read_parquet(project().store / record["training_data"]["holdout"]["path"])
    return frame.head(count).to_dict("records")


@pytest.fixture(scope="module")
def old_style() -> dict:
    """The example built with the templates of the old layout (model loaded at import)."""
    built = project().build("breast_cancer.ipynb")
    mine = project().root / "old-templates"
    shutil.copytree(OLD_TEMPLATES, mine, dirs_exist_ok=True)
    result = project().mlnb(
        "build", "breast_cancer.ipynb", "--run", built["run_id"], "--templates", str(mine),
        "--json",
    )  # fmt: skip
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def servers(old_style: dict) -> Iterator[dict[str, Server]]:
    """The example served four ways at once (one start-up wait)."""
    built = project().build("breast_cancer.ipynb")
    started = {
        "default": start_server(built["bento"]),
        "access": start_server(built["bento"], {"MLNB_ACCESS_LOG": "on"}),
        "traced": start_server(built["bento"], {"MLNB_ACCESS_LOG": "on", "MLNB_TRACING": "on"}),
        "old": start_server(old_style["bento"]),
    }
    try:
        for server in started.values():
            wait_ready(server)
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.mark.slow
def test_the_arbiter_imports_no_pandas_nor_the_model(servers: dict[str, Server]) -> None:
    server = servers["default"]
    status, _ = post(server.url + "/predict", {"rows": rows()})
    assert status == 200
    arbiter = psutil.Process(server.process.pid)  # `mlnb serve` execs `bentoml serve`
    assert "bentoml" in " ".join(arbiter.cmdline())
    workers = arbiter.children(recursive=True)
    assert len(workers) == 1
    in_arbiter = mapped(arbiter.pid)
    in_worker = mapped(workers[0].pid)
    for package in HEAVY:
        assert f"/{package}/" not in in_arbiter, f"the arbiter loaded {package}"
    for package in ("pandas", "numpy", "onnxruntime"):  # the worker serves the ONNX model
        assert f"/{package}/" in in_worker, f"the worker lacks {package}"
    # the old layout imports the notebook's code and loads the model in the arbiter too
    old = psutil.Process(servers["old"].process.pid)
    assert "/onnxruntime/" in mapped(old.pid)


@pytest.mark.slow
def test_the_openapi_page_lists_every_feature_of_a_row(servers: dict[str, Server]) -> None:
    built = project().build("breast_cancer.ipynb")
    spec = json.loads((Path(built["build_dir"]) / "mlnb_service.json").read_text())
    features = [field["name"] for field in spec["schema"]["fields"]]
    with urllib.request.urlopen(servers["default"].url + "/docs.json") as response:
        openapi = json.loads(response.read())
    row = openapi["components"]["schemas"]["Row"]
    assert list(row["properties"]) == features
    assert {p["type"] for p in row["properties"].values()} == {"number"}
    assert "#/components/schemas/Row" in json.dumps(openapi["paths"]["/predict"])


@pytest.mark.slow
def test_the_access_log_and_tracing_are_off_unless_asked_for(
    servers: dict[str, Server],
) -> None:
    for name in ("default", "access", "traced"):
        status, _ = post(servers[name].url + "/predict", {"rows": rows(1)})
        assert status == 200
    time.sleep(1)  # the worker's log reaches the arbiter's output
    assert not ACCESS_LINE.search(servers["default"].log.read_text())
    untraced = ACCESS_LINE.search(servers["access"].log.read_text())
    traced = ACCESS_LINE.search(servers["traced"].log.read_text())
    assert untraced and traced, "MLNB_ACCESS_LOG=on logs each request"
    assert "trace=" not in untraced.group(0), "tracing of /predict is off by default"
    assert re.search(r"\(trace=[0-9a-f]*[1-9a-f]", traced.group(0)), "MLNB_TRACING=on traces it"


@pytest.mark.slow
def test_metrics_keep_bentomls_series_and_mlnbs(servers: dict[str, Server]) -> None:
    url = servers["default"].url
    assert post(url + "/predict", {"rows": rows(5)})[0] == 200
    deadline = time.monotonic() + 20
    while True:
        with urllib.request.urlopen(url + "/metrics") as response:
            metrics = response.read().decode()
        lines = metrics.splitlines()
        bentoml_lines = [line for line in lines if line.startswith("bentoml_service_request")]
        ours = [line for line in lines if line.startswith("mlnb_")]
        if ours or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any('endpoint="/predict"' in line for line in bentoml_lines), metrics[:2000]
    assert ours, "the monitoring hooks' mlnb_* series are on /metrics"


@pytest.mark.slow
def test_a_service_template_of_the_old_layout_still_builds_and_serves(
    servers: dict[str, Server], old_style: dict
) -> None:
    service = (Path(old_style["build_dir"]) / "service.py").read_text()
    assert "HANDLER = SPEC.handler(" in service  # made at import, as the old template did
    assert "add_asgi_middleware(PredictMiddleware, handler=HANDLER)" in service
    body = {"rows": rows(10)}
    old_status, old_answer = post(servers["old"].url + "/predict", body)
    new_status, new_answer = post(servers["default"].url + "/predict", body)
    assert (old_status, new_status) == (200, 200)
    assert old_answer == new_answer and len(old_answer["predictions"]) == 10
    status, rejected = post(servers["old"].url + "/predict", {"rows": [{"mean radius": 1}]})
    assert status == 422 and rejected["error"] == "missing-field"


@pytest.mark.slow
def test_a_bentofile_template_that_leaves_out_the_serve_code_is_refused(tmp_path: Path) -> None:
    built = project().build("breast_cancer.ipynb")
    mine = tmp_path / "templates"
    mine.mkdir()
    shutil.copy(OLD_TEMPLATES / "bentofile.yaml.j2", mine / "bentofile.yaml.j2")
    result = project().mlnb(
        "build", "breast_cancer.ipynb", "--run", built["run_id"], "--templates", str(mine),
        check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "bentofile.yaml.j2 leaves mlnb_serve_code.py out of the Bento" in result.stderr
    assert "add '- mlnb_serve_code.py' to the include list" in result.stderr


def test_a_local_module_named_like_the_bentos_own_is_refused_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mlnb_serve_code.py").write_text("def double(x):\n    return 2 * x\n")
    cells = [
        code_cell("from mlnb_serve_code import double\nfrom sklearn.linear_model import Ridge"),
        code_cell("X, y = [[1.0], [2.0]], [1.0, 2.0]", tags=("mlnb:data:load",)),
        code_cell("model = Ridge().fit(X, y)", tags=("mlnb:train:fit",)),
    ]
    notebook = tmp_path / "clash.ipynb"
    notebook.write_text(json.dumps(notebook_json(cells)))
    for name, value in user_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    result = mlnb("build", str(notebook))
    assert result.returncode == 2, result.stderr
    assert "imports a module 'mlnb_serve_code' from beside it" in result.stderr
    assert "rename mlnb_serve_code.py" in result.stderr
    assert not (tmp_path / ".mlnb" / "runs").exists() or not any(
        (tmp_path / ".mlnb" / "runs").iterdir()
    )


def test_bentomls_extras_are_off_by_default_and_each_comes_back_on_its_own() -> None:
    off = bentoml_config(timeout=10, environ={})
    assert off == {
        "traffic": {"timeout": 10},
        "logging": {"access": {"enabled": False}},
        "tracing": {"excluded_urls": ["/predict"]},
    }
    assert "logging" not in bentoml_config(timeout=10, environ={"MLNB_ACCESS_LOG": "on"})
    traced = bentoml_config(timeout=10, environ={"MLNB_TRACING": "true"})
    assert "tracing" not in traced and traced["logging"] == off["logging"]
    assert bentoml_config(timeout=5, environ={"MLNB_ACCESS_LOG": "off"}) == {
        **off,
        "traffic": {"timeout": 5},
    }


def test_predict_answers_503_until_the_worker_has_made_its_handler() -> None:
    import asyncio

    from mlnb.serving.answer import Predictor
    from mlnb.serving.http import HandlerSlot, PredictHandler, PredictMiddleware
    from mlnb.serving.schema import RequestSchema

    class Model:
        def predict(self, frame: object) -> list[float]:
            return [1.5] * len(frame)  # type: ignore[arg-type]

    async def passed_on(scope: dict, receive: object, send: object) -> None:
        raise AssertionError("POST /predict is the middleware's")

    async def call(middleware: PredictMiddleware) -> tuple[int, dict]:
        sent: list[dict] = []
        messages = [{"type": "http.request", "body": b'{"rows": [[2.0]]}', "more_body": False}]

        async def receive() -> dict:
            return messages.pop(0)

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
        await middleware(scope, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    slot = HandlerSlot()
    middleware = PredictMiddleware(passed_on, handler=slot)  # BentoML makes it at start-up
    status, answer = asyncio.run(call(middleware))
    assert (status, answer["error"]) == (503, "not-ready")
    schema = RequestSchema.from_training_data({"columns": ["x"], "dtypes": {"x": "float64"}})
    slot.set(PredictHandler(schema, Predictor(Model(), "regression")))  # the service's __init__
    assert asyncio.run(call(middleware)) == (200, {"predictions": [1.5]})
