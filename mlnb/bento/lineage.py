"""Where a Bento comes from, as strings: its labels and ``mlnb_service.json``'s ``build``.

The run, the notebook (its path relative to the project folder: the store's when the store
is a hidden folder beside the notebook, else the notebook's own folder), the notebook's full
sha256, the git commit and dirty flag of the notebook's repository, the mlnb version and the
model's format (``onnx``, or the library of a native model's final estimator: ``sklearn``,
``lightgbm``, ...).

The git state is the run's (what the run recorded as it started: the Bento carries that
run's code); for a run that recorded none, git is asked now, in the notebook's folder, with a
timeout. ``unknown`` when the notebook is not in a git repository or git is missing.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlnb import __version__
from mlnb.serving.info import BUILD_KEYS

UNKNOWN = "unknown"
GIT_TIMEOUT_S = 10
LABEL_PREFIX = "mlnb."
MAX_NESTING = 10  # pipelines in searches in pipelines...


def build_info(
    run: Mapping[str, Any],
    *,
    notebook: str,
    project: Path,
    model_format: str,
    model: Any,
) -> dict[str, str]:
    """The :data:`~mlnb.serving.info.BUILD_KEYS` of a Bento built from ``run``."""
    commit, dirty = _recorded_git(run.get("git"))
    if commit == UNKNOWN:
        commit, dirty = git_state(Path(notebook).parent)
    info = {
        "run": str(run["run_id"]),
        "notebook": relative_notebook(notebook, project),
        "notebook_sha256": str((run.get("notebook") or {}).get("sha256") or UNKNOWN),
        "git_commit": commit,
        "git_dirty": dirty,
        "mlnb_version": __version__,
        "model_format": served_format(model_format, model),
    }
    return {key: info[key] for key in BUILD_KEYS}


def labels(build: Mapping[str, str], model_format: str) -> dict[str, str]:
    """The Bento's and the model's labels: ``mlnb.run``, ``mlnb.notebook-sha256``, ...;
    ``mlnb.format`` stays ``onnx`` or ``native`` as before."""
    found = {LABEL_PREFIX + key.replace("_", "-"): value for key, value in build.items()}
    found[LABEL_PREFIX + "format"] = model_format
    return found


def relative_notebook(notebook: str, project: Path) -> str:
    """The notebook as a POSIX path relative to ``project``, else its file name."""
    path = Path(os.path.abspath(notebook))
    try:
        return path.relative_to(Path(os.path.abspath(project))).as_posix()
    except ValueError:
        return path.name


def served_format(model_format: str, model: Any) -> str:
    """``onnx``, or the library of the native model's final estimator (``sklearn``,
    ``lightgbm``, ``xgboost``, ...): the last step of a pipeline, the best estimator of a
    search, looked through."""
    if model_format == "onnx":
        return "onnx"
    final = model
    for _ in range(MAX_NESTING):
        steps = getattr(final, "steps", None)
        if getattr(final, "best_estimator_", None) is not None:
            final = final.best_estimator_
        elif isinstance(steps, list) and steps and not isinstance(steps[-1][1], str):
            final = steps[-1][1]
        else:
            break
    return type(final).__module__.split(".")[0] or "native"


def git_state(folder: Path) -> tuple[str, str]:
    """``(commit, dirty)`` of the repository holding ``folder``: ``git rev-parse HEAD`` and
    whether ``git status --porcelain`` lists a tracked change; ``unknown`` for both outside
    a repository, without git, or when git takes longer than the timeout."""
    head = _git(["rev-parse", "HEAD"], folder)
    if head is None:
        return UNKNOWN, UNKNOWN
    status = _git(["status", "--porcelain", "--untracked-files=no"], folder)
    if status is None:
        return head.strip(), UNKNOWN
    return head.strip(), "true" if status.strip() else "false"


def _recorded_git(git: Any) -> tuple[str, str]:
    if not isinstance(git, Mapping) or not git.get("commit"):
        return UNKNOWN, UNKNOWN
    dirty = git.get("dirty")
    return str(git["commit"]), UNKNOWN if dirty is None else str(bool(dirty)).lower()


def _git(arguments: list[str], folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    try:
        result = subprocess.run(
            ["git", *arguments],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None
