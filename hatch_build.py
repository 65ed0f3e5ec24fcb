"""Build hook: decide, before jupyter-builder runs, whether the JupyterLab sidebar can be built.

The sidebar is TypeScript built by ``jlpm``, which needs Node.js >= 20. Without Node:

- a build that already has the sidebar in ``mlnb/labextension`` keeps it, with a warning;
- an editable install (``pip install -e .``) goes on without the sidebar and says so: the
  CLI, the magics, the ``%mlnb`` panel and the services do not need it;
- a wheel stops with a message that names Node and the fix, since a wheel without the sidebar
  would pass for a complete one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

NODE_MAJOR = 20
BUILT_SIDEBAR = Path("mlnb/labextension/static/style.js")
INSTALL_NODE = (
    "install Node.js >= 20 (Debian: apt-get install nodejs npm; or https://nodejs.org) "
    "and run the same pip command again"
)


def node_major(node: str | None) -> int | None:
    """The major version of the Node.js at ``node``, or None when it is absent or unusable."""
    if node is None:
        return None
    try:
        answer = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v?(\d+)\.", answer.stdout.strip())
    return int(match.group(1)) if match else None


def sidebar_decision(major: int | None, *, built: bool, editable: bool) -> tuple[str, str]:
    """What to do about the sidebar: ``("build" | "keep" | "skip" | "refuse", why)``."""
    if major is not None and major >= NODE_MAJOR:
        return "build", ""
    found = "Node.js was not found" if major is None else f"Node.js {major} is too old"
    if built:
        return "keep", (
            f"{found}: keeping the JupyterLab sidebar already built in mlnb/labextension "
            f"(it may be older than labextension/src; to rebuild it, {INSTALL_NODE})"
        )
    if editable:
        return "skip", (
            f"{found}: installing mlnb WITHOUT the JupyterLab sidebar. The CLI, the %mlnb "
            f"magics and panel, and the services work; for the sidebar, {INSTALL_NODE}"
        )
    return "refuse", (
        f"{found}: building the mlnb wheel needs it to build the JupyterLab sidebar. "
        f"Fix: {INSTALL_NODE}, or install in editable mode (pip install -e .) to go on "
        "without the sidebar"
    )


class SidebarHook(BuildHookInterface):  # type: ignore[type-arg]
    """Runs before the jupyter-builder hook and switches it off when Node is missing."""

    PLUGIN_NAME = "mlnb-sidebar"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("SKIP_JUPYTER_BUILDER"):
            return
        built = (Path(self.root) / BUILT_SIDEBAR).is_file()
        action, why = sidebar_decision(
            node_major(shutil.which("node")), built=built, editable=version == "editable"
        )
        if action == "build":
            return
        if action == "refuse":
            # A message, not a traceback: pip prints the backend's output as it is.
            print(f"mlnb: {why}", file=sys.stderr)
            raise SystemExit(1)
        os.environ["SKIP_JUPYTER_BUILDER"] = "1"
        if action == "skip":
            # Without the built folder the shared-data entries would point at nothing.
            for source in list(self.build_config.target_config.get("shared-data", {})):
                if source.startswith("mlnb/labextension") or source.startswith("labextension/"):
                    self.build_config.target_config["shared-data"].pop(source)
        print(f"mlnb: WARNING: {why}", file=sys.stderr)
