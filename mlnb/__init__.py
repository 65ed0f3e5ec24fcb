"""mlnb: from one Jupyter notebook to a reproducible pipeline and a monitored model service."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mlnb``: register the ``%mlnb`` / ``%%mlnb`` magics."""
    from mlnb.magics import MlnbMagics

    ipython.register_magics(MlnbMagics(ipython))


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """For ``jupyter labextension develop .``: the prebuilt sidebar inside the package."""
    return [{"src": "labextension", "dest": "mlnb"}]
