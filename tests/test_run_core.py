"""The pure core of runs, without a kernel: parameters, cache keys, plans, assembly, store."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mlnb.errors import RunIdError, RunNotFoundError, UnknownParameterError
from mlnb.pipeline import load_pipeline
from mlnb.run.assemble import INJECTED_TAG, assemble
from mlnb.run.compare import diff_runs
from mlnb.run.keys import explain_change, stage_keys
from mlnb.run.params import resolve_type, run_parameters
from mlnb.run.plan import make_plan, saved_names
from mlnb.store import Store, new_run_id, utc_now

from .conftest import EXAMPLES, NOTEBOOKS, code_cell


@pytest.mark.parametrize(
    "text",
    [
        "True",
        "False",
        "None",
        "3",
        "-3",
        "1_000",
        "0.5",
        "1e3",
        "nan",
        "inf",
        "abc",
        "",
        " 7 ",
        "true",
        "0x10",
        "3.0",
    ],
)
def test_parameters_are_typed_exactly_as_papermill_types_them(text: str) -> None:
    from papermill.cli import _resolve_type

    ours, theirs = resolve_type(text), _resolve_type(text)
    assert type(ours) is type(theirs)
    assert ours == theirs or (ours != ours and theirs != theirs)  # nan


def test_unknown_parameter_names_the_known_ones() -> None:
    pipeline = load_pipeline(EXAMPLES / "breast_cancer.ipynb")
    values = run_parameters(pipeline, [("C", "2"), ("seed", "7")], [("test_size", "0.3")])
    assert values.given == {"C": 2, "seed": 7, "test_size": "0.3"}
    assert values.values["max_iter"] == 500
    with pytest.raises(UnknownParameterError) as caught:
        run_parameters(pipeline, [("c", "2")])
    assert "no parameter 'c'" in str(caught.value)
    assert "test_size, seed, C, max_iter" in str(caught.value)


def test_parameter_without_a_parameters_cell(write_notebook) -> None:
    path = write_notebook([code_cell("x = 1", ("mlnb:data",))])
    with pytest.raises(UnknownParameterError, match="tag the cell"):
        run_parameters(load_pipeline(path), [("x", "2")])


def _keys(path: Path, **params: object) -> dict[str, str]:
    pipeline = load_pipeline(path)
    values = {**pipeline.parameter_defaults, **params}
    with Store(path.parent / ".store") as store:
        keys = stage_keys(pipeline, values, path.parent, store.fingerprints)
    return {k: v.key for k, v in keys.items()}


def test_cache_keys_follow_what_each_stage_reads(tmp_path: Path) -> None:
    notebook = tmp_path / "nb.ipynb"
    shutil.copyfile(EXAMPLES / "breast_cancer.ipynb", notebook)
    base = _keys(notebook)
    assert _keys(notebook) == base
    changed = _keys(notebook, C=2.0)  # a train parameter: train and serve change, never data
    assert changed["load"] == base["load"]
    assert changed["fit"] != base["fit"] and changed["serve"] != base["serve"]
    data_changed = _keys(notebook, seed=1)
    assert all(data_changed[name] != base[name] for name in base)

    document = json.loads(notebook.read_text())
    document["cells"][7]["source"] = "# a comment\n" + "".join(document["cells"][7]["source"])
    document["cells"][3]["source"] = "## Data, renamed"  # markdown never counts
    notebook.write_text(json.dumps(document))
    assert _keys(notebook) == base
    document["cells"][7]["source"] += "\nmodel.set_params()"
    notebook.write_text(json.dumps(document))
    edited = _keys(notebook)
    assert edited["load"] == base["load"] and edited["fit"] != base["fit"]


def test_files_and_local_modules_a_stage_names_are_in_its_key(write_notebook, tmp_path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    path = write_notebook(
        [
            code_cell("import helpers", ()),
            code_cell("text = open('data.csv').read()", ("mlnb:data",)),
            code_cell("n = helpers.double(len(text))", ("mlnb:train",)),
        ]
    )
    base = _keys(path)
    (tmp_path / "data.csv").write_text("a\n2\n")
    after_data = _keys(path)
    assert after_data["data"] != base["data"] and after_data["train"] != base["train"]
    (tmp_path / "helpers.py").write_text("def double(x):\n    return x + x\n")
    assert all(_keys(path)[n] != after_data[n] for n in base)  # setup imports it


def test_why_a_stage_runs_again_in_words() -> None:
    old = {
        "format": 1,
        "source": "a",
        "setup": "s",
        "kind": "train",
        "options": {},
        "parameters": {"C": 1.0},
        "depends_on": {"load": "k1"},
        "files": {"d.csv": "x"},
    }
    new = {**old, "parameters": {"C": 2.0}, "depends_on": {"load": "k2"}, "files": {"d.csv": "y"}}
    text = explain_change(old, new)
    assert "parameter C changed (1.0 -> 2.0)" in text
    assert "stage 'load' changed" in text and "d.csv changed" in text
    assert explain_change(None, new) == "no cached result"
    assert explain_change(old, {**old, "source": "b"}) == "its code changed"


def test_each_stage_saves_what_later_stages_use() -> None:
    saves = saved_names(load_pipeline(EXAMPLES / "breast_cancer.ipynb"))
    assert saves == {
        "load": ("X_test", "X_train", "y_test", "y_train"),
        "fit": ("model",),
        "serve": (),
    }


def test_assembled_notebook_injects_tagged_cells_and_never_writes_the_source(tmp_path) -> None:
    source = NOTEBOOKS / "runs" / "raises.ipynb"
    before = source.read_bytes()
    pipeline = load_pipeline(source)
    store = Store(tmp_path / "store")
    plan = make_plan(pipeline, pipeline.parameter_defaults, {}, store)
    document = assemble(json.loads(before), plan, {"store": str(store.root), "events": "e"})
    assert source.read_bytes() == before
    cells = document["cells"]
    injected = [c for c in cells if INJECTED_TAG in c["metadata"].get("tags", [])]
    roles = [c["metadata"]["mlnb_run"]["injected"] for c in injected]
    assert roles == ["start", "begin", "end", "begin", "end", "begin", "end", "finish"]
    assert all(c["id"].startswith("mlnb-") for c in injected)  # nbformat 4.5 needs ids
    assert len({c["id"] for c in cells}) == len(cells)
    kept = [c["metadata"]["mlnb_run"]["cell"] for c in cells if "cell" in c["metadata"]["mlnb_run"]]
    assert kept == list(range(len(json.loads(before)["cells"])))

    # A cached stage's cells are replaced by one cell that loads what later stages use.
    plan.stages[0].action = "cached"
    plan.stages[0].entry = {"run_id": "r1", "outputs": {"numbers": {"format": "npy"}}}
    plan.stages[0].load = {"numbers": {"format": "npy"}}
    cells = assemble(json.loads(before), plan, {"store": "s", "events": "e"})["cells"]
    loads = [c for c in cells if c["metadata"]["mlnb_run"].get("injected") == "load"]
    assert len(loads) == 1 and "load_stage('data'" in loads[0]["source"]
    assert 3 not in [c["metadata"]["mlnb_run"].get("cell") for c in cells]


def test_skip_cells_become_raw_cells(write_notebook) -> None:
    path = write_notebook(
        [
            code_cell("x = 1", ("mlnb:data",)),
            code_cell("raise SystemExit('never')", ("mlnb:skip",)),
            code_cell("y = x + 1", ("mlnb:train",)),
        ]
    )
    pipeline = load_pipeline(path)
    plan = make_plan(pipeline, {}, {}, Store(path.parent / "s"))
    cells = assemble(json.loads(path.read_text()), plan, {"store": "s", "events": "e"})["cells"]
    skipped = [c for c in cells if c["metadata"]["mlnb_run"].get("cell") == 1]
    assert skipped[0]["cell_type"] == "raw" and "outputs" not in skipped[0]


def _record(store: Store, notebook: str, status: str = "succeeded", **extra: object) -> dict:
    record = {
        "run_id": new_run_id(),
        "status": status,
        "notebook": {"path": notebook, "sha256": "0" * 64},
        "parameters": {},
        "stages": [],
        "started_at": utc_now(),
        "builds": [],
        **extra,
    }
    store.create_run(record)
    return record


def test_store_lists_newest_first_and_finds_the_latest_success(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    assert store.list_runs() == [] and not (tmp_path / "store").exists()  # reading creates nothing
    nb = str(tmp_path / "a.ipynb")
    first = _record(store, nb)
    second = _record(store, nb, status="failed")
    other = _record(store, str(tmp_path / "b.ipynb"))
    assert [r["run_id"] for r in store.list_runs()] == [
        other["run_id"],
        second["run_id"],
        first["run_id"],
    ]
    assert [r["run_id"] for r in store.list_runs(nb)] == [second["run_id"], first["run_id"]]
    assert store.latest_successful(nb)["run_id"] == first["run_id"]
    assert store.run_dir(first["run_id"]) == tmp_path / "store" / "runs" / first["run_id"]
    assert store.object_path("ab" * 32) == tmp_path / "store" / "objects" / "ab" / ("ab" * 32)
    with pytest.raises(RunNotFoundError) as caught:
        store.get_run("nope")
    assert "'nope'" in str(caught.value) and "mlnb runs" in str(caught.value)
    with pytest.raises(RunIdError):
        _record(store, nb, run_id=first["run_id"])
    with pytest.raises(RunIdError):
        store.run_dir("../escape")


def test_store_default_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLNB_STORE", raising=False)
    notebook = tmp_path / "sub" / "nb.ipynb"
    assert Store.for_notebook(notebook).root == tmp_path / "sub" / ".mlnb"
    assert Store.for_notebook(notebook, tmp_path / "x").root == tmp_path / "x"
    monkeypatch.setenv("MLNB_STORE", str(tmp_path / "env"))
    assert Store.for_notebook(notebook).root == tmp_path / "env"


def test_a_run_whose_process_is_gone_is_recorded_failed(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    store = Store(tmp_path / "store")
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stages = [{"name": "fit", "status": "running"}, {"name": "serve", "status": "not-run"}]
    record = _record(
        store,
        "/x.ipynb",
        status="running",
        pid=int(done.stdout),
        host=socket.gethostname(),
        stages=stages,
    )
    seen = store.get_run(record["run_id"])
    assert seen["status"] == "failed"
    assert seen["error"]["ename"] == "RunAborted" and seen["error"]["stage"] == "fit"
    assert [s["status"] for s in seen["stages"]] == ["failed", "not-run"]
    assert store.list_runs()[0]["status"] == "failed"


def _add_builds(root: str, run_id: str, worker: int) -> None:
    with Store(root) as store:
        for i in range(15):
            store.add_build(run_id, {"bento": f"w{worker}-{i}"})


def test_concurrent_builds_on_one_run_lose_nothing(tmp_path: Path) -> None:
    import multiprocessing

    store = Store(tmp_path / "store")
    record = _record(store, "/x.ipynb")
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_add_builds, args=(str(store.root), record["run_id"], w))
        for w in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    builds = store.get_run(record["run_id"])["builds"]
    assert len(builds) == 45 and len({b["bento"] for b in builds}) == 45
    assert store.list_runs()[0]["builds"] == builds
    leftovers = [p for p in store.run_dir(record["run_id"]).iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_diff_of_two_runs() -> None:
    a = {
        "run_id": "a",
        "parameters": {"C": 1.0, "seed": 1},
        "metrics": {"auc": 0.9},
        "stages": [
            {"name": "load", "cache_key": "k", "status": "ran"},
            {"name": "fit", "cache_key": "f1", "status": "ran"},
        ],
        "notebook": {"path": "/n", "sha256": "s"},
    }
    b = {
        **a,
        "run_id": "b",
        "parameters": {"C": 2.0, "seed": 1},
        "metrics": {"auc": 0.95},
        "stages": [
            {"name": "load", "cache_key": "k", "status": "cached"},
            {"name": "fit", "cache_key": "f2", "status": "ran"},
        ],
    }
    diff = diff_runs(a, b)
    assert diff["parameters"] == {"C": {"a": 1.0, "b": 2.0}}
    assert diff["stages"]["fit"]["key_changed"] and not diff["stages"]["load"]["key_changed"]
    assert diff["metrics"]["auc"]["delta"] == pytest.approx(0.05)
    assert diff["notebook"] is None


def test_progress_lines_without_a_terminal() -> None:
    import io

    from mlnb.run.progress import Progress

    stream = io.StringIO()
    progress = Progress(stream, tty=False)
    record = {
        "run_id": "r",
        "notebook": {"path": "/x/nb.ipynb"},
        "stages": [
            {"name": "load", "kind": "data", "status": "cached", "reason": "unchanged"},
            {"name": "fit", "kind": "train", "status": "not-run", "reason": "parameter C"},
            {"name": "serve", "kind": "serve", "status": "not-run"},
        ],
    }
    progress.run_started(record)
    record["stages"][1].update(status="running")
    progress.stage_started(record["stages"][1])
    record["stages"][1].update(status="ran", seconds=1.5)
    progress.stage_finished(record["stages"][1])
    record["stages"][2].update(status="failed")
    progress.run_finished(record)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "mlnb run nb.ipynb: run r, 3 stage(s), 1 cached"
    assert [line.split()[:4] for line in lines[1:]] == [
        ["○", "load", "data", "cached"],
        ["✓", "fit", "train", "ran"],
        ["✗", "serve", "serve", "failed"],
    ]
    assert "\x1b" not in stream.getvalue() and "1.50s  parameter C" in lines[2]


def test_reading_is_lazy_about_heavy_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mlnb.cli.run, mlnb.run.runner, mlnb.store;"
        "print(sorted(m for m in ('papermill', 'nbformat', 'pandas', 'jupyter_client', 'IPython')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.stdout.strip() == "[]"
