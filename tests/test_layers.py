"""The layers of docs/ARCHITECTURE.md hold: import-linter's contracts (pyproject), the core's
import time, and a Bento's runtime importing from the Bento's own folder, without mlnb."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlnb.bento.folder import runtime_files

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: import-linter's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "importlinter"
]["contracts"]


def _contract(name_starts: str) -> dict[str, object]:
    return next(c for c in CONTRACTS if str(c["name"]).startswith(name_starts))


CORE = _contract("The core")
WORKER = _contract("What a Bento runs")
LAYERS = _contract("Layers")
# Modules that are neither core nor a layer: tools of their own that import from below.
TOOLS = {
    "mlnb.__main__",  # `python -m mlnb`: the CLI
    "mlnb.alert_relay",
    "mlnb.check",
    "mlnb.contract",
    "mlnb.explain",
    "mlnb.explain_sampled",
    "mlnb.grid",
    "mlnb.importance",
    "mlnb.labextension",
    "mlnb.run_report",
}


def test_the_import_contracts_hold() -> None:
    linted = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(no_cache=True, no_logo=True))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "BROKEN" not in linted.stdout
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in linted.stdout


def test_every_module_has_a_place_in_the_layers() -> None:
    """A new module or package is placed: in a layer, in the core, or named as a tool."""
    layered = {
        f"mlnb.{name.strip()}"
        for layer in LAYERS["layers"]  # type: ignore[attr-defined]
        for name in str(layer).replace(":", "|").split("|")
    }
    placed = layered | set(CORE["source_modules"]) | TOOLS  # type: ignore[arg-type]
    package = ROOT / "mlnb"
    found = {
        f"mlnb.{path.stem if path.is_file() else path.name}"
        for path in package.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").is_file())
        or path.name == "labextension"
    }
    assert found - placed == set(), "place these in pyproject's [tool.importlinter] contracts"
    assert placed - found == set(), "these are named in the contracts but do not exist"


@pytest.mark.parametrize("module", CORE["source_modules"])  # type: ignore[arg-type]
def test_the_core_imports_no_edge_at_import_time(module: str) -> None:
    """What the contract allows lazily (IPython for a cell with magics) is not imported when
    the module is: each core module in a fresh interpreter."""
    outside = [m for m in CORE["forbidden_modules"] if not str(m).startswith("mlnb")]  # type: ignore[attr-defined]
    code = (
        f"import sys, json, {module}; "
        f"print(json.dumps(sorted(m for m in {outside!r} if m in sys.modules)))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(shown.stdout) == []


# Imports each module a Bento ships from the folder it lies in, with the installed mlnb out of
# reach: the path entry of an editable install removed, and every mlnb module dropped from
# sys.modules between two modules, so each finds its own imports in the folder or fails.
_IMPORT_EACH = textwrap.dedent(
    """
    import importlib, json, os, sys
    folder, repo, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    sys.path[:] = [folder] + [
        p for p in sys.path if p and os.path.realpath(p) != os.path.realpath(repo)
    ]
    failed, strangers = {}, {}
    for name in names:
        for loaded in [m for m in sys.modules if m == "mlnb" or m.startswith("mlnb.")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        for loaded, mod in list(sys.modules.items()):
            if loaded == "mlnb" or loaded.startswith("mlnb."):
                where = os.path.realpath(getattr(mod, "__file__", None) or folder)
                if not where.startswith(os.path.realpath(folder)):
                    strangers[loaded] = where
    print(json.dumps({"failed": failed, "strangers": strangers}))
    """
)


def test_every_module_a_bento_ships_imports_from_the_bentos_own_folder(tmp_path: Path) -> None:
    files = runtime_files()
    for relative, source in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, tmp_path / relative)
    names = sorted(
        relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for relative in files
    )
    assert {"mlnb.serving.runtime", "mlnb.monitoring.hooks", "mlnb.serving.feedback"} <= set(names)
    assert not any(name.startswith(("mlnb.reporting", "mlnb.run.", "mlnb.bento")) for name in names)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    shown = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, str(tmp_path), str(ROOT), json.dumps(names)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    answer = json.loads(shown.stdout)
    assert answer == {"failed": {}, "strangers": {}}
