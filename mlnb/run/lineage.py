"""Where a run came from: Python, platform, the versions of the packages the notebook imports,
and the git commit of the notebook's repository (with a dirty flag)."""

from __future__ import annotations

import ast
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from mlnb import __version__
from mlnb.analysis import parsed_cells
from mlnb.record_types import Environment, GitInfo

# Import names that differ from their distribution's name, tried before a full scan.
_KNOWN_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "PIL": "Pillow",
    "yaml": "PyYAML",
    "bs4": "beautifulsoup4",
    "cv2": "opencv-python",
    "dateutil": "python-dateutil",
}


def imported_modules(sources: Iterable[str]) -> set[str]:
    """Top-level names of the modules the cells import (``sklearn`` for ``sklearn.svm``)."""
    return imported_modules_in(parsed_cells(sources))


def imported_modules_in(trees: Iterable[ast.Module]) -> set[str]:
    """:func:`imported_modules` of parsed cells (their rewritten trees, only read)."""
    found: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def package_versions(modules: Iterable[str]) -> dict[str, str]:
    """Installed distributions providing ``modules``, with their exact versions."""
    import importlib.metadata as metadata

    wanted = set(modules) - set(sys.stdlib_module_names) - {"__future__"}
    if not wanted:
        return {}
    versions: dict[str, str] = {}
    unresolved = set()
    for module in wanted:  # the common case: the module is named like its distribution
        try:
            dist = metadata.distribution(_KNOWN_DISTRIBUTIONS.get(module, module))
            versions[dist.metadata["Name"]] = dist.version
        except metadata.PackageNotFoundError:
            unresolved.add(module)
    if unresolved:
        mapping = metadata.packages_distributions()
        for module in unresolved:
            for name in mapping.get(module, []):
                try:
                    versions[name] = metadata.version(name)
                except metadata.PackageNotFoundError:
                    continue
    return dict(sorted(versions.items(), key=lambda item: item[0].lower()))


def environment(modules: Iterable[str]) -> Environment:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "mlnb": __version__,
        "packages": package_versions(modules),
    }


def git_info(path: str | Path) -> GitInfo | None:
    """``{commit, branch, dirty}`` of the repository holding ``path``, or None outside one."""
    folder = Path(path).parent if Path(path).is_file() else Path(path)
    if not _inside_repository(folder):
        return None
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    commit = branch = None
    dirty = False
    for line in result.stdout.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[2]
            commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split()[2]
            branch = None if head == "(detached)" else head
        elif line and not line.startswith("#"):
            dirty = True
    return {"commit": commit, "branch": branch, "dirty": dirty}


def _inside_repository(folder: Path) -> bool:
    return any((candidate / ".git").exists() for candidate in [folder, *folder.parents])


def project_root(folder: Path) -> Path:
    """The repository root holding ``folder``, else ``folder`` itself."""
    for candidate in [folder, *folder.parents]:
        if (candidate / ".git").exists():
            return candidate
    return folder
