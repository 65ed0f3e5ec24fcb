"""The build folder ``bentoml build`` packs: rendered files plus mlnb's serving runtime.

A Bento carries the Python files of ``mlnb.serving`` and ``mlnb.monitoring`` (and the mlnb
modules they import), so it serves anywhere its pinned packages are installed, without mlnb.
The folder is one a person can read and give to ``bentoml build`` by hand, which refuses any
path with a hidden part ("Accessing hidden files is not allowed"): the store's
``builds/<name>-<version>/`` for a store without one, else ``mlnb-builds/<name>-<version>/``
beside the store (its ``.gitignore`` keeps it out of git), see :func:`build_folder`. It is
written to a temporary folder and renamed, and a folder of the same version is left as is.
"""

from __future__ import annotations

import ast
import contextlib
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

import mlnb

PACKAGE_DIR = Path(mlnb.__file__).resolve().parent
BESIDE_THE_STORE = "mlnb-builds"  # build folders of a store that is a hidden folder
RUNTIME_PACKAGES = ("serving", "monitoring")
# explain.py and explain_sampled.py: /explain's explainers (imported on its first request)
RUNTIME_MODULES = (
    "__init__.py",
    "errors.py",
    "bounded_json.py",
    "explain.py",
    "explain_sampled.py",
)


def runtime_files() -> dict[str, Path]:
    """Relative path in the Bento (``mlnb/...``) -> the installed file, sorted: the runtime
    packages, :data:`RUNTIME_MODULES`, and every mlnb module those import at module level
    (``errors.py`` imports ``cell_numbers.py``, ...), so the Bento imports without mlnb."""
    files = {f"mlnb/{name}": PACKAGE_DIR / name for name in RUNTIME_MODULES}
    for package in RUNTIME_PACKAGES:
        for path in sorted((PACKAGE_DIR / package).glob("*.py")):
            files[f"mlnb/{package}/{path.name}"] = path
    queue = list(files.values())
    while queue:
        for path in _module_level_imports(queue.pop()):
            relative = f"mlnb/{path.relative_to(PACKAGE_DIR).as_posix()}"
            if relative not in files:
                files[relative] = path
                queue.append(path)
    return dict(sorted(files.items()))


def _module_level_imports(path: Path) -> list[Path]:
    """The files of the mlnb modules ``path`` imports at module level (imports in functions
    run only where they are needed, and the runtime carries what those need)."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            if parts[0] != "mlnb":
                continue
            module = PACKAGE_DIR.joinpath(*parts[1:])
            for candidate in (module.with_suffix(".py"), module / "__init__.py"):
                if len(parts) > 1 and candidate.is_file():
                    found.append(candidate)
    return found


def build_folder(store_root: Path, name: str, version: str) -> Path:
    """Where the build folder of ``name:version`` goes: under the store, unless a part of
    its path is hidden (the default store, ``.mlnb``, is), then in ``mlnb-builds`` beside
    the store."""
    root = Path(os.path.abspath(store_root))
    if hidden_part(root / "builds") is None:
        return root / "builds" / f"{name}-{version}"
    return root.parent / BESIDE_THE_STORE / f"{name}-{version}"


def hidden_part(path: Path) -> str | None:
    """The first part of an absolute ``path`` that starts with a dot, as ``bentoml build``
    sees it; None when there is none."""
    return next((part for part in Path(os.path.abspath(path)).parts if part.startswith(".")), None)


def write_build_dir(
    target: Path, rendered: Mapping[str, str | bytes], copied: Mapping[str, Path] | None = None
) -> bool:
    """Write the folder unless it exists; True when written.

    ``rendered`` maps names to text (or bytes: /explain's background rows); ``copied`` maps
    more relative paths to files to copy (the notebook's local modules).
    """
    if (target / "bentofile.yaml").is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.parent.name == BESIDE_THE_STORE:
        ignore = target.parent / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# build folders of mlnb build: generated, rebuilt from runs\n*\n")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.mkdir()
        for name, content in rendered.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                (tmp / name).write_text(content)
        for relative, source in {**runtime_files(), **(copied or {})}.items():
            destination = tmp / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
        try:
            os.replace(tmp, target)
        except OSError:  # another build of the same version got there first
            if not (target / "bentofile.yaml").is_file():
                raise
            return False
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return True
