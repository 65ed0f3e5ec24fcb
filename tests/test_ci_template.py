"""``templates/ci/github-actions.yml``, the workflow users copy: valid YAML, mlnb pinned to this
release, a pip cache that works in a repository holding only a notebook, and its check step
run as GitHub runs it (``bash -e``) in such a repository."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import yaml

import mlnb

from .conftest import EXAMPLES, ROOT

WORKFLOW = ROOT / "templates" / "ci" / "github-actions.yml"
# actions/setup-python@v5's own patterns for `cache: pip` without cache-dependency-path
SETUP_PYTHON_PIP_DEFAULTS = ("**/requirements.txt",)


def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def steps() -> list[dict[str, Any]]:
    (job,) = workflow()["jobs"].values()
    return list(job["steps"])


def step(name: str) -> dict[str, Any]:
    return next(s for s in steps() if s.get("name") == name)


def setup_python() -> dict[str, Any]:
    return next(s for s in steps() if str(s.get("uses", "")).startswith("actions/setup-python"))


def matches(repository: Path, patterns: str | tuple[str, ...]) -> list[Path]:
    """The files ``@actions/glob``'s hashFiles would hash (``**`` any depth, one a line)."""
    lines = patterns.splitlines() if isinstance(patterns, str) else list(patterns)
    found: list[Path] = []
    for pattern in (line.strip() for line in lines):
        if pattern:
            found += [p for p in repository.glob(pattern) if p.is_file()]
    return found


@pytest.fixture
def notebook_only_repository(tmp_path: Path) -> Path:
    """A git repository with one notebook (in a folder with a space) and the workflow."""
    repository = tmp_path / "repo"
    (repository / "analysis one").mkdir(parents=True)
    shutil.copy(EXAMPLES / "breast_cancer.ipynb", repository / "analysis one" / "cancer.ipynb")
    (repository / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(WORKFLOW, repository / ".github" / "workflows" / "mlnb.yml")
    for command in (["init", "-q"], ["add", "."]):
        subprocess.run(["git", *command], cwd=repository, check=True)
    return repository


def test_the_workflow_parses_and_runs_on_push_and_pull_request() -> None:
    document = workflow()
    triggers = document.get("on", document.get(True))  # YAML 1.1 reads a bare `on` as True
    assert set(triggers) == {"push", "pull_request"}
    assert document["name"] == "mlnb check"
    assert [s.get("uses", s.get("name")) for s in steps()][:3] == [
        "actions/checkout@v4",
        "actions/setup-python@v5",
        "Install",
    ]


def test_mlnb_is_pinned_to_this_release() -> None:
    assert workflow()["env"]["MLNB_VERSION"] == mlnb.__version__
    install = step("Install")["run"]
    assert install == 'pip install "mlnb==${MLNB_VERSION}"'
    unpinned = [
        s["run"] for s in steps() if "pip install" in s.get("run", "") and "mlnb==" not in s["run"]
    ]
    assert unpinned == []


def test_the_pip_cache_keys_on_files_a_notebook_only_repository_has(
    notebook_only_repository: Path,
) -> None:
    options = setup_python()["with"]
    assert options["cache"] == "pip"
    # setup-python fails the job when its dependency files match nothing: its defaults do
    # not match here, the workflow's own patterns do (the workflow file itself)
    assert matches(notebook_only_repository, SETUP_PYTHON_PIP_DEFAULTS) == []
    found = matches(notebook_only_repository, options["cache-dependency-path"])
    assert found == [notebook_only_repository / ".github" / "workflows" / "mlnb.yml"]


def run_check_step(repository: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The check step's script under ``bash -e``, as ``run:`` runs on GitHub's runner, with
    the workflow's env (mlnb is this checkout's: the Install step is pip's business)."""
    variables = {**os.environ, **workflow()["env"], **env}
    return subprocess.run(
        ["bash", "-e", "-c", step("Run and check the notebooks")["run"]],
        cwd=repository,
        env=variables,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_the_check_step_runs_every_notebook_of_a_notebook_only_repository(
    notebook_only_repository: Path,
) -> None:
    result = run_check_step(notebook_only_repository, MLNB_FLOORS="--min accuracy=0.9")
    assert result.returncode == 0, result.stdout + result.stderr
    suite = ET.parse(notebook_only_repository / "mlnb-junit.xml").getroot()
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert {"run", "metric accuracy >= 0.9"} <= set(cases), sorted(cases)
    verdicts = {child.tag for case in cases.values() for child in case}
    assert not verdicts & {"failure", "error", "skipped"}, verdicts
    assert (notebook_only_repository / ".mlnb-ci").is_dir()  # the cache the next job restores
    failing = run_check_step(notebook_only_repository, MLNB_FLOORS="--min accuracy=1.01")
    assert failing.returncode != 0 and "below 1.01" in failing.stdout + failing.stderr


def test_the_check_step_fails_clearly_without_a_notebook(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    result = run_check_step(tmp_path)
    assert result.returncode == 1
    assert "no notebook found" in result.stderr


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not installed")
def test_actionlint_accepts_the_workflow() -> None:
    linted = subprocess.run(
        ["actionlint", "-no-color", str(WORKFLOW)], capture_output=True, text=True, check=False
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
