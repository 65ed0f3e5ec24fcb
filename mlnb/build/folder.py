"""The build folder ``bentoml build`` packs: rendered files plus mlnb's serving runtime.

A Bento carries the Python files of ``mlnb.serving`` and ``mlnb.monitoring`` (and the five
modules they import), so it serves anywhere its pinned packages are installed, without mlnb.
The folder lives in the store (``builds/<name>-<version>/``) for people to read; it is
written to a temporary folder and renamed, and a folder of the same version is left as is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

import mlnb

PACKAGE_DIR = Path(mlnb.__file__).resolve().parent
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
    """Relative path in the Bento (``mlnb/...``) -> the installed file, sorted."""
    files = {f"mlnb/{name}": PACKAGE_DIR / name for name in RUNTIME_MODULES}
    for package in RUNTIME_PACKAGES:
        for path in sorted((PACKAGE_DIR / package).glob("*.py")):
            files[f"mlnb/{package}/{path.name}"] = path
    return dict(sorted(files.items()))


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
