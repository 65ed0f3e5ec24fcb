"""After `pip install`, Jupyter lists both halves of mlnb as enabled, with no npm step."""

from __future__ import annotations

import re
import subprocess
import sys

import mlnb

from .conftest import _extension_installed, _unavailable


def _jupyter(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # no colours


def test_the_prebuilt_labextension_is_enabled() -> None:
    if not _extension_installed():
        _unavailable("the mlnb labextension is not installed (pip install -e . builds it)")
    listing = _jupyter("labextension", "list")
    assert re.search(rf"mlnb v{re.escape(mlnb.__version__)} enabled OK \(python, mlnb\)", listing)


def test_the_server_extension_is_enabled() -> None:
    listing = _jupyter("server", "extension", "list")
    assert re.search(r"mlnb\.server\s+enabled", listing), listing
    assert re.search(r"mlnb\.server\s+OK", listing), listing
