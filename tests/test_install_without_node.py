"""A source install on a machine without Node.js: the CLI installs, the sidebar is named as missing.

The install runs as a user runs it (pip in a fresh virtual environment, build isolation, the
project's own build hook) with a PATH that holds everything of this machine except Node.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_NAMES = {"node", "nodejs", "npm", "npx", "corepack"}


def _hook(monkeypatch: pytest.MonkeyPatch) -> object:
    """hatch_build.py as a module; hatchling lives only in pip's build environment, so its
    base class is stood in for (the decision under test does not touch it)."""
    if importlib.util.find_spec("hatchling") is None:
        for name in ("hatchling", "hatchling.builders", "hatchling.builders.hooks"):
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        interface = types.ModuleType("hatchling.builders.hooks.plugin.interface")
        interface.BuildHookInterface = object  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "hatchling.builders.hooks.plugin", interface)
        monkeypatch.setitem(sys.modules, interface.__name__, interface)
    spec = importlib.util.spec_from_file_location("hatch_build", ROOT / "hatch_build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def path_without_node(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH whose folders hold links to every program on this PATH except Node's."""
    folder = tmp_path_factory.mktemp("bin-without-node")
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for program in Path(directory).iterdir():
            link = folder / program.name
            if program.name in NODE_NAMES or link.exists() or not os.access(program, os.X_OK):
                continue
            link.symlink_to(program)
    assert not (folder / "node").exists()
    return str(folder)


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's tracked files, as a fresh clone has them (no built sidebar)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    target = tmp_path_factory.mktemp("mlnb-source")
    for name in listed:
        source = ROOT / name
        if source.is_file() and not name.startswith(("tests/", "benchmarks/", "docs/")):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    assert not (target / "mlnb/labextension/static").exists()
    return target


def _pip(venv: Path, path: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("SKIP_JUPYTER_BUILDER", None)
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    return folder


def test_editable_install_goes_on_without_the_sidebar_and_says_so(
    venv: Path, path_without_node: str, source_copy: Path
) -> None:
    answer = _pip(venv, path_without_node, "install", "-v", "--no-deps", "-e", ".", cwd=source_copy)
    assert answer.returncode == 0, answer.stdout[-3000:] + answer.stderr[-3000:]
    said = answer.stdout + answer.stderr
    assert "exit status 127" not in said
    assert "Node.js was not found: installing mlnb WITHOUT the JupyterLab sidebar" in said
    assert "install Node.js >= 20" in said
    assert not (venv / "share/jupyter/labextensions/mlnb").exists()
    imported = subprocess.run(
        [str(venv / "bin/python"), "-c", "import mlnb.layout; print(mlnb.layout.__file__)"],
        cwd=venv,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0 and str(source_copy) in imported.stdout, imported.stderr
    metadata = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import importlib.metadata as m; print(m.metadata('mlnb'))",
        ],
        cwd=venv,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "License-File: LICENSE" in metadata


def test_a_wheel_without_node_is_refused_with_the_fix_and_no_traceback(
    venv: Path, path_without_node: str, source_copy: Path, tmp_path: Path
) -> None:
    answer = _pip(
        venv, path_without_node, "wheel", "--no-deps", "-w", str(tmp_path), ".", cwd=source_copy
    )
    said = answer.stdout + answer.stderr
    assert answer.returncode != 0
    assert "building the mlnb wheel needs it to build the JupyterLab sidebar" in said
    assert "Fix: install Node.js >= 20" in said
    assert "Traceback" not in said
    assert not list(tmp_path.glob("*.whl"))


@pytest.mark.parametrize(
    ("major", "built", "editable", "action"),
    [
        (20, False, False, "build"),
        (22, True, True, "build"),
        (None, True, False, "keep"),
        (18, True, True, "keep"),
        (None, False, True, "skip"),
        (16, False, True, "skip"),
        (None, False, False, "refuse"),
    ],
)
def test_the_sidebar_decision(
    major: int | None, built: bool, editable: bool, action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide = _hook(monkeypatch).sidebar_decision  # type: ignore[attr-defined]
    chosen, why = decide(major, built=built, editable=editable)
    assert chosen == action
    assert (why == "") == (action == "build")
    if major is not None and action != "build":
        assert f"Node.js {major} is too old" in why
