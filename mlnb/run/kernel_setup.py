"""What ``mlnb run`` sets up inside the kernel before the notebook's first cell.

The kernel may belong to another environment than the ``mlnb`` command (one kernel per
project is common), with or without mlnb installed: the injected first cell then imports this
run's mlnb from its source folder. :func:`prepare` checks that the packages mlnb's runtime
saves stage values with are importable there, so a run stops before its first stage with the
command that installs them instead of failing in the middle, and registers the ``%%mlnb``
magic so stage cells run without the notebook loading the extension itself.

Only the standard library and :mod:`mlnb.errors` are imported here.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mlnb.errors import KernelPackagesError

# mlnb.run.outputs saves every value that is not a frame or a plain array with joblib, and
# values that refer to code defined in the notebook with cloudpickle.
ALWAYS_NEEDED = ("joblib", "cloudpickle")
# With pandas in the kernel, frames are saved as parquet, which needs pyarrow.
NEEDED_WITH = {"pandas": ("pyarrow",)}


def missing_packages(
    find: Callable[[str], bool] | None = None,
    always: Sequence[str] = ALWAYS_NEEDED,
    needed_with: dict[str, tuple[str, ...]] | None = None,
) -> list[str]:
    """The packages mlnb's runtime needs that this Python cannot import."""
    present = find or _importable
    wanted = list(always)
    for package, extra in (NEEDED_WITH if needed_with is None else needed_with).items():
        if present(package):
            wanted += [name for name in extra if name not in wanted]
    return [name for name in wanted if not present(name)]


def check_packages(kernel: str | None = None, find: Callable[[str], bool] | None = None) -> None:
    """Raise :class:`KernelPackagesError` naming what to install, when anything is missing."""
    missing = missing_packages(find)
    if not missing:
        return
    python = sys.executable or "python"
    names = " ".join(missing)
    which = f"the kernel {kernel!r}" if kernel else "the kernel"
    raise KernelPackagesError(
        f"{which} runs {python} (Python {sys.version.split()[0]}), whose environment lacks "
        f"{', '.join(missing)}: mlnb needs {'it' if len(missing) == 1 else 'them'} inside the "
        "kernel to save what each stage makes; no stage ran",
        fix=f"install into the kernel's environment: {python} -m pip install {names} "
        "(or install mlnb there), or run with another kernel: mlnb run -k NAME",
    )


def register_magics(shell: Any = None) -> bool:
    """Register ``%mlnb``/``%%mlnb`` in the running IPython; False outside IPython."""
    if shell is None:
        try:
            ipython: Any = importlib.import_module("IPython")
        except ImportError:
            return False
        shell = ipython.get_ipython()
    if shell is None:
        return False
    if "mlnb" in shell.magics_manager.magics.get("cell", {}):
        return True  # the notebook (or its profile) loaded the extension already
    from mlnb import load_ipython_extension

    load_ipython_extension(shell)
    return True


def prepare(kernel: str | None = None) -> None:
    """The first thing a run does in its kernel: check packages, then register the magics."""
    check_packages(kernel)
    register_magics()


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
