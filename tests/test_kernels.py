"""Any kernel: ``mlnb run -k NAME`` (and the grid, the panel, the server) in a kernel whose
environment is not mlnb's, and ``%%mlnb`` cells that run without ``%load_ext mlnb``.

The second kernelspecs live in a temporary ``JUPYTER_PATH``. Their launcher takes mlnb's
source folder off ``sys.path`` before starting ipykernel, as in an environment without mlnb
installed (the run's first cell then adds it back); one of them also cannot import joblib and
cloudpickle, as in an environment that lacks them. Each writes its name to a marker file when
it starts, so a test knows which kernel really ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from mlnb.errors import BadRequestError, KernelPackagesError
from mlnb.run.kernel_setup import check_packages, missing_packages, register_magics

from .conftest import NOTEBOOKS, ROOT

RUNS = NOTEBOOKS / "runs"

LAUNCHER = """
import importlib.abc, os, sys
ROOT, NAME, MARKER, HIDDEN = {root!r}, {name!r}, {marker!r}, {hidden!r}
with open(MARKER, "a") as handle:
    handle.write(NAME + "\\n")
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != ROOT]

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HIDDEN or (top == "mlnb" and ROOT not in sys.path):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Hide())
from ipykernel import kernelapp
kernelapp.launch_new_instance()
"""


def _kernelspec(jupyter_path: Path, name: str, marker: Path, hidden: tuple[str, ...]) -> None:
    folder = jupyter_path / "kernels" / name
    folder.mkdir(parents=True)
    code = LAUNCHER.format(root=str(ROOT), name=name, marker=str(marker), hidden=hidden)
    spec = {
        "argv": [sys.executable, "-c", code, "-f", "{connection_file}"],
        "display_name": f"mlnb test: {name}",
        "language": "python",
    }
    (folder / "kernel.json").write_text(json.dumps(spec))


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("kernels")
    jupyter_path = folder / "share" / "jupyter"
    marker = folder / "started.txt"
    _kernelspec(jupyter_path, "no-mlnb", marker, ())
    _kernelspec(jupyter_path, "no-joblib", marker, ("joblib", "cloudpickle"))
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PYTHONWARNINGS": "ignore"}
    env["JUPYTER_PATH"] = str(jupyter_path)
    env.pop("MLNB_STORE", None)
    return {"env": env, "marker": marker, "jupyter_path": jupyter_path}


def _started(kernels: dict[str, Any]) -> list[str]:
    marker: Path = kernels["marker"]
    return marker.read_text().split() if marker.exists() else []


def _mlnb(kernels: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlnb", *args],
        capture_output=True,
        text=True,
        check=False,
        env=kernels["env"],
    )


def _copy(name: str, folder: Path) -> Path:
    target = folder / name
    shutil.copyfile(RUNS / name, target)
    return target


# --- the package check, as a unit ---


def test_missing_packages_names_what_the_runtime_saves_with() -> None:
    present = {"joblib", "pandas"}
    assert missing_packages(lambda name: name in present) == ["cloudpickle", "pyarrow"]
    assert missing_packages(lambda name: name in {"joblib", "cloudpickle"}) == []  # no pandas
    assert missing_packages() == []  # this environment has all of them


def test_the_package_error_names_the_python_and_the_install_command() -> None:
    with pytest.raises(KernelPackagesError) as caught:
        check_packages("project-env", find=lambda name: name == "joblib")
    text = str(caught.value)
    assert f"the kernel 'project-env' runs {sys.executable}" in text
    assert "lacks cloudpickle" in text and "no stage ran" in text
    assert f"Fix: install into the kernel's environment: {sys.executable} -m pip install " in text
    assert "mlnb run -k NAME" in text


def test_register_magics_makes_mlnb_cells_run_without_load_ext() -> None:
    main = sys.modules["__main__"]
    shell = InteractiveShell.instance()
    magics = shell.magics_manager.magics
    before = {kind: magics[kind].get("mlnb") for kind in ("cell", "line")}
    try:
        shell.reset()
        for kind in ("cell", "line"):
            magics[kind].pop("mlnb", None)
        assert not shell.run_cell("%%mlnb data\nx = 1").success  # IPython: magic not found
        assert register_magics(shell) is True
        result = shell.run_cell("%%mlnb data\nx = 41 + 1\nx")
        assert result.success and result.result == 42
    finally:
        for kind, magic in before.items():  # as other tests of this shell left it
            if magic is not None:
                magics[kind]["mlnb"] = magic
        shell.reset()
        sys.modules["__main__"] = main


# --- real runs in the second kernels ---


@pytest.mark.slow
def test_run_in_a_kernel_without_mlnb_runs_magic_cells(kernels, tmp_path: Path) -> None:
    notebook = _copy("magic_cells.ipynb", tmp_path)
    result = _mlnb(kernels, "run", str(notebook), "-k", "no-mlnb", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout)
    assert record["status"] == "succeeded" and record["kernel"] == "no-mlnb"
    assert [s["status"] for s in record["stages"]] == ["ran", "ran"]
    assert record["metrics"] == {"score": pytest.approx(2 * sum(i**0.5 for i in range(5)), 1e-3)}
    assert _started(kernels)[-1] == "no-mlnb"


@pytest.mark.slow
def test_a_kernel_without_joblib_stops_before_the_first_stage(kernels, tmp_path: Path) -> None:
    notebook = _copy("magic_cells.ipynb", tmp_path)
    result = _mlnb(kernels, "run", str(notebook), "-k", "no-joblib")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "failed before its first stage: KernelPackagesError" in result.stderr
    assert "lacks joblib, cloudpickle" in result.stderr
    assert f"{sys.executable} -m pip install joblib cloudpickle" in result.stderr
    assert _started(kernels)[-1] == "no-joblib"
    runs = _mlnb(kernels, "runs", "--json", "--notebook", str(notebook))
    (record,) = json.loads(runs.stdout)
    assert [s["status"] for s in record["stages"]] == ["not-run", "not-run"]


@pytest.mark.slow
def test_grid_points_run_in_the_named_kernel(kernels, tmp_path: Path) -> None:
    notebook = _copy("magic_cells.ipynb", tmp_path)
    grid = tmp_path / "grid.yaml"
    grid.write_text("scale: [3.0]\n")
    before = len(_started(kernels))
    result = _mlnb(kernels, "run", str(notebook), "--grid", str(grid), "-k", "no-mlnb", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(result.stdout)
    assert row["status"] == "succeeded"
    assert _started(kernels)[before:] == ["no-mlnb"]


@pytest.mark.slow
def test_the_server_starts_runs_in_the_kernel_it_is_given(kernels, tmp_path: Path) -> None:
    from mlnb.server.service import MlnbService

    notebook = _copy("magic_cells.ipynb", tmp_path)
    os.environ["JUPYTER_PATH"] = kernels["env"]["JUPYTER_PATH"]  # the service's own check
    try:

        async def go() -> tuple[dict[str, Any], Any]:
            service = MlnbService(tmp_path)
            with pytest.raises(BadRequestError) as caught:
                await service.start_run(notebook.name, None, "no-such-kernel")
            assert "no-mlnb" in str(caught.value.fix) and "python3" in str(caught.value.fix)
            started = await service.start_run(notebook.name, {"scale": 1.5}, "no-mlnb")
            job = await service.jobs.wait(started["job_id"])
            return started, job

        started, job = asyncio.run(go())
    finally:
        os.environ.pop("JUPYTER_PATH", None)
    assert job.argv[-2:] == ["--kernel", "no-mlnb"]
    assert job.status == "succeeded", job.log
    assert job.result["kernel"] == "no-mlnb" and job.result["run_id"] == started["run_id"]


# --- %%mlnb under plain papermill ---


def _papermill(env: dict[str, str], notebook: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "papermill", str(notebook), str(out), "--no-progress-bar"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


@pytest.mark.slow
def test_plain_papermill_says_what_ipython_says_and_mlnb_says_the_fix(tmp_path: Path) -> None:
    notebook = _copy("magic_cells.ipynb", tmp_path)
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}
    result = _papermill(env, notebook, tmp_path / "out.ipynb")
    assert result.returncode != 0
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    text = json.dumps(executed["cells"])
    assert "UsageError: Cell magic `%%mlnb` not found." in text  # IPython's own message
    inspect = subprocess.run(
        [sys.executable, "-m", "mlnb", "inspect", str(notebook)], capture_output=True, text=True
    )
    assert "cell(s) 4-5 start with %%mlnb" in inspect.stdout  # numbered as JupyterLab does
    assert "Fix: add a first code cell %load_ext mlnb" in inspect.stdout


@pytest.mark.slow
def test_plain_papermill_with_ipythons_lazy_magics_config(tmp_path: Path) -> None:
    """IPython's documented way to register a magic for every kernel of a profile."""
    notebook = _copy("magic_cells.ipynb", tmp_path)
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        'c.MagicsManager.lazy_magics = {"mlnb": "mlnb"}\n'
    )
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}
    result = _papermill(env, notebook, tmp_path / "out.ipynb")
    assert result.returncode == 0, result.stderr[-2000:]
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    assert "UsageError" not in json.dumps(executed["cells"])
