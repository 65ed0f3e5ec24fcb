"""Where a history row's links point: the run's report and its executed notebook.

The kernel knows files by their path on disk; the browser knows them by the Jupyter server's
URLs. The server that started this kernel (``JPY_PARENT_PID``) describes itself in
``jpserver-PID.json`` in Jupyter's runtime folder; only its ``root_dir`` and ``base_url`` are read.
The report is the one mlnb's server extension renders (``GET /mlnb/runs/ID/report``). The
executed notebook opens in JupyterLab when the Contents API can open it; under a hidden folder
(the default store is ``.mlnb/`` beside the notebook, and JupyterLab refuses hidden files) it
is downloaded from ``GET /mlnb/runs/ID/notebook`` instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class ServerPlace:
    """Where the Jupyter server serves files from, and under which URL prefix."""

    root_dir: Path
    base_url: str  # always ends with "/"

    def api_path(self, path: Path) -> str | None:
        """``path`` as the Contents API names it (relative to the root), None outside it."""
        try:
            relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(self.root_dir))
        except ValueError:
            return None
        return relative.as_posix()


def server_place(env: Mapping[str, str] | None = None) -> ServerPlace | None:
    """The server that started this kernel, or None (a kernel not started by a Jupyter server,
    or a server that wrote no info file)."""
    env = os.environ if env is None else env
    pid = env.get("JPY_PARENT_PID", "")
    if not pid.isdigit():
        return None
    from jupyter_core.paths import jupyter_runtime_dir

    folder = env.get("JUPYTER_RUNTIME_DIR") or jupyter_runtime_dir()
    try:
        info = json.loads((Path(folder) / f"jpserver-{pid}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    root, base = info.get("root_dir"), info.get("base_url")
    if not isinstance(root, str) or not isinstance(base, str):
        return None
    return ServerPlace(Path(root), base if base.endswith("/") else base + "/")


@dataclass(frozen=True)
class Link:
    """A link a history row shows. ``lab_path`` set: JupyterLab opens it in a tab of its own
    (``docmanager:open``); else the browser follows ``href`` in a new tab."""

    text: str
    href: str
    title: str
    lab_path: str | None = None


def run_links(record: Mapping[str, Any], notebook: Path, place: ServerPlace | None) -> list[Link]:
    """The report and executed-notebook links of one run; none when the server is unknown,
    the notebook lies outside its root, or the run's kernel never started (no executed notebook,
    so no report: the server answers 404 for it)."""
    notebook_api = None if place is None else place.api_path(notebook)
    executed, store = record.get("executed_notebook"), record.get("store")
    if place is None or notebook_api is None:
        return []
    if not isinstance(executed, str) or not isinstance(store, str):
        return []
    run_id = quote(str(record.get("run_id")), safe="")
    query = "?path=" + quote(notebook_api, safe="/")
    runs = f"{place.base_url}mlnb/runs/{run_id}"
    links = [
        Link(
            "report",
            f"{runs}/report{query}",
            "the run's HTML report (mlnb report), in a new browser tab",
        )
    ]
    on_disk = Path(store) / executed
    api = place.api_path(on_disk)
    if api is not None and not any(part.startswith(".") for part in api.split("/")):
        links.append(
            Link(
                "notebook",
                f"{place.base_url}lab/tree/{quote(api)}",
                f"open the executed notebook {api} in JupyterLab",
                api,
            )
        )
    else:
        links.append(
            Link(
                "notebook",
                f"{runs}/notebook{query}",
                f"download the executed notebook ({on_disk}); JupyterLab does not open "
                "files in hidden folders such as .mlnb",
            )
        )
    return links
