"""``%load_ext mlnb`` and the magics, through a real IPython InteractiveShell."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from .conftest import EXAMPLES, NOTEBOOKS


@pytest.fixture
def shell() -> InteractiveShell:
    main = sys.modules["__main__"]  # IPython swaps in its own; multiprocessing needs pytest's
    ip = InteractiveShell.instance()
    ip.reset()
    ip.run_line_magic("load_ext", "mlnb")
    yield ip
    ip.reset()
    sys.modules["__main__"] = main


def _run(shell: InteractiveShell, source: str):
    return shell.run_cell(source, store_history=True)


def test_stage_cell_runs_like_the_plain_cell(shell: InteractiveShell) -> None:
    body = "import math\nvalues = [math.sqrt(i) for i in range(4)]\nsum(values)"
    plain = _run(shell, body)
    plain_ns = {k: shell.user_ns[k] for k in ("values",)}
    shell.reset()
    shell.run_line_magic("load_ext", "mlnb")
    magic = _run(shell, f"%%mlnb data --name load\n{body}")
    assert magic.success and plain.success
    assert magic.result == plain.result == pytest.approx(sum(i**0.5 for i in range(4)))
    assert shell.user_ns["values"] == plain_ns["values"]


def test_stage_cell_records_the_stage(shell: InteractiveShell) -> None:
    _run(shell, "x = 2")
    result = _run(shell, "%%mlnb train --model model --metrics score\nmodel = x * 21\nscore = 1.0;")
    assert result.success and result.result is None  # `;` silences the value, as in IPython
    magics = shell.magics_manager.registry["MlnbMagics"]
    stage = magics.recorded["train"]
    assert (stage.kind, stage.status, stage.defines) == ("train", "ok", ("model", "score"))
    assert stage.seconds >= 0


def test_inner_magics_work_and_errors_propagate(shell: InteractiveShell) -> None:
    ok = _run(shell, "%%mlnb data\n%time y = 3\ny")
    assert ok.success and ok.result == 3
    failed = _run(shell, "%%mlnb train\nraise ValueError('bad data')")
    assert isinstance(failed.error_in_exec, ValueError)
    magics = shell.magics_manager.registry["MlnbMagics"]
    assert magics.recorded["train"].status == "failed"


def test_bad_magic_line_is_a_usage_error(shell: InteractiveShell, capsys) -> None:
    result = _run(shell, "%%mlnb predict\nx = 1")
    assert not result.success
    assert "x" not in shell.user_ns
    err = capsys.readouterr()
    assert "unknown stage kind 'predict'" in err.out + err.err


def test_status_prints_the_pipeline(shell: InteractiveShell, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MLNB_NOTEBOOK", str(EXAMPLES / "diabetes.ipynb"))
    _run(shell, "%%mlnb data --name load\nrows = 3")
    capsys.readouterr()
    _run(shell, "%mlnb status")
    out = capsys.readouterr().out
    assert "diabetes.ipynb: 3 stage(s)" in out
    assert "load (data): ok" in out


def test_status_without_a_notebook_says_how(shell: InteractiveShell, capsys, monkeypatch) -> None:
    monkeypatch.delenv("MLNB_NOTEBOOK", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    result = _run(shell, "%mlnb status")
    assert not result.success
    captured = capsys.readouterr()
    assert "%mlnb status path/to/notebook.ipynb" in captured.out + captured.err


def test_status_finds_the_notebook_from_the_jupyter_session(
    shell: InteractiveShell, capsys, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLNB_NOTEBOOK", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", str(EXAMPLES / "breast_cancer.ipynb"))
    _run(shell, "%mlnb status")
    assert "breast_cancer.ipynb: 3 stage(s)" in capsys.readouterr().out


def test_panel_takes_the_kernel_to_run_in(shell: InteractiveShell, capsys) -> None:
    notebook = EXAMPLES / "diabetes.ipynb"
    _run(shell, f"%mlnb panel {notebook} -k project-env")
    panel = shell.magics_manager.registry["MlnbMagics"].panel
    assert panel is not None and panel.kernel.value == "project-env"
    assert not _run(shell, f"%mlnb panel {notebook} --kernel").success  # the name is missing
    assert "--kernel needs a kernel name" in "".join(capsys.readouterr())


@pytest.mark.slow
def test_run_says_it_runs_the_saved_file(shell: InteractiveShell, capsys, tmp_path: Path) -> None:
    notebook = tmp_path / "tiny.ipynb"
    notebook.write_text((NOTEBOOKS / "tiny.ipynb").read_text())
    result = _run(shell, f"%mlnb run {notebook} --store {tmp_path / 'store'} -p scale 3")
    out = capsys.readouterr().out
    assert result.success, out
    assert out.startswith(
        "mlnb: runs tiny.ipynb as saved on disk: save it (Ctrl+S) to include unsaved edits\n"
    )
    assert " succeeded in " in out
