"""Which store a command uses when the user names none (mlnb.store_finder), on real folders
and real stores (written by :class:`mlnb.store.Store`), no kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlnb.cell_numbers import cell_label, cell_list, cell_number, cell_ranges, number_ranges
from mlnb.errors import AmbiguousStoreError, CellRef, StoreError
from mlnb.store import Store
from mlnb.store_finder import MAX_DEPTH, find_store, holds_runs

NO_ENV: dict[str, str] = {}


def make_store(folder: Path, *runs: tuple[str, str], notebook: str = "nb.ipynb") -> Path:
    """A notebook in ``folder`` and its store with runs ``(run_id, started_at)``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / notebook).write_text("{}")
    with Store(folder / ".mlnb") as store:
        for run_id, started in runs:
            store.create_run(
                {
                    "run_id": run_id,
                    "notebook": {"path": str(folder / notebook)},
                    "status": "succeeded",
                    "started_at": started,
                }
            )
    return folder / ".mlnb"


OLD = "2026-01-01T00:00:00.000000+00:00"
NEW = "2026-12-01T00:00:00.000000+00:00"


def test_the_store_in_the_current_folder_comes_first(tmp_path: Path) -> None:
    here = make_store(tmp_path, ("r1", OLD))
    make_store(tmp_path / "sub", ("r2", NEW))
    choice = find_store(tmp_path, environ=NO_ENV)
    assert (choice.root, choice.reason) == (here, "here")
    assert choice.announcement() == "mlnb: using the store .mlnb (of nb.ipynb)"


def test_the_store_beside_a_notebook_below_is_found_and_named(tmp_path: Path) -> None:
    store = make_store(tmp_path / "example_notebooks", ("r1", OLD), notebook="breast.ipynb")
    choice = find_store(tmp_path, environ=NO_ENV)
    assert (choice.root, choice.reason, choice.others) == (store, "below", ())
    assert choice.announcement() == (
        "mlnb: using the store example_notebooks/.mlnb (of example_notebooks/breast.ipynb)"
    )


def test_of_two_stores_the_newest_run_wins_and_the_other_is_named(tmp_path: Path) -> None:
    make_store(tmp_path / "a", ("old", OLD))
    newer = make_store(tmp_path / "b", ("new", NEW))
    choice = find_store(tmp_path, environ=NO_ENV)
    assert choice.root == newer and [f.root.parent.name for f in choice.others] == ["a"]
    line = choice.announcement() or ""
    assert line.startswith("mlnb: using the store b/.mlnb (of b/nb.ipynb); also found a/.mlnb")
    assert "newest run" in line and "--notebook NB or --store DIR" in line


def test_a_command_that_names_a_run_takes_the_store_that_holds_it(tmp_path: Path) -> None:
    older = make_store(tmp_path / "a", ("old", OLD))
    make_store(tmp_path / "b", ("new", NEW))
    choice = find_store(tmp_path, environ=NO_ENV, holds=holds_runs("old"), holds_what="holds old")
    assert choice.root == older
    assert "it holds old; also found b/.mlnb (took the one that holds it" in (
        choice.announcement() or ""
    )
    # ./.mlnb comes first, unless it lacks the run and a store below has it
    here = make_store(tmp_path, ("here", NEW))
    assert find_store(tmp_path, environ=NO_ENV, holds=holds_runs("here")).root == here
    assert find_store(tmp_path, environ=NO_ENV, holds=holds_runs("old")).root == older
    assert find_store(tmp_path, environ=NO_ENV, holds=holds_runs("none")).root == here
    assert holds_runs("../a")(tmp_path / "a" / ".mlnb") is False  # not a path


def test_a_command_that_must_not_guess_refuses_and_lists_the_choices(tmp_path: Path) -> None:
    make_store(tmp_path / "a", ("old", OLD))
    make_store(tmp_path / "b", ("new", NEW))
    with pytest.raises(AmbiguousStoreError) as caught:
        find_store(tmp_path, environ=NO_ENV, ambiguity="refuse", command="mlnb store verify")
    text = str(caught.value)
    assert "2 stores below" in text and "b/.mlnb, a/.mlnb" in text
    assert "mlnb store verify --notebook b/nb.ipynb; mlnb store verify --notebook a/nb.ipynb" in (
        text
    )
    assert caught.value.code == "ambiguous-store" and isinstance(caught.value, StoreError)


def test_what_the_user_names_wins(tmp_path: Path) -> None:
    make_store(tmp_path, ("r1", OLD))
    given = find_store(tmp_path, store="elsewhere", environ={"MLNB_STORE": "env"})
    assert (given.root, given.reason, given.announcement()) == (
        tmp_path / "elsewhere",
        "given",
        None,
    )
    env = find_store(tmp_path, notebook="x/nb.ipynb", environ={"MLNB_STORE": "env"})
    assert (env.root, env.reason) == (tmp_path / "env", "environment")
    beside = find_store(tmp_path, notebook="x/nb.ipynb", environ=NO_ENV)
    assert (beside.root, beside.reason) == (tmp_path / "x" / ".mlnb", "notebook")
    assert beside.where_looked() == "x/.mlnb (beside the notebook)"


def test_the_walk_skips_hidden_folders_packages_venvs_and_the_deep(tmp_path: Path) -> None:
    make_store(tmp_path / ".hidden", ("r1", NEW))
    make_store(tmp_path / "node_modules" / "pkg", ("r2", NEW))
    make_store(tmp_path / "lib" / "site-packages" / "pkg", ("r3", NEW))
    (tmp_path / "venvish").mkdir()
    (tmp_path / "venvish" / "pyvenv.cfg").write_text("home = /usr\n")
    make_store(tmp_path / "venvish" / "nb", ("r4", NEW))
    deep = tmp_path.joinpath(*(f"d{i}" for i in range(MAX_DEPTH + 1)))
    make_store(deep, ("r5", NEW))
    choice = find_store(tmp_path, environ=NO_ENV)
    assert choice.reason == "none" and choice.root == tmp_path / ".mlnb"
    assert choice.where_looked() == (
        f"./.mlnb nor beside any notebook below {tmp_path} ({MAX_DEPTH} levels deep)"
    )
    with pytest.raises(StoreError, match=r"there is no store in \./\.mlnb nor beside"):
        choice.exists()
    # one level less deep is found
    shallow = tmp_path.joinpath(*(f"e{i}" for i in range(MAX_DEPTH)))
    assert find_store(tmp_path, environ=NO_ENV).reason == "none"
    found = make_store(shallow, ("r6", OLD))
    assert find_store(tmp_path, environ=NO_ENV).root == found


def test_a_store_with_a_damaged_index_is_still_found_by_its_run_folders(tmp_path: Path) -> None:
    store = make_store(tmp_path / "a", ("r1", OLD))
    (store / "mlnb.db").write_bytes(b"not sqlite at all" * 100)
    for suffix in ("-wal", "-shm"):
        (store / f"mlnb.db{suffix}").unlink(missing_ok=True)
    choice = find_store(tmp_path, environ=NO_ENV)
    assert choice.root == store and choice.notebooks == (tmp_path / "a" / "nb.ipynb",)


# --- the one conversion of cell indexes to the numbers people read ---


def test_cell_numbers_are_one_based_as_jupyterlab_counts() -> None:
    assert cell_number(0) == 1 and cell_label(5) == "cell 6"
    assert cell_ranges((0, 1, 2, 4)) == "1-3, 5" and cell_ranges(()) == ""
    assert cell_list((3,)) == "cell 4" and cell_list((6, 3, 4)) == "cells 4-5, 7"
    assert number_ranges((1, 2, 3, 5)) == "1-3, 5"
    assert str(CellRef.of(5, "\n  import pandas\nx = 1")) == "cell 6 ('import pandas')"


def test_a_bento_tag_finds_the_store_that_built_it_or_holds_its_logs(tmp_path: Path) -> None:
    from mlnb.cli.bento_store import built_bentos, holds_bento

    built = make_store(tmp_path / "a", ("r1", OLD))
    with Store(built) as store:
        store.add_build("r1", {"bento": "breast_cancer:abc123", "format": "onnx"})
    logged = make_store(tmp_path / "b", ("r2", NEW))
    (logged / "monitoring" / "diabetes" / "v1").mkdir(parents=True)
    (logged / "monitoring" / "diabetes" / "v1" / "reference.json").write_text("{}")
    assert built_bentos(built) == {"breast_cancer:abc123"} and built_bentos(logged) == set()
    for tag, store in (("breast_cancer:abc123", built), ("diabetes:v1", logged)):
        choice = find_store(tmp_path, environ=NO_ENV, holds=holds_bento(tag), holds_what=tag)
        assert choice.root == store, tag
    assert holds_bento("breast_cancer")(built)  # a tag without its version: the name
    assert not holds_bento("other:1")(built) and not holds_bento("other:1")(logged)
