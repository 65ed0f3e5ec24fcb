"""Models as real notebooks hold them, from `mlnb run` to an answer over HTTP.

Five small notebooks, each run, built and served once for the module: (a) a
``FunctionTransformer`` of a function defined in a cell inside a ``GridSearchCV`` with a
``refit=`` callable, (b) a transformer from a module beside the notebook, (c) datetime,
duration, categorical, bool and ``Int64`` columns into a LightGBM regressor, (d) an SVC
(no ``predict_proba``), (e) an LGBMClassifier. Every served answer is compared with the run's
own model on the held-out rows.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from .build_support import Server, free_port, post, user_env, wait_ready

pytestmark = pytest.mark.slow

SETUP = """\
import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
"""

FUNCTIONS = [
    (SETUP + "from sklearn.linear_model import LogisticRegression", ()),
    (
        "rng = np.random.default_rng(0)\n"
        "X = pd.DataFrame({'day': rng.integers(1, 29, 300), 'amount': rng.normal(size=300)})\n"
        "y = ((X['day'] > 14) ^ (X['amount'] > 0.5)).astype(int)\n"
        "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)",
        ("mlnb:data:load",),
    ),
    (
        "def day_of_month(frame):\n"
        "    angle = frame['day'] / 31 * 2 * np.pi\n"
        "    return np.c_[np.sin(angle), np.cos(angle), frame['amount'], frame['day'] > 14]\n"
        "\n\n"
        "def refit_strategy(cv_results):\n"
        "    return int(np.argmax(cv_results['mean_test_score']))\n"
        "\n\n"
        "pipe = make_pipeline(FunctionTransformer(day_of_month), LogisticRegression())\n"
        "model = GridSearchCV(pipe, {'logisticregression__C': [0.1, 1.0]}, refit=refit_strategy,"
        " cv=3)\n"
        "model.fit(X_train, y_train)\n"
        "accuracy = model.score(X_test, y_test)",
        ("mlnb:train:fit",),
    ),
]

FEATURES_PY = """\
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class DayOfWeek(BaseEstimator, TransformerMixin):
    \"\"\"One-hot day of the week of an integer day number, plus the other columns.\"\"\"

    def fit(self, X, y=None):
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        week = np.eye(7)[X["day"].to_numpy() % 7]
        return np.c_[week, X.drop(columns="day").to_numpy()]
"""

LOCAL_MODULE = [
    (SETUP + "from sklearn.linear_model import Ridge\nfrom features import DayOfWeek", ()),
    (
        "rng = np.random.default_rng(1)\n"
        "X = pd.DataFrame({'day': rng.integers(0, 60, 200), 'price': rng.normal(size=200)})\n"
        "y = (X['day'] % 7) * 2.0 + X['price']\n"
        "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)",
        ("mlnb:data:load",),
    ),
    (
        "model = make_pipeline(DayOfWeek(), Ridge(alpha=0.1))\n"
        "model.fit(X_train, y_train)\n"
        "r2 = model.score(X_test, y_test)",
        ("mlnb:train:fit",),
    ),
    (
        "def predict(frame):\n    return [round(float(v), 6) for v in model.predict(frame)]",
        ("mlnb:serve",),
    ),
]

DTYPES = [
    (SETUP + "from lightgbm import LGBMRegressor", ()),
    (
        "rng = np.random.default_rng(2)\n"
        "n = 240\n"
        "X = pd.DataFrame({\n"
        "    'when': pd.Timestamp('2024-01-01') + pd.to_timedelta(rng.integers(0, 365, n), 'D'),\n"
        "    'wait': pd.to_timedelta(rng.integers(0, 7200, n), 's'),\n"
        "    'color': pd.Categorical(rng.choice(['red', 'green', 'blue'], n),"
        " categories=['red', 'green', 'blue', 'violet']),\n"
        "    'member': rng.random(n) > 0.5,\n"
        "    'visits': pd.array(np.where(rng.random(n) > 0.2, rng.integers(0, 9, n), -1),"
        " dtype='Int64'),\n"
        "})\n"
        "X.loc[X['visits'] == -1, 'visits'] = pd.NA\n"
        "y = X['when'].dt.month + X['color'].cat.codes * 3.0 + X['member'] * 2.0\n"
        "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)",
        ("mlnb:data:load",),
    ),
    (
        "def encode(frame):\n"
        "    return pd.DataFrame({\n"
        "        'month': frame['when'].dt.month,\n"
        "        'weekday': frame['when'].dt.day_of_week,\n"
        "        'wait': frame['wait'].dt.total_seconds(),\n"
        "        'color': frame['color'].cat.codes,\n"
        "        'member': frame['member'].astype(int),\n"
        "        'visits': frame['visits'].astype('float64'),\n"
        "    })\n"
        "\n\n"
        "model = make_pipeline(\n"
        "    FunctionTransformer(encode), LGBMRegressor(n_estimators=20, min_child_samples=5,"
        " verbose=-1)\n"
        ")\n"
        "model.fit(X_train, y_train)\n"
        "r2 = model.score(X_test, y_test)",
        ("mlnb:train:fit",),
    ),
]

SVC_CELLS = [
    (SETUP + "from sklearn.datasets import load_iris\nfrom sklearn.svm import SVC", ()),
    (
        "X, y = load_iris(return_X_y=True, as_frame=True)\n"
        "names = np.array(['setosa', 'versicolor', 'virginica'])\n"
        "y = pd.Series(names[y], index=X.index)\n"
        "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)",
        ("mlnb:data:load",),
    ),
    (
        "model = SVC()\nmodel.fit(X_train, y_train)\naccuracy = model.score(X_test, y_test)",
        ("mlnb:train:fit",),
    ),
]

LGBM_CELLS = [
    (SETUP + "from lightgbm import LGBMClassifier", ()),
    (
        "rng = np.random.default_rng(3)\n"
        "X = pd.DataFrame(rng.integers(0, 50, (300, 4)).astype('float32'),"
        " columns=['a', 'b', 'c', 'd'])\n"
        "y = ((X['a'] + X['b'] > 50) & (X['c'] > 10)).astype(int)\n"
        "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)",
        ("mlnb:data:load",),
    ),
    (
        "model = LGBMClassifier(n_estimators=15, min_child_samples=5, verbose=-1)\n"
        "model.fit(X_train, y_train)\n"
        "accuracy = model.score(X_test, y_test)",
        ("mlnb:train:fit",),
    ),
]

NOTEBOOKS = {
    "functions.ipynb": FUNCTIONS,
    "localmod.ipynb": LOCAL_MODULE,
    "dtypes.ipynb": DTYPES,
    "svc.ipynb": SVC_CELLS,
    "lgbm.ipynb": LGBM_CELLS,
}


def write_notebook(path: Path, cells: list[tuple[str, tuple[str, ...]]]) -> None:
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for source, tags in cells:
        cell = nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = list(tags)
        book.cells.append(cell)
    nbformat.write(book, str(path))


class Project:
    """A folder of notebooks, its store and BentoML home; every command a subprocess."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = user_env(root)
        self.builds: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.servers: dict[str, Server] = {}

    def mlnb(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlnb", *args],
            cwd=self.root, env=self.env, capture_output=True, text=True, timeout=600,
            check=False,
        )  # fmt: skip

    def run_build_and_serve(self, notebook: str) -> None:
        """`mlnb run`, `mlnb build`, then `mlnb serve` started (it gets ready meanwhile)."""
        ran = self.mlnb("run", notebook, "--json")
        assert ran.returncode == 0, f"mlnb run {notebook} failed:\n{ran.stderr[-4000:]}"
        built = self.mlnb("build", notebook, "--json")
        assert built.returncode == 0, f"mlnb build {notebook} failed:\n{built.stderr[-4000:]}"
        self.builds[notebook] = json.loads(built.stdout)
        self.logs[notebook] = built.stderr
        self.servers[notebook] = self.serve(notebook)

    def server(self, notebook: str) -> Server:
        server = self.servers[notebook]
        wait_ready(server)
        return server

    def run_record(self, notebook: str) -> dict[str, Any]:
        run_id = self.builds[notebook]["run_id"]
        return json.loads((self.root / ".mlnb" / "runs" / run_id / "run.json").read_text())

    def native_model(self, notebook: str) -> Any:
        """The run's own model, loaded as the run saved it (the notebook's folder importable)."""
        from mlnb.bento.modelfile import importable, load_model
        from mlnb.store import Store

        record = self.run_record(notebook)["model"]
        store = Store.for_notebook(str(self.root / notebook), None)
        with importable(self.root):
            return load_model(store.resolve(record["path"]), record["format"])

    def held_out(self, notebook: str) -> pd.DataFrame:
        from mlnb.store import Store

        data = self.run_record(notebook)["training_data"]
        store = Store.for_notebook(str(self.root / notebook), None)
        return pd.read_parquet(store.resolve(data["holdout"]["path"]))

    def serve(self, notebook: str) -> Server:
        port = free_port()
        log = self.root / f"serve-{port}.log"
        tag = self.builds[notebook]["bento"]
        command = [sys.executable, "-m", "mlnb", "serve", tag, "--host", "127.0.0.1"]
        elsewhere = self.root / "elsewhere"  # not the notebook's folder: no features.py here
        elsewhere.mkdir(exist_ok=True)
        with open(log, "wb") as handle:
            process = subprocess.Popen(
                [*command, "--port", str(port)],
                cwd=elsewhere, env={**self.env, "PWD": str(elsewhere)}, stdout=handle,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        return Server(process, f"http://127.0.0.1:{port}", log)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("real-models")
    (root / "features.py").write_text(FEATURES_PY)
    for name, cells in NOTEBOOKS.items():
        write_notebook(root / name, cells)
    the_project = Project(root)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:  # two cores: two at a time
            list(pool.map(the_project.run_build_and_serve, NOTEBOOKS))
        yield the_project
    finally:
        running = [s.process for s in the_project.servers.values() if s.process.poll() is None]
        for process in running:  # all at once, then wait for each
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(root / "bentoml", ignore_errors=True)


@pytest.fixture
def served(project: Project, request: pytest.FixtureRequest) -> Server:
    """The notebook's Bento, served on 127.0.0.1 for the whole module."""
    return project.server(request.param)


def answer(server: Server, rows: list[Any]) -> dict[str, Any]:
    status, body = post(server.url + "/predict", {"rows": rows})
    assert status == 200, body
    return body


def wire_rows(project: Project, notebook: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON would carry them (ISO 8601 times), through the Bento's own schema."""
    from mlnb.serving.schema import RequestSchema

    spec_file = Path(project.builds[notebook]["build_dir"]) / "mlnb_service.json"
    schema = RequestSchema.from_json(json.loads(spec_file.read_text())["schema"])
    return json.loads(json.dumps(schema.wire_rows(frame)))


def bentofile_pins(project: Project, notebook: str) -> list[str]:
    bentofile = Path(project.builds[notebook]["build_dir"]) / "bentofile.yaml"
    return list(yaml.safe_load(bentofile.read_text())["python"]["packages"])


@pytest.mark.parametrize("served", ["functions.ipynb"], indirect=True)
def test_functions_defined_in_cells_travel_by_value(project: Project, served: Server) -> None:
    built = project.builds["functions.ipynb"]
    assert project.run_record("functions.ipynb")["model"]["format"] == "cloudpickle"
    assert built["format"] == "native"  # a FunctionTransformer of a cell's function
    assert "FunctionTransformer" in built["reason"]
    assert (
        "holds code defined in the notebook: it is saved by value"
        in project.logs["functions.ipynb"]
    )
    pins = bentofile_pins(project, "functions.ipynb")
    import cloudpickle
    import sklearn

    assert f"cloudpickle=={cloudpickle.__version__}" in pins
    assert f"scikit-learn=={sklearn.__version__}" in pins
    held_out = project.held_out("functions.ipynb")
    got = answer(served, wire_rows(project, "functions.ipynb", held_out))
    model = project.native_model("functions.ipynb")
    assert got["predictions"] == model.predict(held_out).tolist()
    assert np.allclose(got["probabilities"], model.predict_proba(held_out), atol=1e-12)


@pytest.mark.parametrize("served", ["localmod.ipynb"], indirect=True)
def test_a_module_beside_the_notebook_is_carried_into_the_bento(
    project: Project, served: Server
) -> None:
    built = project.builds["localmod.ipynb"]
    assert "local modules carried into the Bento: features" in project.logs["localmod.ipynb"]
    bento_src = Path(built["build_dir"])
    assert (bento_src / "notebook_modules" / "features.py").read_text() == FEATURES_PY
    assert not any(pin.startswith("features") for pin in bentofile_pins(project, "localmod.ipynb"))
    held_out = project.held_out("localmod.ipynb")
    got = answer(served, wire_rows(project, "localmod.ipynb", held_out))
    expected = [
        round(float(v), 6) for v in project.native_model("localmod.ipynb").predict(held_out)
    ]
    assert got["predictions"] == expected


@pytest.mark.parametrize("served", ["dtypes.ipynb"], indirect=True)
def test_datetime_duration_category_bool_and_int64_columns(
    project: Project, served: Server
) -> None:
    import lightgbm

    built = project.builds["dtypes.ipynb"]
    assert built["format"] == "native"
    assert f"lightgbm=={lightgbm.__version__}" in bentofile_pins(project, "dtypes.ipynb")
    held_out = project.held_out("dtypes.ipynb")
    assert held_out["visits"].isna().any()  # null on the wire for Int64
    rows = wire_rows(project, "dtypes.ipynb", held_out)
    assert rows[0]["when"].startswith("2024-") and "T" in rows[0]["when"]
    assert rows[0]["wait"].startswith("P")
    got = answer(served, rows)
    expected = project.native_model("dtypes.ipynb").predict(held_out)
    assert np.allclose(got["predictions"], expected, rtol=1e-12)
    # durations also as seconds; a category outside the training ones is refused by name
    seconds = dict(rows[0], wait=pd.Timedelta(rows[0]["wait"]).total_seconds())
    assert answer(served, [seconds])["predictions"] == got["predictions"][:1]
    status, body = post(served.url + "/predict", {"rows": [rows[0], dict(rows[0], color="pink")]})
    assert status == 422 and (body["row"], body["field"]) == (1, "color")
    assert "'pink' is not one of the training categories" in body["message"]
    status, body = post(served.url + "/predict", {"rows": [dict(rows[0], when="tomorrow")]})
    assert status == 422 and "ISO 8601" in body["message"]
    with urllib.request.urlopen(served.url + "/docs.json") as response:
        openapi = json.loads(response.read())
    assert "date-time" in json.dumps(openapi) and "violet" in json.dumps(openapi)
    # every column with its type, nullability and categories, and a training row to try
    row = openapi["components"]["schemas"]["Row"]
    spec = json.loads((Path(built["build_dir"]) / "mlnb_service.json").read_text())
    fields = spec["schema"]["fields"]
    assert list(row["properties"]) == [f["name"] for f in fields]
    for field in fields:
        described = row["properties"][field["name"]]
        assert described.get("nullable", False) is field["nullable"], field
        assert described.get("enum") == field.get("categories"), field
    assert any(f["nullable"] for f in fields) and "anyOf" not in json.dumps(row)
    assert row["example"] == spec["example"] and set(row["example"]) == set(row["properties"])
    status, body = post(served.url + "/predict", {"rows": [row["example"]]})
    assert status == 200, body
    assert built["build"]["model_format"] == "lightgbm"


@pytest.mark.parametrize("served", ["svc.ipynb"], indirect=True)
def test_an_svc_is_a_classifier_without_probabilities(project: Project, served: Server) -> None:
    built = project.builds["svc.ipynb"]
    spec = json.loads((Path(built["build_dir"]) / "mlnb_service.json").read_text())
    assert spec["task"] == "classification"
    assert spec["classes"] == ["setosa", "versicolor", "virginica"]
    held_out = project.held_out("svc.ipynb")
    got = answer(served, wire_rows(project, "svc.ipynb", held_out))
    assert got["predictions"] == project.native_model("svc.ipynb").predict(held_out).tolist()
    assert "probabilities" not in got


@pytest.mark.parametrize("served", ["lgbm.ipynb"], indirect=True)
def test_a_lightgbm_classifier_goes_through_onnxmltools(project: Project, served: Server) -> None:
    built = project.builds["lgbm.ipynb"]
    log = project.logs["lgbm.ipynb"]
    assert "LightGBM model: trying onnxmltools' LightGBM converter" in log
    assert built["format"] == "onnx", built["reason"]
    held_out = project.held_out("lgbm.ipynb")
    got = answer(served, wire_rows(project, "lgbm.ipynb", held_out))
    model = project.native_model("lgbm.ipynb")
    assert got["predictions"] == model.predict(held_out).tolist()
    assert np.allclose(got["probabilities"], model.predict_proba(held_out), atol=1e-5)


@pytest.mark.parametrize("served", ["svc.ipynb"], indirect=True)
def test_rows_that_mix_objects_and_lists_are_refused_naming_the_row(
    project: Project, served: Server
) -> None:
    row = wire_rows(project, "svc.ipynb", project.held_out("svc.ipynb").head(1))[0]
    status, body = post(served.url + "/predict", {"rows": [row, row, list(row.values())]})
    assert (status, body["error"], body["row"], body["field"]) == (422, "mixed-rows", 2, None)
    assert body["message"].startswith("row 2 is a list of values, but row 0 is an object")
    assert "send row 2 as an object keyed by the feature names" in body["fix"]
