"""Exact requirement pins for a Bento, from the run's environment: a lock made offline.

BentoML's own locking resolves against the public index (it fails offline), so the build turns
it off and writes exact pins itself. The service's direct needs are the packages it imports
(BentoML, numpy, pandas, pyarrow for the monitoring logs, onnxruntime or scikit-learn and
joblib, and whatever the serve code imports) and, for a native model, every library its pickle
refers to (lightgbm, xgboost, statsmodels, cloudpickle for code carried by value, ...). The
lock is their closure: every distribution they require, transitively, as the installed
packages' metadata declares it (extras followed, environment markers evaluated here), each
pinned at the version the run recorded, else the version installed where the build runs (the
run records the packages the notebook imports; their own dependencies are read where the
build runs). Not the whole environment: a package nothing the service loads needs stays out.
Modules beside the notebook are carried into the Bento, not pinned.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from collections.abc import Iterable, Mapping

from mlnb.errors import ServeCodeError

# pyarrow: the worker writes the monitoring logs as Arrow files
RUNTIME = ("bentoml", "numpy", "pandas", "pyarrow")
BY_FORMAT = {"onnx": ("onnxruntime",), "native": ("scikit-learn", "joblib")}
CARRIED = frozenset({"mlnb"})  # a Bento carries mlnb's runtime as source


def requirements(
    model_format: str,
    imported_modules: Iterable[str],
    run_packages: Mapping[str, str],
    *,
    model_modules: Iterable[str] = (),
    local_modules: Iterable[str] = (),
    extra: Iterable[str] = (),
) -> list[str]:
    """``name==version`` lines, sorted, for the service's direct dependencies.

    ``model_modules`` are the modules a native model's pickle refers to; ``local_modules``
    the top-level names of modules carried beside the service (never pinned); ``extra``
    more distributions (what ``/explain``'s explainer needs: shap for scikit-learn trees).
    """
    local = frozenset(local_modules)
    names = dict.fromkeys([*RUNTIME, *BY_FORMAT[model_format]])
    for module in sorted(set(imported_modules)):
        if module.split(".")[0] not in local:
            for distribution in _distributions(module):
                names[distribution] = None
    for distribution in model_distributions(model_modules, local):
        names[distribution] = None
    for distribution in extra:
        names[distribution] = None
    recorded = {_normal(name): version for name, version in run_packages.items()}
    pins = []
    for name in closure(names):
        version = recorded.get(_normal(name)) or _installed(name)
        pins.append(f"{name}=={version}")
    return sorted(pins, key=str.lower)


def closure(names: Iterable[str]) -> list[str]:
    """``names`` and every installed distribution they require, transitively: the extras
    asked for followed, requirements whose environment marker does not hold here left out,
    as are requirements not installed here (nothing here loads them). Each once: ``names``
    as given, the others by their installed name."""
    from packaging.requirements import InvalidRequirement, Requirement

    direct = list(names)
    pinned = {_normal(name): name for name in direct}
    followed: set[tuple[str, str]] = set()  # (name, extra) read; "" for the base requirements
    queue = [(name, "") for name in direct]
    while queue:
        name, extra = queue.pop()
        key = _normal(name)
        if (key, extra) in followed:
            continue
        followed.add((key, extra))
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a direct need missing here: requirements() names it
        pinned.setdefault(key, str(distribution.metadata["Name"]))
        for line in distribution.requires or []:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            marker = requirement.marker
            if marker is None and extra:
                continue  # the base requirements, read with the base
            if marker is not None and not marker.evaluate({"extra": extra}):
                continue
            queue.append((requirement.name, ""))
            queue.extend((requirement.name, wanted) for wanted in sorted(requirement.extras))
    return list(pinned.values())


def model_distributions(modules: Iterable[str], local: frozenset[str] = frozenset()) -> list[str]:
    """The installed distributions that provide these modules (the model's libraries)."""
    found: dict[str, None] = {}
    for top in sorted({module.split(".")[0] for module in modules} - local):
        if top in sys.stdlib_module_names or top in CARRIED:
            continue
        for distribution in sorted(set(_packages_distributions().get(top) or []))[:1]:
            found[distribution] = None
    return list(found)


def unresolved_modules(modules: Iterable[str], local: frozenset[str] = frozenset()) -> list[str]:
    """Top-level modules of the model that are neither standard, local nor installed."""
    tops = {module.split(".")[0] for module in modules} - local - CARRIED
    return sorted(
        top
        for top in tops
        if top not in sys.stdlib_module_names
        and not top.startswith("_")
        and not _packages_distributions().get(top)
    )


def _distributions(module: str) -> list[str]:
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in CARRIED or top == "__future__":
        return []
    found = _packages_distributions().get(top)
    if not found:
        raise ServeCodeError(
            f"the serve code imports {top!r}, which is not an installed package; a Bento "
            "carries the serve code and installed packages only",
            fix=f"install {top!r} as a package, or move what the serve code needs from it "
            "into the serve cell",
        )
    return sorted(set(found))[:1]


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        raise ServeCodeError(
            f"{name} is needed by the service but not installed here",
            fix=f"pip install {name}",
        ) from None


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def python_minor(version: str) -> str:
    """``3.11.7`` -> ``3.11``; the running interpreter's when the run recorded none."""
    parts = version.split(".") if version else []
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return f"{parts[0]}.{parts[1]}"
    return f"{sys.version_info.major}.{sys.version_info.minor}"
