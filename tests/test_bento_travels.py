"""A Bento that travels with honest lineage (issue 20, item 2) and an OpenAPI page that shows
the training columns and a real row (item 6), as a user meets them.

One project, a git repository holding breast_cancer.ipynb: built from a real run (``mlnb
build`` runs it), run again (every stage from the cache: a new run, the same content) and
built again, which reuses the first Bento and says so. The build folder goes to the real
``bentoml build``; the Bento is exported, imported into a fresh BentoML home, searched for the
build machine's folders, and served by ``bentoml serve`` from another folder on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlnb import __version__

from .build_support import Server, free_port, post, user_env, wait_ready
from .conftest import EXAMPLES

pytestmark = pytest.mark.slow


@dataclass
class Travelled:
    root: Path  # the project: notebook, store, build machine's BentoML home
    first: dict[str, Any]  # mlnb build --json, which ran the notebook
    first_log: str
    second: dict[str, Any]  # mlnb build --json after a second, all-cached run
    second_log: str
    second_run: str
    handmade: subprocess.CompletedProcess[str]  # bentoml build BUILD_DIR, by hand
    home: Path  # the BentoML home the Bento was imported into
    bento: Path  # its folder there
    served_from: Path  # the folder bentoml serve started in
    server: Server
    docs: dict[str, Any]  # GET /docs.json

    @property
    def spec(self) -> dict[str, Any]:
        return json.loads((self.bento / "src" / "mlnb_service.json").read_text())

    def run_record(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.root / ".mlnb" / "runs" / run_id / "run.json").read_text())


def command(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result


def git(root: Path, *args: str) -> str:
    return command(["git", *args], root, {**os.environ, "LC_ALL": "C"}).stdout.strip()


@pytest.fixture(scope="module")
def travelled(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("travels")
    root = base / "project"
    root.mkdir()
    for name in ("breast_cancer.ipynb", "breast_cancer.contract.yaml"):
        shutil.copy(EXAMPLES / name, root / name)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "nb")
    env = user_env(root)
    mlnb = [sys.executable, "-m", "mlnb"]
    built = command([*mlnb, "build", "breast_cancer.ipynb", "--json"], root, env)
    first = json.loads(built.stdout)
    rerun = command([*mlnb, "run", "breast_cancer.ipynb", "--json"], root, env)
    again = command([*mlnb, "build", "breast_cancer.ipynb", "--json"], root, env)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    bentoml = [sys.executable, "-m", "bentoml"]
    handmade = command(  # as the build says: in the folder, bentoml build
        [*bentoml, "build", "--version", "handmade"], Path(first["build_dir"]), env
    )
    archive = base / "breast_cancer.bento"
    command([*bentoml, "export", first["bento"], str(archive)], elsewhere, env)
    home = base / "another-home"
    imported_env = {**env, "BENTOML_HOME": str(home)}
    command([*bentoml, "import", str(archive)], elsewhere, imported_env)
    name, version = first["bento"].split(":")
    served_from = base / "served-here"
    served_from.mkdir()
    port = free_port()
    log = base / "serve.log"
    with open(log, "wb") as handle:  # as a shell starts it: in that folder, $PWD saying so
        process = subprocess.Popen(
            [*bentoml, "serve", first["bento"], "--host", "127.0.0.1", "--port", str(port)],
            cwd=served_from,
            env={**imported_env, "PWD": str(served_from)},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(server)
        with urllib.request.urlopen(server.url + "/docs.json", timeout=10) as response:
            docs = json.loads(response.read())
        yield Travelled(
            root, first, built.stderr, json.loads(again.stdout), again.stderr,
            json.loads(rerun.stdout)["run_id"], handmade, home,
            home / "bentos" / name / version, served_from, server, docs,
        )  # fmt: skip
    finally:
        server.stop()


def text_files(folder: Path) -> dict[Path, str]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            found[path] = path.read_bytes().decode("utf-8", errors="replace")
    return found


# ---- item 2: a Bento that travels ---------------------------------------------------------


def test_no_folder_of_the_build_machine_is_in_the_bento(travelled: Travelled) -> None:
    build_machine = {
        "the project": str(travelled.root),
        "the store": str(travelled.root / ".mlnb"),
        "the build's temporary folder": str(travelled.root.parent),
        "the build's BentoML home": str(travelled.root / "bentoml"),
        "the build's Python": sys.prefix,
    }
    files = text_files(travelled.bento)
    assert travelled.bento / "src" / "report.html" in files and len(files) > 40
    for what, folder in build_machine.items():
        holding = [str(path.relative_to(travelled.bento)) for path, text in files.items()
                   if folder in text]  # fmt: skip
        assert not holding, f"{what} ({folder}) is named in {holding}"
    spec = travelled.spec
    assert spec["notebook"] == "breast_cancer.ipynb"
    assert spec["monitor_dir"] == f"mlnb-monitoring/breast_cancer/{spec['bento_version']}"
    report = (travelled.bento / "src" / "report.html").read_text()
    assert "Notebook <code>breast_cancer.ipynb</code>" in report


def test_served_elsewhere_it_announces_its_monitoring_folder_and_logs_there(
    travelled: Travelled,
) -> None:
    version = travelled.spec["bento_version"]
    folder = travelled.served_from / "mlnb-monitoring" / "breast_cancer" / version
    status, answer = post(travelled.server.url + "/predict", {"rows": [travelled.spec["example"]]})
    assert status == 200, answer
    log = travelled.server.log.read_text()
    announced = re.findall(r"mlnb: (\S+) logs its monitoring in (\S+) \((.*)\)", log)
    assert announced == [
        (
            f"breast_cancer:{version}",
            str(folder),
            "under the folder bentoml serve started in; $MLNB_MONITOR_DIR chooses another",
        )
    ], log
    assert (folder / "reference.json").is_file()
    assert not (travelled.bento / "src" / "mlnb-monitoring").exists()  # not inside the Bento


def test_mlnb_serve_started_elsewhere_logs_there_whatever_pwd_it_inherits(
    travelled: Travelled,
) -> None:
    """`mlnb serve TAG` started by a program in another folder, with the program's $PWD."""
    elsewhere = travelled.root.parent / "mlnb-serve-here"
    elsewhere.mkdir()
    port = free_port()
    log = travelled.root.parent / "mlnb-serve.log"
    command = [sys.executable, "-m", "mlnb", "serve", travelled.first["bento"]]
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=elsewhere,
            env={**user_env(travelled.root), "PWD": str(travelled.root)},  # stale
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(server)
    finally:
        server.stop()
    folder = elsewhere / "mlnb-monitoring" / "breast_cancer" / travelled.spec["bento_version"]
    assert f"logs its monitoring in {folder} (" in log.read_text()
    assert (folder / "reference.json").is_file()


def test_the_build_folder_is_one_bentoml_build_accepts(travelled: Travelled) -> None:
    build_dir = Path(travelled.first["build_dir"])
    assert build_dir == travelled.root / "mlnb-builds" / travelled.first["bento"].replace(":", "-")
    assert not [part for part in build_dir.parts if part.startswith(".")]
    assert (build_dir.parent / ".gitignore").read_text().splitlines()[-1] == "*"
    assert f"build folder {build_dir} (cd there and run bentoml build" in travelled.first_log
    assert "Successfully built" in travelled.handmade.stdout + travelled.handmade.stderr
    assert (travelled.root / "bentoml" / "bentos" / "breast_cancer" / "handmade").is_dir()


def test_the_labels_name_the_run_the_notebook_git_and_mlnb(travelled: Travelled) -> None:
    from mlnb.serving.runtime import ServiceSpec

    run = travelled.run_record(travelled.first["run_id"])
    expected = {
        "run": travelled.first["run_id"],
        "notebook": "breast_cancer.ipynb",
        "notebook_sha256": run["notebook"]["sha256"],
        "git_commit": git(travelled.root, "rev-parse", "HEAD"),
        "git_dirty": "false",
        "mlnb_version": __version__,
        "model_format": "onnx",
    }
    assert len(expected["notebook_sha256"]) == 64 and len(expected["git_commit"]) == 40
    info = yaml.safe_load((travelled.bento / "bento.yaml").read_text())
    labels = {key: value for key, value in info["labels"].items() if key.startswith("mlnb.")}
    assert labels == {
        **{f"mlnb.{key.replace('_', '-')}": value for key, value in expected.items()},
        "mlnb.format": "onnx",
    }
    assert travelled.spec["build"] == expected == travelled.first["build"]
    assert ServiceSpec(travelled.spec).info().build == expected  # what mlnb_build_info shows


def test_a_rebuild_of_the_same_content_says_it_reused_the_older_bento(
    travelled: Travelled,
) -> None:
    first, second = travelled.first, travelled.second
    assert second["run_id"] == travelled.second_run != first["run_id"]
    assert second["bento"] == first["bento"]
    assert (second["created"], second["reused"]) == (False, True)
    assert second["reused_from_run"] == first["run_id"]
    day = str(yaml.safe_load((travelled.bento / "bento.yaml").read_text())["creation_time"])[:10]
    assert (
        f"reused the existing Bento {first['bento']} (built from run {first['run_id']} on {day}; "
        "same content)"
    ) in travelled.second_log
    builds = travelled.run_record(travelled.second_run)["builds"]
    assert [(b["bento"], b["reused_from_run"]) for b in builds] == [
        (first["bento"], first["run_id"])
    ]
    # the Bento is the first one, unchanged: its labels still name the run that built it
    labels = yaml.safe_load((travelled.bento / "bento.yaml").read_text())["labels"]
    assert labels["mlnb.run"] == first["run_id"]


def test_the_bentofile_pins_the_services_closure_at_the_runs_versions(
    travelled: Travelled,
) -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    bentofile = yaml.safe_load((travelled.bento / "src" / "bentofile.yaml").read_text())
    assert bentofile["python"]["lock_packages"] is False
    pins = dict(pin.split("==") for pin in bentofile["python"]["packages"])
    pinned = {canonicalize_name(name): version for name, version in pins.items()}
    recorded = travelled.run_record(travelled.first["run_id"])["environment"]["packages"]
    for name, version in recorded.items():
        if canonicalize_name(name) in pinned:
            assert pinned[canonicalize_name(name)] == version, name
    for name in ("bentoml", "onnxruntime", "pyarrow", "starlette", "pydantic", "numpy"):
        assert canonicalize_name(name) in pinned, name  # direct needs and BentoML's own
    for name in ("jupyterlab", "papermill", "pytest", "skl2onnx"):  # the run's tools: out
        assert canonicalize_name(name) not in pinned, name
    for name in pins:  # closed: whatever a pinned package requires here is pinned, and fits
        for line in metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is not None and not marker.evaluate({"extra": ""}):
                continue
            key = canonicalize_name(requirement.name)
            try:
                metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                continue  # not installed here: nothing here needs it
            assert key in pinned, f"{name} requires {requirement}, which is not pinned"
            assert requirement.specifier.contains(pinned[key], prereleases=True), (
                f"{name} requires {requirement}, pinned {pinned[key]}"
            )
    requirements_txt = (travelled.bento / "env" / "python" / "requirements.txt").read_text()
    assert all(f"{name}=={version}" in requirements_txt for name, version in pins.items())


# ---- item 6: the OpenAPI page of /predict -------------------------------------------------


def test_the_openapi_page_lists_the_training_columns_and_a_real_row(
    travelled: Travelled,
) -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True).data
    row = travelled.docs["components"]["schemas"]["Row"]
    assert list(row["properties"]) == list(data.columns) == row["required"]
    assert {p["type"] for p in row["properties"].values()} == {"number"}
    assert row["properties"]["mean radius"]["description"] == "training dtype float64"
    example = row["example"]
    assert example == travelled.spec["example"]
    matches = (data == {name: example[name] for name in data.columns}).all(axis=1)
    assert matches.sum() == 1  # a real row of the training data, every value exact
    request = travelled.docs["paths"]["/predict"]["post"]["requestBody"]["content"]
    rows = request["application/json"]["schema"]["properties"]["rows"]
    assert rows["example"] == [example]
    assert rows["items"]["anyOf"][0] == {"$ref": "#/components/schemas/Row"}


def test_the_example_of_the_openapi_page_posted_to_predict_is_answered(
    travelled: Travelled,
) -> None:
    request = travelled.docs["paths"]["/predict"]["post"]["requestBody"]["content"]
    example = request["application/json"]["schema"]["properties"]["rows"]["example"]
    status, answer = post(travelled.server.url + "/predict", {"rows": example})
    assert status == 200, answer
    assert len(answer["predictions"]) == 1
    assert answer["predictions"][0]["diagnosis"] in ("malignant", "benign")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # BentoML's import, pathspec's
def test_nullable_and_categorical_columns_reach_the_openapi_page() -> None:
    """The row model of a schema with missing values and categories, through BentoML's own
    OpenAPI generation (the one ``GET /docs.json`` answers with), in OpenAPI 3.0's terms."""
    from typing import Any as AnyValue

    import bentoml

    from mlnb.serving.runtime import ServiceSpec
    from mlnb.serving.schema import RequestSchema

    training = {
        "columns": ["age", "city", "visits"],
        "dtypes": {"age": "float64", "city": "category", "visits": "int64"},
        "profile": {"age": {"nan_fraction": 0.1}, "city": {"nan_fraction": 0.2}},
    }
    schema = RequestSchema.from_training_data(training, categories={"city": ["Oslo", "Rome"]})
    example = {"age": 41.0, "city": "Rome", "visits": 3}
    spec = ServiceSpec({"schema": schema.to_json(), "example": example})
    Row, ROWS = spec.row_model(), spec.rows_field()  # as service.py names them

    def predict(self: object, rows: list[AnyValue] = ROWS) -> dict[str, AnyValue]:
        return {}

    # service.py's signature, evaluated here (this module's annotations are strings)
    predict.__annotations__ = {"rows": list[Row | list[AnyValue]], "return": dict[str, AnyValue]}
    Described = bentoml.service(name="described")(
        type("Described", (), {"predict": bentoml.api(route="/predict")(predict)})
    )

    page = Described.openapi_spec.asdict()
    properties = page["components"]["schemas"]["Row"]["properties"]
    assert properties["age"] == {
        "description": "training dtype float64", "nullable": True, "title": "age",
        "type": "number",
    }  # fmt: skip
    assert properties["city"]["enum"] == ["Oslo", "Rome"] and properties["city"]["nullable"]
    assert properties["visits"]["type"] == "integer" and "nullable" not in properties["visits"]
    assert "anyOf" not in json.dumps(properties)  # no `type: null`, which 3.0 lacks
    assert page["components"]["schemas"]["Row"]["example"] == example


# ---- the parts on their own -----------------------------------------------------------------


def test_git_state_is_unknown_outside_a_repository_and_without_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlnb.bento.lineage import git_state

    assert git_state(tmp_path) == ("unknown", "unknown")
    git(tmp_path, "init", "-q")
    (tmp_path / "nb.ipynb").write_text("{}")
    git(tmp_path, "add", "nb.ipynb")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "x")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert git_state(tmp_path) == (head, "false")
    (tmp_path / "nb.ipynb").write_text("{ }")
    assert git_state(tmp_path) == (head, "true")
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert git_state(tmp_path) == ("unknown", "unknown")


def test_the_build_folder_sits_beside_a_hidden_store_and_in_a_visible_one() -> None:
    from mlnb.bento.folder import build_folder

    assert build_folder(Path("/p/.mlnb"), "n", "1") == Path("/p/mlnb-builds/n-1")
    assert build_folder(Path("/p/store"), "n", "1") == Path("/p/store/builds/n-1")


def test_the_model_format_names_the_final_estimators_library() -> None:
    import lightgbm
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlnb.bento.lineage import served_format

    boosted = GridSearchCV(make_pipeline(StandardScaler(), lightgbm.LGBMClassifier()), {})
    boosted.best_estimator_ = boosted.estimator  # as a fitted search holds it
    assert served_format("native", boosted) == "lightgbm"
    assert served_format("native", make_pipeline(LogisticRegression())) == "sklearn"
    assert served_format("native", make_pipeline(StandardScaler(), "passthrough")) == "sklearn"
    assert served_format("onnx", LogisticRegression()) == "onnx"


def test_the_monitoring_folder_is_chosen_where_the_service_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlnb.reporting.paths import resolve_monitor_folder
    from mlnb.serving.runtime import ServiceSpec

    spec = ServiceSpec({"monitor_dir": "mlnb-monitoring/n/v"})
    started, bento = tmp_path / "started-here", tmp_path / "bento" / "src"
    started.mkdir()
    bento.mkdir(parents=True)
    monkeypatch.chdir(bento)  # where BentoML moves its processes
    monkeypatch.delenv("MLNB_MONITOR_DIR", raising=False)
    monkeypatch.setenv("PWD", str(started))  # where the shell started bentoml serve
    assert spec.monitor_folder() == started / "mlnb-monitoring" / "n" / "v"
    monkeypatch.setenv("MLNB_MONITOR_DIR", str(tmp_path / "chosen"))
    assert spec.monitor_folder() == tmp_path / "chosen"
    monkeypatch.delenv("PWD")  # a supervisor that sets none: BentoML's home, not the Bento
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLNB_MONITOR_DIR")
    assert spec.monitor_folder() == tmp_path / "home" / "mlnb-monitoring" / "n" / "v"
    monkeypatch.setenv("PWD", str(started))
    older = ServiceSpec({"monitor_dir": str(tmp_path / "store" / "monitoring" / "n" / "v")})
    assert older.monitor_folder() == tmp_path / "store" / "monitoring" / "n" / "v"
    # `mlnb monitor n:v` from the folder the service started in finds its logs there
    (started / "mlnb-monitoring" / "n" / "v").mkdir(parents=True)
    (started / "mlnb-monitoring" / "n" / "v" / "reference.json").write_text("{}")
    monkeypatch.chdir(started)
    found = resolve_monitor_folder("n:v", str(tmp_path / "no-store"))
    assert found == started / "mlnb-monitoring" / "n" / "v"


def test_the_example_row_is_a_complete_training_row_and_never_a_credential(
    tmp_path: Path,
) -> None:
    import pandas as pd

    from mlnb.bento.builder import _example_row
    from mlnb.serving.schema import RequestSchema

    class Kept:  # the run's kept training rows, as BuildInputs gives them
        def __init__(self, frame: pd.DataFrame) -> None:
            self.path = tmp_path / f"sample-{id(frame)}.parquet"
            frame.to_parquet(self.path)

        def data_path(self, which: str) -> Path | None:
            return self.path if which == "sample" else None

    frame = pd.DataFrame({"x": [float("nan"), 2.5], "note": ["a", "b"]})
    training = {
        "columns": ["x", "note"],
        "dtypes": {"x": "float64", "note": "object"},
        "profile": {"x": {"nan_fraction": 0.5}},
    }
    schema = RequestSchema.from_training_data(training)
    said: list[str] = []
    assert _example_row(Kept(frame), schema, said.append) == {"x": 2.5, "note": "b"}
    leaky = frame.assign(note=["AKIAIOSFODNN7EXAMPLE"] * 2)  # pragma: allowlist secret
    assert _example_row(Kept(leaky), schema, said.append) is None
    assert said == [
        "the OpenAPI page shows no example row: column 'note' of the training row holds what "
        "looks like an AWS access key id, which must not ship in the Bento"
    ]


def test_the_announcement_says_why_the_folder_is_there(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mlnb.serving.runtime import ServiceSpec

    ident = {"bento_name": "n", "bento_version": "v"}
    monkeypatch.delenv("MLNB_MONITOR_DIR", raising=False)
    caplog.set_level("INFO", logger="mlnb.serving")
    ServiceSpec({**ident, "monitor_dir": "mlnb-monitoring/n/v"}).announce(Path("/a"))
    ServiceSpec({**ident, "monitor_dir": "/store/monitoring/n/v"}).announce(Path("/b"))
    monkeypatch.setenv("MLNB_MONITOR_DIR", "/c")
    ServiceSpec({**ident, "monitor_dir": "mlnb-monitoring/n/v"}).announce(Path("/c"))
    assert [r.getMessage() for r in caplog.records if r.name == "mlnb.serving"] == [
        "mlnb: n:v logs its monitoring in /a (under the folder bentoml serve started in; "
        "$MLNB_MONITOR_DIR chooses another)",
        "mlnb: n:v logs its monitoring in /b (the folder the Bento names; $MLNB_MONITOR_DIR "
        "chooses another)",
        "mlnb: n:v logs its monitoring in /c (from $MLNB_MONITOR_DIR)",
    ]
