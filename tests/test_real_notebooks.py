"""The real-style corpus (tests/notebooks/real/) end to end, through the CLI as a user runs it.

For every notebook: `mlnb inspect` names the stages as tagged; `mlnb run` succeeds; a re-run
with nothing changed reuses every stage; an edit of one literal in a later stage re-runs that
stage and what depends on it, and the cached run's results equal a `--no-cache` run of the
edited notebook; a notebook with a train and a serve stage builds, serves on 127.0.0.1 and
answers one `/predict` request made of training rows.

Each notebook works in its own copy of the corpus folder with its own store, beside one
temporary BentoML home. The notebooks' runs, builds and servers happen once per module, two
notebooks at a time (the longest first), and the tests read what happened.
"""

from __future__ import annotations

import ast
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from .build_support import Server, free_port, post, user_env, wait_ready
from .conftest import NOTEBOOKS

pytestmark = pytest.mark.slow

CORPUS = NOTEBOOKS / "real"
PARALLEL = 2  # notebooks at once: this machine has two cores


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` by ``new`` in one cell; ``reran`` are the stages that must run again."""

    cell: int
    old: str
    new: str
    reran: frozenset[str]


@dataclass(frozen=True)
class Case:
    notebook: str
    stages: tuple[tuple[str, str], ...]  # (name, kind) as tagged
    metrics: frozenset[str]
    edits: tuple[Edit, ...]
    probe: int | None = None  # the cell that calls predict(X_test.head(n))
    columns: tuple[str, ...] | None = None  # the training frame's columns
    dtypes: dict[str, str] = field(default_factory=dict)  # column -> dtype prefix
    task: str | None = None  # with a serve stage: what the build must see
    depends_on: dict[str, frozenset[str]] = field(default_factory=dict)  # at least these
    model_libraries: tuple[str, ...] = ("scikit-learn",)  # what a native model needs to load


def edit(cell: int, old: str, new: str, *reran: str) -> Edit:
    return Edit(cell, old, new, frozenset(reran))


WINE_COLUMNS = (
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280/od315_of_diluted_wines",
    "proline",
    "color_hue_ratio",
)
CASES: dict[str, Case] = {
    case.notebook: case
    for case in (
        Case(
            "digits_grid_search.ipynb",
            stages=(("load", "data"), ("search", "train"), ("serve", "serve")),
            metrics=frozenset({"precision", "recall"}),
            edits=(
                edit(
                    7,
                    "precision_threshold = 0.98",
                    "precision_threshold = 0.95",
                    "search",
                    "serve",
                ),
            ),
            probe=13,
            task="classification",
        ),
        Case(
            "churn_lightgbm.ipynb",
            stages=(("load", "data"), ("fit", "train"), ("serve", "serve")),
            metrics=frozenset({"auc", "accuracy"}),
            edits=(edit(8, "num_leaves=15", "num_leaves=7", "fit", "serve"),),
            probe=13,
            columns=(
                "signup_date",
                "tenure_months",
                "monthly_charges",
                "total_charges",
                "contract",
                "payment_method",
            ),
            dtypes={"signup_date": "datetime64", "contract": "category"},
            task="classification",
            model_libraries=("scikit-learn", "lightgbm"),
        ),
        Case(
            "wine_svc.ipynb",
            stages=(
                ("load", "data"),
                ("features", "data"),
                ("configure", "train"),
                ("fit", "train"),
                ("serve", "serve"),
            ),
            metrics=frozenset({"accuracy", "macro_f1"}),
            edits=(
                # a cosmetic edit after the stage that changed X and features in place
                edit(11, "accuracy {accuracy:.3f}", "accuracy {accuracy:.4f}", "fit", "serve"),
                # the serve stage reads clf, which the fit stage fitted in place
                edit(14, "predict(X_test.head(3))", "predict(X_test.head(5))", "serve"),
            ),
            probe=14,
            columns=WINE_COLUMNS,  # load_wine's 13 and the engineered ratio
            task="classification",
        ),
        Case(
            "bike_rentals.ipynb",
            stages=(
                ("load", "data"),
                ("corrections", "data"),
                ("fit", "train"),
                ("serve", "serve"),
            ),
            metrics=frozenset({"mae", "r2"}),
            edits=(edit(10, "max_iter=100", "max_iter=80", "fit", "serve"),),
            probe=15,
            columns=("day", "season", "temp", "workingday"),
            dtypes={"day": "datetime64", "season": "category"},
            task="regression",
        ),
        Case(
            "titanic_cleaning.ipynb",
            stages=(("load", "data"), ("clean", "data"), ("fit", "train"), ("serve", "serve")),
            metrics=frozenset({"accuracy", "n_rows"}),
            edits=(edit(12, "max_iter=1000", "max_iter=2000", "fit", "serve"),),
            probe=17,
            columns=("pclass", "sex", "age", "sibsp", "fare", "embarked"),
            dtypes={"embarked": "category"},
            task="classification",
        ),
        Case(
            "kale_diabetes.ipynb",
            stages=(
                ("load", "step"),
                ("prepare", "step"),
                ("build_model", "step"),
                ("train", "step"),
                ("evaluate", "step"),
            ),
            metrics=frozenset({"r2", "mae"}),
            # the data-loading step: every step that reads what it loaded runs again
            edits=(
                edit(
                    6,
                    'query("age >= 25")',
                    'query("age >= 30")',
                    "load",
                    "prepare",
                    "train",
                    "evaluate",
                ),
            ),
            depends_on={
                "prepare": frozenset({"load"}),
                "train": frozenset({"prepare", "build_model"}),
                "evaluate": frozenset({"prepare", "train"}),
            },
        ),
    )
}
KALE_SKIP_CELL = 1  # `!pip install ...`, tagged skip: never runs under mlnb
EDITS = [(name, number) for name, case in CASES.items() for number in range(len(case.edits))]
SERVED = [name for name, case in CASES.items() if case.task]


# ---------------------------------------------------------------------------------------------
# What happened to each notebook, once per module


@dataclass
class Step:
    """One CLI call: its exit code, output and, for --json commands, the decoded answer."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    answer: Any = None

    def explain(self) -> str:
        return f"mlnb {' '.join(self.args)} (exit {self.returncode}):\n{self.stderr[-4000:]}"


@dataclass
class EditedRuns:
    cached: Step
    fresh: Step  # --no-cache, same edited notebook


@dataclass
class Outcome:
    folder: Path
    store: Path
    inspect: Step
    cold: Step
    again: Step
    edits: list[EditedRuns] = field(default_factory=list)
    build: Step | None = None
    request_rows: list[dict[str, Any]] | None = None
    served: tuple[int, Any] | None = None  # status and answer of one /predict
    probe_expected: list[Any] | None = None  # what the notebook's predict(X_test.head(n)) gave
    probe_served: tuple[int, Any] | None = None  # the server's answer for those rows
    serve_error: str | None = None
    probe_error: str | None = None
    serve_log: str = ""

    def executed(self, step: Step) -> dict[str, Any]:
        return json.loads((self.store / step.answer["executed_notebook"]).read_text())


class Corpus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = user_env(root)

    def mlnb(self, folder: Path, *args: str, as_json: bool = False) -> Step:
        result = subprocess.run(
            [sys.executable, "-m", "mlnb", *args],
            cwd=folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        step = Step(args, result.returncode, result.stdout, result.stderr)
        if as_json:
            try:
                step.answer = json.loads(result.stdout)
            except ValueError:
                step.answer = None
        return step

    def exercise(self, case: Case) -> Outcome:
        stem = Path(case.notebook).stem
        folder = self.root / stem
        shutil.copytree(CORPUS, folder, ignore=shutil.ignore_patterns("__pycache__", ".mlnb"))
        store = self.root / f"{stem}-store"
        nb = case.notebook
        run = ("run", nb, "--store", str(store), "--json")
        outcome = Outcome(
            folder,
            store,
            inspect=self.mlnb(folder, "inspect", nb, "--json", as_json=True),
            cold=self.mlnb(folder, *run, as_json=True),
            again=self.mlnb(folder, *run, as_json=True),
        )
        for change in case.edits:
            edit_cell(folder / nb, change)
            outcome.edits.append(
                EditedRuns(
                    cached=self.mlnb(folder, *run, as_json=True),
                    fresh=self.mlnb(folder, *run, "--no-cache", as_json=True),
                )
            )
        if case.task:
            outcome.build = self.mlnb(folder, "build", nb, "--store", str(store), "--json")
            if outcome.build.returncode == 0:
                outcome.build.answer = json.loads(outcome.build.stdout)
                try:
                    self.serve(outcome, case)
                except Exception as error:  # what the serve tests report, not the other tests
                    outcome.serve_error = f"{type(error).__name__}: {error}"
        return outcome

    def serve(self, outcome: Outcome, case: Case) -> None:
        run = json.loads(
            (outcome.store / "runs" / outcome.build.answer["run_id"] / "run.json").read_text()
        )
        outcome.request_rows = request_rows(outcome.store, run)
        port = free_port()
        log = self.root / f"serve-{outcome.folder.name}.log"
        command = [sys.executable, "-m", "mlnb", "serve", outcome.build.answer["bento"]]
        command += ["--store", str(outcome.store), "--host", "127.0.0.1", "--port", str(port)]
        elsewhere = self.root / f"serve-{outcome.folder.name}"  # features.py is not beside it
        elsewhere.mkdir()
        with open(log, "wb") as handle:
            process = subprocess.Popen(
                command, cwd=elsewhere, env=self.env, stdout=handle, stderr=subprocess.STDOUT
            )
        server = Server(process, f"http://127.0.0.1:{port}", log)
        try:
            wait_ready(server, timeout=180)
            outcome.served = post(server.url + "/predict", {"rows": outcome.request_rows})
            if case.probe is not None:
                try:
                    expected, rows = probe_request(outcome, run, case.probe)
                    outcome.probe_expected = expected
                    outcome.probe_served = post(server.url + "/predict", {"rows": rows})
                except Exception as error:
                    outcome.probe_error = f"{type(error).__name__}: {error}"
        finally:
            server.stop()
            outcome.serve_log = log.read_text(errors="replace")


def edit_cell(path: Path, change: Edit) -> None:
    """Change one literal in one cell of the notebook's JSON, as an editor would save it."""
    notebook = json.loads(path.read_text())
    cell = notebook["cells"][change.cell]
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    assert source.count(change.old) == 1, (change, source)
    cell["source"] = source.replace(change.old, change.new)
    path.write_text(json.dumps(notebook, indent=1) + "\n")


def request_rows(store: Path, run: dict[str, Any], count: int = 2) -> list[dict[str, Any]]:
    """Two complete training rows as JSON objects: dates as ISO 8601, categories as strings."""
    sample = pd.read_parquet(store / run["training_data"]["sample"]["path"]).dropna().head(count)
    rows = []
    for record in sample.to_dict(orient="records"):
        rows.append({str(k): wire(v) for k, v in record.items()})
    return rows


def probe_request(
    outcome: Outcome, run: dict[str, Any], cell: int
) -> tuple[list[Any], list[dict[str, Any]]]:
    """What the run's probe cell answered for X_test.head(n), and those n rows as JSON."""
    executed = json.loads((outcome.store / run["executed_notebook"]).read_text())
    text = probe_text(executed, cell)
    assert text is not None, f"the probe cell {cell} has no result in run {run['run_id']}"
    expected = ast.literal_eval(text)
    saved = [
        ref
        for stage in run["stages"]
        for name, ref in (stage.get("outputs") or {}).items()
        if name == "X_test" and ref.get("format") == "parquet"
    ]
    assert saved, f"run {run['run_id']} saved no X_test"
    frame = pd.read_parquet(outcome.store / saved[-1]["path"]).head(len(expected))
    rows = [{str(k): wire(v) for k, v in r.items()} for r in frame.to_dict(orient="records")]
    return expected, rows


def wire(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


@pytest.fixture(scope="module")
def corpus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Outcome]]]:
    """Every selected notebook's whole story, started at once, two notebooks at a time."""
    here = request.module.__name__
    wanted = {
        item.callspec.params["name"]
        for item in request.session.items
        if item.module.__name__ == here and hasattr(item, "callspec")
    }
    the_corpus = Corpus(tmp_path_factory.mktemp("real"))
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {
            name: pool.submit(the_corpus.exercise, CASES[name]) for name in CASES if name in wanted
        }
        yield futures


def outcome_of(corpus: dict[str, Future[Outcome]], name: str) -> Outcome:
    return corpus[name].result(timeout=1800)


def record_of(step: Step) -> dict[str, Any]:
    assert isinstance(step.answer, dict) and "stages" in step.answer, step.explain()
    return step.answer


def succeeded(step: Step) -> dict[str, Any]:
    record = record_of(step)
    assert step.returncode == 0 and record["status"] == "succeeded", (
        f"{record.get('error')}\n{step.explain()}"
    )
    return record


def statuses(record: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in record["stages"]}


def probe_output(outcome: Outcome, step: Step, cell: int) -> str | None:
    """The text of the probe cell's result in the run's executed notebook (None: not run)."""
    return probe_text(outcome.executed(step), cell)


def probe_text(notebook: dict[str, Any], cell: int) -> str | None:
    for executed in notebook["cells"]:
        if (executed["metadata"].get("mlnb_run") or {}).get("cell") != cell:
            continue
        for output in executed.get("outputs", []):
            if output["output_type"] == "execute_result":
                text = output["data"]["text/plain"]
                return "".join(text) if isinstance(text, list) else text
    return None


# ---------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("name", CASES)
def test_inspect_names_the_stages_as_tagged(corpus, name: str) -> None:
    case, outcome = CASES[name], outcome_of(corpus, name)
    step = outcome.inspect
    assert step.returncode == 0, step.explain()
    found = step.answer
    assert [(s["name"], s["kind"]) for s in found["stages"]] == list(case.stages)
    depends = {s["name"]: set(s["depends_on"]) for s in found["stages"]}
    for stage, needed in case.depends_on.items():
        assert needed <= depends[stage], (stage, depends[stage])
    if name == "kale_diabetes.ipynb":
        assert KALE_SKIP_CELL in found["skipped_cells"]
        assert all(KALE_SKIP_CELL not in s["cells"] for s in found["stages"])
        assert KALE_SKIP_CELL not in found["setup_cells"]


@pytest.mark.parametrize("name", CASES)
def test_a_cold_run_succeeds_and_records_the_model_inputs(corpus, name: str) -> None:
    case, outcome = CASES[name], outcome_of(corpus, name)
    record = succeeded(outcome.cold)
    assert statuses(record) == {stage: "ran" for stage, _ in case.stages}
    assert set(record["metrics"]) == case.metrics
    assert all(math.isfinite(v) for v in record["metrics"].values())
    assert record["kernel"] == "python3"  # bike_rentals has no kernelspec: the fallback
    if case.columns is not None:
        assert record["training_data"]["columns"] == list(case.columns)
    for column, dtype in case.dtypes.items():
        assert record["training_data"]["dtypes"][column].startswith(dtype), column


@pytest.mark.parametrize("name", CASES)
def test_a_rerun_with_nothing_changed_reuses_every_stage(corpus, name: str) -> None:
    outcome = outcome_of(corpus, name)
    cold, again = succeeded(outcome.cold), succeeded(outcome.again)
    assert set(statuses(again).values()) == {"cached"}, statuses(again)
    assert again["metrics"] == cold["metrics"]
    assert again["training_data"] == cold["training_data"]


@pytest.mark.parametrize(("name", "number"), EDITS)
def test_an_edit_reruns_its_stage_and_what_depends_on_it(corpus, name: str, number: int) -> None:
    case, outcome = CASES[name], outcome_of(corpus, name)
    change = case.edits[number]
    record = succeeded(outcome.edits[number].cached)
    expected = {stage: "ran" if stage in change.reran else "cached" for stage, _ in case.stages}
    assert statuses(record) == expected, [
        (s["name"], s["status"], s.get("reason")) for s in record["stages"]
    ]


@pytest.mark.parametrize(("name", "number"), EDITS)
def test_an_edited_cached_run_equals_a_no_cache_run(corpus, name: str, number: int) -> None:
    case, outcome = CASES[name], outcome_of(corpus, name)
    runs = outcome.edits[number]
    cached, fresh = succeeded(runs.cached), succeeded(runs.fresh)
    assert set(statuses(fresh).values()) == {"ran"}
    assert cached["metrics"] == pytest.approx(fresh["metrics"], rel=1e-9, abs=1e-12)
    if fresh.get("training_data"):
        for key in ("columns", "dtypes", "rows"):
            assert cached["training_data"][key] == fresh["training_data"][key], key
    if fresh.get("model"):
        assert cached["model"]["class"] == fresh["model"]["class"]
    if case.probe is not None:
        answer = probe_output(outcome, runs.fresh, case.probe)
        assert answer is not None and answer == probe_output(outcome, runs.cached, case.probe)


@pytest.mark.parametrize("name", SERVED)
def test_the_build_serves_one_request_of_training_rows(corpus, name: str) -> None:
    case, outcome = CASES[name], outcome_of(corpus, name)
    assert outcome.build is not None and outcome.build.returncode == 0, outcome.build.explain()
    folder = Path(outcome.build.answer["build_dir"])
    spec = json.loads((folder / "mlnb_service.json").read_text())
    assert spec["task"] == case.task
    assert outcome.serve_error is None, outcome.serve_error
    assert outcome.served is not None
    status, answer = outcome.served
    assert status == 200, (answer, outcome.request_rows, outcome.serve_log[-3000:])
    assert len(answer["predictions"]) == len(outcome.request_rows) == 2


@pytest.mark.parametrize("name", SERVED)
def test_the_served_model_answers_what_the_notebook_answered(corpus, name: str) -> None:
    """The build's run's predict(X_test.head(n)), sent as n request rows to the server."""
    outcome = outcome_of(corpus, name)
    assert outcome.build is not None and outcome.build.returncode == 0, outcome.build.explain()
    assert outcome.serve_error is None, outcome.serve_error
    assert outcome.probe_error is None, outcome.probe_error
    assert outcome.probe_served is not None
    status, answer = outcome.probe_served
    assert status == 200, (answer, outcome.serve_log[-3000:])
    assert close(answer["predictions"], outcome.probe_expected), (
        answer["predictions"],
        outcome.probe_expected,
    )


def close(served: Any, expected: Any) -> bool:
    """Equal, numbers within the last digit a rounded answer can move by (ONNX is float32)."""
    if isinstance(expected, dict):
        return (
            isinstance(served, dict)
            and served.keys() == expected.keys()
            and all(close(served[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(served, list)
            and len(served) == len(expected)
            and all(close(a, b) for a, b in zip(served, expected, strict=True))
        )
    if isinstance(expected, float) and not isinstance(served, bool):
        return isinstance(served, (int, float)) and math.isclose(
            served, expected, rel_tol=1e-3, abs_tol=1.5e-4
        )
    return served == expected


@pytest.mark.parametrize("name", SERVED)
def test_the_bento_pins_what_the_model_needs(corpus, name: str) -> None:
    """A native model's libraries at the run's versions (LightGBM too); ONNX: onnxruntime."""
    case, outcome = CASES[name], outcome_of(corpus, name)
    assert outcome.build is not None and outcome.build.returncode == 0, outcome.build.explain()
    built = outcome.build.answer
    record = json.loads((outcome.store / "runs" / built["run_id"] / "run.json").read_text())
    versions = record["environment"]["packages"]
    folder = Path(built["build_dir"])
    pins = yaml.safe_load((folder / "bentofile.yaml").read_text())["python"]["packages"]
    if built["format"] == "native":
        for library in case.model_libraries:
            assert f"{library}=={versions[library]}" in pins, (library, pins)
    else:
        assert any(pin.startswith("onnxruntime==") for pin in pins), pins


@pytest.mark.parametrize("name", ["kale_diabetes.ipynb"])
def test_the_kale_skip_cell_never_runs(corpus, name: str) -> None:
    outcome = outcome_of(corpus, name)
    steps = [outcome.cold, *(step for runs in outcome.edits for step in (runs.cached, runs.fresh))]
    for step in steps:
        succeeded(step)
        for cell in outcome.executed(step)["cells"]:
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            if "pip install" in source:
                assert cell.get("execution_count") is None and not cell.get("outputs"), cell
