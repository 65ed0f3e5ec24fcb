"""Where a service's monitoring folder is: one folder per Bento version.

A Bento names no folder of the machine that built it: a service logs in ``$MLNB_MONITOR_DIR``
when it is set (``mlnb serve`` sets it to ``<store>/monitoring/<name>/<version>`` when it
knows the store), else in ``mlnb-monitoring/<name>/<version>`` under the folder ``bentoml
serve`` was started in (:func:`relative_monitor_folder`), and says which at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlnb.monitoring.records import REFERENCE_FILE
from mlnb.reporting.logs import MonitorLogError

MONITOR_DIR_ENV = "MLNB_MONITOR_DIR"
RELEASE_FILE = "release.json"  # a release's folder holds it (and one folder per version)
WORKING_FOLDER_ROOT = "mlnb-monitoring"  # under the folder the service was started in


def relative_monitor_folder(bento_name: str, bento_version: str) -> str:
    """The monitoring folder a Bento names, relative to the folder the service is started
    in: ``mlnb-monitoring/<name>/<version>`` (POSIX, whoever built it)."""
    return f"{WORKING_FOLDER_ROOT}/{bento_name}/{bento_version}"


def default_monitor_folder(store: str | Path, bento_name: str, bento_version: str) -> Path:
    return Path(store).resolve() / "monitoring" / bento_name / bento_version


def resolve_monitor_folder(target: str, store: str | None = None) -> Path:
    """A monitoring folder given as a path, or found for a Bento tag in the store: a
    service's (with ``reference.json``) or a release's (with ``release.json``)."""
    path = Path(target)
    if path.is_dir():
        return path
    name, _, version = target.partition(":")
    if not version:
        raise MonitorLogError(
            f"{target!r} is neither a folder nor a Bento tag (name:version)",
            fix="pass the monitoring folder, or a tag such as breast_cancer:3f2a9c1e",
        )
    stores = [store or os.environ.get("MLNB_STORE") or ".mlnb"]
    candidates = [default_monitor_folder(root, name, version) for root in stores]
    candidates.append(Path(relative_monitor_folder(name, version)).resolve())
    for candidate in candidates:
        if (candidate / REFERENCE_FILE).is_file() or is_release_folder(candidate):
            return candidate
    raise MonitorLogError(
        f"no monitoring folder for Bento {target} in the store {stores[0]} nor in "
        f"./{relative_monitor_folder(name, version)}",
        fix="pass --store (the store the Bento was built from) or the folder itself "
        f"(the service prints it at start-up, and ${MONITOR_DIR_ENV} overrides it)",
    )


def is_release_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a release's monitoring folder (it holds ``release.json``)."""
    return (Path(folder) / RELEASE_FILE).is_file()
