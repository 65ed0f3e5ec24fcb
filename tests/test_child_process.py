"""mlnb in a child process (:mod:`mlnb.child_process`): the command line, what the child
inherits, its start (to its end, on an asyncio loop, in the background) and its JSON answer."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

import pytest

from mlnb import child_process
from mlnb.errors import InputLimitError


def test_the_command_runs_this_interpreter_unless_told() -> None:
    assert child_process.command(["runs", "--json"]) == [
        sys.executable, "-m", "mlnb", "runs", "--json"
    ]  # fmt: skip
    assert child_process.command(["run"], python="/opt/py")[:3] == ["/opt/py", "-m", "mlnb"]


def test_the_child_inherits_the_environment_untracked_unbuffered_and_told_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLNB_SOMETHING", "kept")
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "False")
    monkeypatch.setenv("PWD", "/stale")
    env = child_process.environment(tmp_path)
    assert env["MLNB_SOMETHING"] == "kept"
    assert env["BENTOML_DO_NOT_TRACK"] == "True" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PWD"] == str(tmp_path)
    assert child_process.environment()["PWD"] == os.getcwd()


def fake_python(folder: Path, script: str) -> str:
    """An executable that stands in for the interpreter: ``script`` run by sh."""
    path = folder / "fake-python"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


def test_a_child_runs_in_its_folder_with_that_environment(tmp_path: Path) -> None:
    python = fake_python(tmp_path, 'echo "$@|$PWD|$BENTOML_DO_NOT_TRACK|$PYTHONUNBUFFERED"; pwd')
    finished = child_process.run(["runs", "--json"], cwd=tmp_path, python=python)
    told, actual = finished.stdout.splitlines()
    assert told == f"-m mlnb runs --json|{tmp_path}|True|1" and actual == str(tmp_path)
    assert finished.returncode == 0 and finished.words == ("runs", "--json")


def test_a_usage_error_comes_back_on_stderr(tmp_path: Path) -> None:
    finished = child_process.run(["run", str(tmp_path / "missing.ipynb"), "--json"])
    assert finished.returncode != 0
    assert "missing.ipynb" in finished.stderr or "missing.ipynb" in finished.stdout
    assert finished.run_record() is None


def test_output_that_is_not_json_is_an_error_naming_the_command() -> None:
    with pytest.raises(InputLimitError) as caught:
        child_process.read_json("Traceback (most recent call last):", ["runs", "--json"])
    assert "`mlnb runs`" in caught.value.message and "not valid JSON" in caught.value.message
    assert caught.value.reason == "invalid" and "mlnb runs --json" in (caught.value.fix or "")
    assert child_process.read_json(b'[{"run_id": "r1"}]', ["runs"]) == [{"run_id": "r1"}]


@pytest.mark.parametrize(
    ("stdout", "record"),
    [
        ('{"run_id": "r1", "status": "failed"}', {"run_id": "r1", "status": "failed"}),
        ('{"error": "unknown-parameter", "message": "no x"}', None),
        ("[]", None),
        ("", None),
        ("not json", None),
    ],
)
def test_a_run_record_is_a_mapping_with_a_run_id(stdout: str, record: object) -> None:
    assert child_process.run_record(stdout) == record


def test_error_message_drops_argparse_prefix() -> None:
    assert child_process.error_message("mlnb: error: no such notebook\n") == "no such notebook"


def test_run_async_kills_a_child_that_outlasts_its_timeout(tmp_path: Path) -> None:
    python = fake_python(tmp_path, "exec sleep 600")

    async def main() -> None:
        with pytest.raises(TimeoutError, match=re.escape("`mlnb runs` took over 0.5 s")):
            await child_process.run_async(["runs", "--json"], timeout=0.5, python=python)

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 30


def test_run_async_returns_the_output(tmp_path: Path) -> None:
    async def main() -> child_process.Finished:
        return await child_process.run_async(["--version"], timeout=60, cwd=tmp_path)

    finished = asyncio.run(main())
    assert finished.returncode == 0 and finished.stdout.strip()


def test_start_returns_at_once_and_keeps_the_output(tmp_path: Path) -> None:
    started = child_process.start(["run", str(tmp_path / "missing.ipynb"), "--json"])
    started.process.wait(60)
    assert started.finished and started.returncode == 2
    stdout, stderr = started.output()
    assert "missing.ipynb" in stderr + stdout


NOT_JSON = "echo 'Traceback (most recent call last):'"
ON_STDERR = "echo 'mlnb: error: the store is locked' >&2; exit 2"
AS_JSON = """echo '{"error": "store-error", "message": "damaged", "fix": "repair"}'; exit 2"""


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (NOT_JSON, "the output of `mlnb runs` is not valid JSON"),
        (ON_STDERR, "`mlnb runs` exited 2: mlnb: error: the store is locked"),
        (AS_JSON, "damaged"),
    ],
    ids=["not-json", "stderr", "error-json"],
)
def test_the_server_says_what_a_short_command_answered(
    tmp_path: Path, script: str, message: str
) -> None:
    from mlnb.errors import StoreError
    from mlnb.server.service import MlnbService

    (tmp_path / "nb.ipynb").write_text(
        '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    )
    service = MlnbService(tmp_path, python=fake_python(tmp_path, script))
    with pytest.raises(StoreError) as caught:
        asyncio.run(service.list_runs("nb.ipynb"))
    assert caught.value.message.startswith(message), caught.value.message
