"""The Jupyter server extension behind the JupyterLab sidebar: a REST API under ``/mlnb/``.

Enabled by ``etc/jupyter/jupyter_server_config.d/mlnb.json`` (installed with the wheel), or by
hand with ``jupyter server extension enable mlnb.server``. Options, e.g. in
``jupyter_server_config.py``::

    c.MlnbExtension.store = "/data/mlnb-store"   # one store for every notebook
    c.MlnbExtension.max_jobs = 2                 # runs and builds going at once
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from mlnb.server.app import MlnbExtension

    return [{"module": "mlnb.server", "app": MlnbExtension}]
