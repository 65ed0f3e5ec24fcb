"""The way through, as a user meets it after the quick start: ``mlnb run`` of the example from
the project's root, then every next command typed from the same folder, with no --store.

One real run (module-scoped, with ``-f params.yaml``), shared by every test here.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlnb.store import Store

from .conftest import EXAMPLES

NOTEBOOK = "example_notebooks/breast_cancer.ipynb"
ANNOUNCED = f"mlnb: using the store example_notebooks/.mlnb (of {NOTEBOOK})"


def mlnb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PYTHONWARNINGS": "ignore"}
    env.pop("MLNB_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "mlnb", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=600,
    )


def project(root: Path) -> Path:
    """The repository layout of the quick start: the example in example_notebooks/."""
    folder = root / "example_notebooks"
    folder.mkdir(parents=True)
    for name in ("breast_cancer.ipynb", "breast_cancer.contract.yaml"):
        shutil.copyfile(EXAMPLES / name, folder / name)
    return root


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = project(tmp_path_factory.mktemp("repo"))
    (root / "params.yaml").write_text("# papermill's -f\nC: 2.0\nmax_iter: 300\n")
    result = mlnb("run", NOTEBOOK, "-f", "params.yaml", "-p", "C", "0.5", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    (run_id,) = os.listdir(root / "example_notebooks" / ".mlnb" / "runs")
    return {"root": root, "result": result, "run_id": run_id}


def follow_ups(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = lines.index("next:")
    return [line.split("  #")[0].strip() for line in lines[start + 1 :]]


@pytest.mark.slow
def test_mlnb_run_ends_with_the_next_commands_and_they_work_from_here(ran: dict[str, Any]) -> None:
    root, run_id = ran["root"], ran["run_id"]
    commands = follow_ups(ran["result"].stdout)
    assert commands == [
        f"mlnb runs show {run_id} --notebook {NOTEBOOK}",
        f"mlnb report {run_id} --notebook {NOTEBOOK}",
        f"mlnb build {NOTEBOOK}",
        f"mlnb serve {NOTEBOOK}",
        f"mlnb runs --notebook {NOTEBOOK}",
    ]
    assert "executed notebook: example_notebooks/.mlnb/runs/" in ran["result"].stdout
    for command in (commands[0], commands[1], commands[4]):  # build and serve: test_build_*
        result = mlnb(*shlex.split(command)[1:], cwd=root)
        assert result.returncode == 0, (command, result.stderr)
        assert run_id in result.stdout, command
        assert "using the store" not in result.stderr  # --notebook named it: nothing to say
    assert (root / f"report-{run_id}.html").is_file()


@pytest.mark.slow
def test_a_parameters_file_merges_under_the_command_line(ran: dict[str, Any]) -> None:
    shown = mlnb("runs", "show", ran["run_id"], "--json", cwd=ran["root"])
    record = json.loads(shown.stdout)
    # the file's max_iter, the notebook's defaults, and -p C over the file's C (as papermill)
    assert record["parameters"] == {"test_size": 0.25, "seed": 42, "C": 0.5, "max_iter": 300}


@pytest.mark.slow
def test_every_command_from_the_root_finds_the_store_below_and_says_which(
    ran: dict[str, Any],
) -> None:
    root, run_id = ran["root"], ran["run_id"]
    listed = mlnb("runs", cwd=root)
    assert listed.returncode == 0 and run_id in listed.stdout, listed.stderr
    assert listed.stderr.strip() == ANNOUNCED
    shown = mlnb("runs", "show", run_id, cwd=root)
    assert shown.returncode == 0 and "parameters: test_size=0.25" in shown.stdout
    rows = [line.split()[:3] for line in shown.stdout.splitlines()]
    stages = [row for row in rows if row[:1] in (["load"], ["fit"], ["serve"])]
    # the cells as JupyterLab numbers them
    assert stages == [["load", "data", "5-6"], ["fit", "train", "8-9"], ["serve", "serve", "11-12"]]
    assert shown.stderr.strip() == ANNOUNCED
    report = mlnb("report", run_id, "-o", "r.html", cwd=root)
    assert report.returncode == 0 and (root / "r.html").is_file(), report.stderr
    assert report.stderr.strip() == ANNOUNCED
    verified = mlnb("store", "verify", cwd=root)
    assert verified.returncode == 0 and "all sound" in verified.stdout, verified.stdout
    assert verified.stderr.strip() == ANNOUNCED
    # the JSON of a record carries the 0-based indexes under explicit names
    record = json.loads(mlnb("runs", "show", run_id, "--json", cwd=root).stdout)
    assert [s["cell_indexes"] for s in record["stages"]] == [[4, 5], [7, 8], [10, 11]]


def test_with_no_store_anywhere_the_hint_says_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    listed = mlnb("runs", cwd=tmp_path)
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [
        f"no runs recorded yet in ./.mlnb nor beside any notebook below {tmp_path} (4 levels deep)",
        "Fix: run a notebook first (`mlnb run NB.ipynb`), or point at its store: "
        "--notebook NB.ipynb (its store is .mlnb beside it) or --store DIR",
    ]
    shown = mlnb("runs", "show", "20261202-000000-abcdef", cwd=tmp_path)
    assert shown.returncode == 2 and "there is no store in ./.mlnb nor beside" in shown.stderr
    report = mlnb("report", "x", "--notebook", "notes/nb.ipynb", cwd=tmp_path)
    assert report.returncode == 2
    assert "there is no store in notes/.mlnb (beside the notebook)" in report.stderr


@pytest.mark.slow
def test_two_stores_below_the_newest_serves_reads_and_verify_refuses(
    ran: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "two"
    shutil.copytree(ran["root"] / "example_notebooks", root / "example_notebooks")
    older = root / "older"
    older.mkdir()
    (older / "old.ipynb").write_text("{}")
    with Store(older / ".mlnb") as store:
        store.create_run(
            {
                "run_id": "old-run",
                "notebook": {"path": str(older / "old.ipynb"), "sha256": "0" * 64},
                "status": "succeeded",
                "started_at": "2025-01-01T00:00:00.000000+00:00",
                "stages": [],
                "parameters": {},
            }
        )
    listed = mlnb("runs", cwd=root)
    assert ran["run_id"] in listed.stdout and "old-run" not in listed.stdout
    assert listed.stderr.strip() == (
        f"{ANNOUNCED}; also found older/.mlnb (took the one with the newest run; "
        "--notebook NB or --store DIR chooses)"
    )
    shown = mlnb("runs", "show", "old-run", cwd=root)  # the store that holds the run
    assert shown.returncode == 0 and "run old-run: succeeded" in shown.stdout, shown.stderr
    assert "using the store older/.mlnb (of older/old.ipynb): it holds run old-run" in (
        shown.stderr
    )
    refused = mlnb("store", "verify", cwd=root)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "2 stores below" in refused.stderr
    assert (
        f"Fix: say which: mlnb store verify --notebook {NOTEBOOK}; "
        "mlnb store verify --notebook older/old.ipynb (or --store DIR)"
    ) in refused.stderr
    chosen = mlnb("store", "verify", "--notebook", "older/old.ipynb", cwd=root)
    assert chosen.returncode == 0 and "1 run records" in chosen.stdout, chosen.stdout


@pytest.mark.parametrize("option", ["-f", "--parameters-file", "--parameters_file"])
def test_a_parameters_file_naming_no_parameter_names_the_file_and_key(
    tmp_path: Path, option: str
) -> None:
    root = project(tmp_path)
    (root / "bad.yaml").write_text("C: 0.5\nCee: 2\n")
    result = mlnb("run", NOTEBOOK, option, "bad.yaml", cwd=root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "the parameters file 'bad.yaml', key 'Cee': the notebook has no parameter 'Cee'"
        in result.stderr
    )
    assert "Fix: remove 'Cee' from the parameters file 'bad.yaml', or pass one of: test_size" in (
        result.stderr
    )
    assert not (root / "example_notebooks" / ".mlnb" / "runs").exists()  # no kernel, no run


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("- C\n- 0.5\n", "the parameters file 'p.yaml' is not a mapping of names to values"),
        ("C: [1, 2\n", "the parameters file 'p.yaml' is not valid YAML"),
        ("C: !!python/object:os.system ls\n", "the parameters file 'p.yaml' is not valid YAML"),
        (None, "cannot read the parameters file 'p.yaml'"),
    ],
    ids=["list", "broken", "python-tag", "missing"],
)
def test_a_bad_parameters_file_is_a_named_error(
    tmp_path: Path, content: str | None, words: str
) -> None:
    root = project(tmp_path)
    if content is not None:
        (root / "p.yaml").write_text(content)
    result = mlnb("run", NOTEBOOK, "-f", "p.yaml", cwd=root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert words in result.stderr and "Fix:" in result.stderr


def test_inline_yaml_wins_over_the_file_and_loses_to_p(tmp_path: Path) -> None:
    from mlnb.cli import build_parser
    from mlnb.run.params import given_with_sources

    (tmp_path / "p.yaml").write_text("C: 2.0\nseed: 1\nmax_iter: 9\n")
    argv = ["run", "nb.ipynb", "-f", str(tmp_path / "p.yaml"), "-y", "{seed: 3, C: 4}"]
    args = build_parser().parse_args([*argv, "--parameters-yaml", "{max_iter: 5}", "-p", "C", "7"])
    given, sources = given_with_sources(
        args.parameters_file, args.parameters_yaml, args.parameter, args.raw_parameter
    )
    assert given == {"C": 7, "seed": 3, "max_iter": 5}
    assert sources == {"C": "-p C", "seed": "-y, key 'seed'", "max_iter": "-y, key 'max_iter'"}
