"""A real Jupyter server with the mlnb extension, through pytest-jupyter's fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_fetch, jp_serverapp, ...)

from tests.conftest import EXAMPLES, code_cell, notebook_json


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"mlnb.server": True}}}


@pytest.fixture
def root(jp_root_dir: Path) -> Path:
    """The server root, holding the example notebooks and a broken one."""
    for name in ("breast_cancer.ipynb", "diabetes.ipynb"):
        shutil.copy(EXAMPLES / name, jp_root_dir / name)
    broken = notebook_json(
        [
            code_cell("import math"),
            code_cell("y = x + 1", tags=("mlnb:data",)),
            code_cell("model = y", tags=("mlnb:train",)),
        ]
    )
    (jp_root_dir / "sub").mkdir()
    (jp_root_dir / "sub" / "broken.ipynb").write_text(json.dumps(broken))
    return jp_root_dir
