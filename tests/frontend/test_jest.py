"""The sidebar's pure TypeScript modules (DAG layout, parameters, tagging, state) under jest."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def test_jest_suite_passes() -> None:
    jest = ROOT / "node_modules" / ".bin" / "jest"
    node = shutil.which("node")
    if node is None or not jest.exists():
        reason = "node or node_modules/.bin/jest is missing (pip install -e . runs jlpm install)"
        if os.environ.get("MLNB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MLNB_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    result = subprocess.run(
        [node, str(jest), "--ci", "--silent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Tests:\s+\d+ passed, \d+ total", result.stderr), result.stderr
