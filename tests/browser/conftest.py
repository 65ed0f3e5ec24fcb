"""A real JupyterLab (``python -m jupyterlab``) and Debian's Chromium driven by playwright.

The browser tests skip when Chromium or the built extension is missing, unless
``MLNB_REQUIRE_BROWSER=1`` (CI sets it): then they fail, so CI cannot pass without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, code_cell, notebook_json

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 90


def _unavailable(reason: str) -> None:
    if os.environ.get("MLNB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"MLNB_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if path is None:
        _unavailable("chromium is not installed (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    return str(path)


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _extension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return any(
        (Path(folder) / "mlnb" / "package.json").is_file()
        for folder in jupyter_path("labextensions")
    )


@pytest.fixture(scope="module")
def lab(
    chromium: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Lab]:
    """A JupyterLab for the module, with JupyterLab's default settings as a fresh user has them
    (no ``overrides.json``, unless the module sets ``LAB_OVERRIDES`` to a mapping)."""
    if not _extension_installed():
        _unavailable("the mlnb labextension is not installed (pip install -e . builds it)")
    base = tmp_path_factory.mktemp("lab")
    root, settings, home = base / "root", base / "settings", base / "home"
    for folder in (root, settings, home):
        folder.mkdir()
    shutil.copy(EXAMPLES / "breast_cancer.ipynb", root / "breast_cancer.ipynb")
    broken = [
        code_cell("import math"),
        code_cell("y = x + 1", tags=("mlnb:data",)),
        code_cell("model = y", tags=("mlnb:train",)),
    ]
    (root / "broken.ipynb").write_text(json.dumps(notebook_json(broken)))
    overrides = getattr(request.module, "LAB_OVERRIDES", None)
    if overrides is not None:
        (settings / "overrides.json").write_text(json.dumps(overrides))
    token, port = secrets.token_hex(16), _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JUPYTER", "JPY_")) and key != "MLNB_STORE"
    }
    env.update(
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        BENTOML_DO_NOT_TRACK="True",
        BENTOML_HOME=str(base / "bentoml"),
    )
    log = base / "lab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.app_settings_dir={settings}",
        f"--LabApp.user_settings_dir={base / 'user-settings'}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(process, url, token, log)
        yield Lab(url, token, root, log)
    finally:
        _stop(process)


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, token: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    request = urllib.request.Request(
        f"{url}/api/status", headers={"Authorization": f"token {token}"}
    )
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"JupyterLab did not answer in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # kernels it started, if any are left
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def page(browser: Any, lab: Lab, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page in a fresh context; a test module may set VIEWPORT and TIMEOUT_MS."""
    viewport = getattr(request.module, "VIEWPORT", {"width": 1400, "height": 1400})
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(getattr(request.module, "TIMEOUT_MS", 30_000))
    try:
        yield page
    finally:
        context.close()


def answer_the_news_question(page: Any) -> None:
    """A JupyterLab with default settings asks whether to fetch Jupyter news: answer No, as a
    person would, whenever the question shows up in the way of a click."""
    toast = page.locator(".jp-Notification-Toast, .Toastify__toast").filter(
        has_text="official Jupyter news"
    )
    page.add_locator_handler(
        toast, lambda found: found.get_by_role("button", name="No", exact=True).click()
    )
