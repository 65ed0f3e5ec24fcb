"""The store under a careless disk and a meddling hand: damaged, truncated and missing objects,
an empty, missing or corrupt index, a full disk. Each case runs the real ``mlnb`` command and
checks the property a user relies on: a run that succeeds gives the same result as a fresh
one, the damage is named in one line, nothing is half-written, and no traceback is shown."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import code_cell, mlnb, notebook_json

SETUP = "import numpy as np\nimport pandas as pd\nfrom sklearn.tree import DecisionTreeClassifier"
DATA = (
    "rng = np.random.default_rng(seed)\n"
    "X = pd.DataFrame(rng.normal(size=(600, 5)), columns=[f'f{i}' for i in range(5)])\n"
    "y = pd.Series((X['f0'] + X['f1'] * X['f2'] > 0).astype(int), name='label')\n"
    "X_train, X_test, y_train, y_test = X[:450], X[450:], y[:450], y[450:]"
)
TRAIN = (
    "model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X_train, y_train)\n"
    "metrics = {'accuracy': float(model.score(X_test, y_test))}"
)
CELLS = [
    code_cell(SETUP),
    code_cell("depth = 4\nseed = 0", tags=("parameters",)),
    code_cell(DATA, tags=("mlnb:data",)),
    code_cell(TRAIN, tags=("mlnb:train",)),
]


def fresh_accuracy(depth: int) -> float:
    """The oracle: the notebook's cells executed afresh in this process, with ``depth``."""
    namespace: dict[str, Any] = {"depth": depth, "seed": 0}
    for source in (SETUP, DATA, TRAIN):
        exec(source, namespace)
    return float(namespace["metrics"]["accuracy"])


def run(notebook: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = mlnb("run", str(notebook), "--json", *args)
    assert "Traceback" not in done.stderr, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    return done, record


def stage(record: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in record["stages"] if s["name"] == name)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One notebook run once (depth=4); each test works on a copy of its folder."""
    folder = tmp_path_factory.mktemp("pristine")
    notebook = folder / "cancer.ipynb"
    notebook.write_text(json.dumps(notebook_json(CELLS)))
    done, record = run(notebook)
    assert record["status"] == "succeeded", done.stderr
    assert record["metrics"]["accuracy"] == fresh_accuracy(4) != fresh_accuracy(2)
    return folder


@pytest.fixture
def project(pristine: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    shutil.copytree(pristine, folder)
    return folder / "cancer.ipynb"


def store_of(notebook: Path) -> Path:
    return notebook.parent / ".mlnb"


def object_of(notebook: Path, name: str) -> Path:
    """The stored file of a data-stage output, from the newest cache entry."""
    db = sqlite3.connect(store_of(notebook) / "mlnb.db")
    try:
        rows = db.execute("SELECT record FROM stage_cache WHERE stage = 'data'").fetchall()
    finally:
        db.close()
    ref = json.loads(rows[-1][0])["outputs"][name]
    return store_of(notebook) / ref["path"]


def shuffled_copy(path: Path) -> None:
    """Replace a stored frame by the same rows in another order, keeping size and mtime."""
    stat = path.stat()
    frame = pd.read_parquet(path)
    frame.sample(frac=1.0, random_state=1).reset_index(drop=True).to_parquet(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def flip_a_byte(path: Path) -> None:
    """One byte changed in the middle, size and mtime kept: what bit rot looks like."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


DAMAGE = {
    "shuffled": shuffled_copy,
    "bit-flip": flip_a_byte,
    "truncated": truncate,
    "missing": Path.unlink,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_loaded_object_is_a_cache_miss_and_the_result_equals_a_fresh_run(
    project: Path, damage: str
) -> None:
    target = object_of(project, "X_train")
    DAMAGE[damage](target)
    done, record = run(project, "-p", "depth", "2")  # train runs, data would be loaded
    assert record["status"] == "succeeded", done.stderr
    assert record["metrics"]["accuracy"] == fresh_accuracy(2)
    assert stage(record, "data")["status"] == "ran"
    warning = [line for line in done.stderr.splitlines() if "X_train" in line]
    assert len(warning) == 1 and "stage 'data'" in warning[0], done.stderr
    assert ("missing" if damage == "missing" else "sha256") in warning[0]
    # the re-run wrote the object again, whole, under its name
    assert target.is_file()
    assert (
        subprocess.run(["sha256sum", target], capture_output=True, text=True).stdout.split()[0]
        == target.name
    )


def test_no_cache_rewrites_a_damaged_object(project: Path) -> None:
    target = object_of(project, "X_train")
    truncate(target)
    _, record = run(project, "--no-cache")
    assert record["status"] == "succeeded"
    assert target.stat().st_size > 0
    _, again = run(project, "-p", "depth", "2")
    assert stage(again, "data")["status"] == "cached"
    assert again["metrics"]["accuracy"] == fresh_accuracy(2)


def test_a_truncated_model_makes_the_cached_stage_run_again(project: Path) -> None:
    _, first = run(project)
    assert all(s["status"] == "cached" for s in first["stages"])
    truncate(store_of(project) / first["model"]["path"])
    done, record = run(project)
    assert stage(record, "train")["status"] == "ran", done.stderr
    assert "the saved model" in done.stderr
    assert record["metrics"]["accuracy"] == fresh_accuracy(4)


def test_a_build_from_a_damaged_model_names_it(project: Path) -> None:
    _, first = run(project)
    flip_a_byte(store_of(project) / first["model"]["path"])
    done = mlnb("build", str(project), "--run", first["run_id"])
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "does not match its sha256" in done.stderr and "store verify" in done.stderr


def damage_index(store: Path, how: str) -> None:
    db = store / "mlnb.db"
    checkpoint = sqlite3.connect(db)
    checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpoint.close()
    if how == "empty":
        db.write_bytes(b"")
    elif how == "missing":
        db.unlink()
    elif how == "header":
        data = bytearray(db.read_bytes())
        data[:100] = os.urandom(100)
        db.write_bytes(bytes(data))
    elif how == "page":
        data = bytearray(db.read_bytes())
        page = 4096
        assert len(data) > 3 * page
        data[2 * page : 3 * page] = os.urandom(page)
        db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["empty", "missing", "header", "page"])
def test_a_damaged_index_is_rebuilt_from_the_records(project: Path, how: str) -> None:
    store = store_of(project)
    before = json.loads(mlnb("runs", "--store", str(store), "--json").stdout)
    damage_index(store, how)
    listed = mlnb("runs", "--store", str(store), "--json")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [r["run_id"] for r in before]
    assert "rebuilt it from 1 run records and 2 cache entries" in listed.stderr
    # the cache came back too: nothing runs again
    done, record = run(project)
    assert record["status"] == "succeeded", done.stderr
    assert all(s["status"] == "cached" for s in record["stages"])
    assert "rebuilt" not in done.stderr  # once only


def test_store_verify_finds_and_repairs(project: Path) -> None:
    store = store_of(project)
    assert mlnb("store", "verify", "--store", str(store)).returncode == 0
    flip_a_byte(object_of(project, "X_train"))
    (store / "objects" / "tmp").mkdir(exist_ok=True)
    (store / "objects" / "tmp" / "999999999-abc.part").write_bytes(b"half")
    db = sqlite3.connect(store / "mlnb.db")
    db.execute("DELETE FROM runs")
    db.commit()
    db.close()

    found = mlnb("store", "verify", "--store", str(store), "--json")
    assert found.returncode == 1, found.stderr
    problems = {f["subject"].split(" ")[0]: f for f in json.loads(found.stdout)["findings"]}
    assert not any(f["fixed"] for f in problems.values())
    text = json.dumps(problems)
    assert "do not match its sha256" in text and "unfinished write" in text
    assert "not in the index" in text

    repaired = mlnb("store", "verify", "--store", str(store), "--repair", "--json")
    report = json.loads(repaired.stdout)
    left = [f for f in report["findings"] if not f["fixed"]]
    # X_train's bytes are also the run's training sample (450 rows): that the old run's sample
    # is gone is the one thing a repair cannot undo, and it says so
    assert len(left) == 1 and "training sample" in left[0]["problem"], left
    assert "run the notebook again" in left[0]["fix"]
    assert repaired.returncode == 1
    # the cache entries that referred to the object are gone: the next run re-runs data ...
    done, record = run(project, "-p", "depth", "2")
    assert stage(record, "data")["status"] == "ran", done.stderr
    assert record["metrics"]["accuracy"] == fresh_accuracy(2)
    # ... which writes the same bytes under the same name again, and the store is whole
    clean = mlnb("store", "verify", "--store", str(store))
    assert clean.returncode == 0 and "all sound" in clean.stdout, clean.stdout


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs, where the test may mount one (root on Linux); skipped elsewhere."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_named_and_no_record_claims_success(project: Path, small_disk: Path) -> None:
    big = code_cell(
        "import numpy as np\nbig = np.random.default_rng(0).random((1000, 1000))",
        tags=("mlnb:data",),
    )
    uses = code_cell("total = float(big.sum())", tags=("mlnb:train",))
    notebook = project.parent / "big.ipynb"
    notebook.write_text(json.dumps(notebook_json([big, uses])))
    done = mlnb("run", str(notebook), "--store", str(small_disk))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "is full" in done.stderr, done.stderr
    assert "a value that can be saved" not in done.stderr
    for record in small_disk.glob("runs/*/run.json"):
        assert json.loads(record.read_text())["status"] != "succeeded"


def test_hostile_files_in_the_store_and_notebook_get_a_message(project: Path) -> None:
    store = store_of(project)
    deep = "[" * 100_000 + "]" * 100_000
    hostile = store / "runs" / "20260101-000000-badbad"
    hostile.mkdir()
    (hostile / "run.json").write_text(deep)
    (store / "runs" / "20260101-000000-notrun").mkdir()
    (store / "runs" / "20260101-000000-notrun" / "run.json").write_text("{}")
    damage_index(store, "empty")
    listed = mlnb("runs", "--store", str(store), "--json")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert len(json.loads(listed.stdout)) == 1
    assert "(2 unreadable files skipped)" in listed.stderr
    shown = mlnb("runs", "--store", str(store), "show", "20260101-000000-badbad")
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    verified = mlnb("store", "verify", "--store", str(store))
    assert verified.returncode == 1 and "nested too deeply" in verified.stdout, verified.stdout

    notebook = project.parent / "deep.ipynb"
    notebook.write_text('{"nbformat": 4, "cells": [], "metadata": {"x": ' + deep + "}}")
    for command in ("inspect", "run"):
        done = mlnb(command, str(notebook))
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "nests lists and objects too deeply" in done.stderr
