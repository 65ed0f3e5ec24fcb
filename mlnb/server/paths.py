"""Notebook paths as the browser names them (relative to the server root), checked and resolved.

A request names a notebook the way JupyterLab does: ``dir/nb.ipynb`` relative to the server's
root directory. Anything that would leave the root (``../``, an absolute path, a symlink that
points outside) is refused before any file is touched. No tornado here.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from mlnb.errors import BadRequestError, PathOutsideRootError

MAX_PATH_LENGTH = 4096


def resolve_notebook(root: str | Path, api_path: object) -> Path:
    """The absolute path of ``api_path`` under ``root``; raises a 4xx :class:`MlnbError`."""
    if not isinstance(api_path, str) or not api_path.strip():
        raise BadRequestError(
            "the notebook path is missing",
            fix="pass the notebook's path relative to the server root, e.g. path=dir/nb.ipynb",
        )
    if len(api_path) > MAX_PATH_LENGTH or "\x00" in api_path:
        raise BadRequestError("the notebook path is not a valid path", fix="check the path")
    pure = PurePosixPath(api_path)
    if pure.is_absolute():
        raise PathOutsideRootError(
            f"{api_path!r} is an absolute path",
            fix="name the notebook relative to the Jupyter server's root directory",
            notebook=api_path,
        )
    if ".." in pure.parts:
        raise PathOutsideRootError(
            f"{api_path!r} climbs out of a directory ('..')",
            fix="name the notebook relative to the server root, without '..'",
            notebook=api_path,
        )
    base = Path(root).resolve()
    target = (base / pure).resolve()
    if target != base and base not in target.parents:
        raise PathOutsideRootError(
            f"{api_path!r} is outside the Jupyter server's root directory",
            fix="open notebooks that live under the directory JupyterLab was started in",
            notebook=api_path,
        )
    if target.suffix != ".ipynb":
        raise BadRequestError(
            f"{api_path!r} is not a notebook (.ipynb)",
            fix="pass the path of an .ipynb file",
            notebook=api_path,
        )
    return target


def file_in_store(store_root: str | Path, relative: str) -> Path:
    """The resolved path of ``relative`` inside the store, refused when it leaves the store
    (a ``..`` or a symlink pointing elsewhere)."""
    base = Path(store_root).resolve()
    target = (base / relative).resolve()
    if base not in target.parents:
        raise PathOutsideRootError(
            f"{relative!r} lies outside the mlnb store",
            fix="remove the link or file that points out of the store's folder",
        )
    return target


def lab_path(root: str | Path, target: Path, *, allow_hidden: bool) -> str | None:
    """``target`` as JupyterLab names it (relative to the server root), or None when the
    Contents API would not open it: outside the root, or hidden (``.mlnb/...``) while
    ``ContentsManager.allow_hidden`` is off."""
    base = Path(root).resolve()
    if base not in target.parents:
        return None
    relative = target.relative_to(base)
    if not allow_hidden and any(part.startswith(".") for part in relative.parts):
        return None
    return relative.as_posix()
