"""Reading a notebook file into the few fields mlnb needs, fast and without nbformat.

``import nbformat`` costs most of a second (schema validation pulls in heavy modules), and
``mlnb inspect`` or a cache check should not pay for it; the JSON is read directly instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlnb.errors import NotebookFormatError, NotebookReadError

MIN_NBFORMAT = 4
MAX_NOTEBOOK_BYTES = 2 << 30  # 2 GiB: larger is outputs gone wild, not a notebook to run


@dataclass(frozen=True)
class RawCell:
    """One cell as stored: its index in the notebook, type, source, tags and metadata."""

    index: int
    cell_type: str
    source: str
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NotebookFile:
    path: str
    cells: tuple[RawCell, ...]
    sha256: str
    kernel_name: str | None

    @property
    def code_cells(self) -> tuple[RawCell, ...]:
        return tuple(c for c in self.cells if c.cell_type == "code")


def read_notebook(path: str | Path) -> NotebookFile:
    """Read and check a notebook file; every failure is a :class:`NotebookReadError`."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotebookReadError(
            "no such file", fix="check the path to the notebook", notebook=name
        ) from None
    except OSError as exc:
        raise NotebookReadError(
            f"cannot read the file ({exc.strerror})",
            fix="check that the path is a readable file",
            notebook=name,
        ) from None
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise NotebookReadError(
            f"the file has {len(data):,} bytes, more than the {MAX_NOTEBOOK_BYTES:,} mlnb reads",
            fix="clear the notebook's outputs (Edit > Clear Outputs of All Cells) and save it",
            notebook=name,
        )
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotebookReadError(
            f"not notebook JSON ({exc})",
            fix="open it in Jupyter and save it again, or restore it from version control",
            notebook=name,
        ) from None
    except RecursionError:  # json's parser refuses what the interpreter's stack cannot hold
        raise NotebookReadError(
            "not notebook JSON (it nests lists and objects too deeply)",
            fix="restore it from version control, or save it again from Jupyter",
            notebook=name,
        ) from None
    return parse_notebook(document, name, hashlib.sha256(data).hexdigest())


def parse_notebook(document: object, name: str, sha256: str = "") -> NotebookFile:
    if not isinstance(document, dict) or "nbformat" not in document:
        raise NotebookReadError(
            "not a notebook: the JSON has no 'nbformat' field",
            fix="pass an .ipynb file saved by Jupyter",
            notebook=name,
        )
    version = document.get("nbformat")
    if not isinstance(version, int) or version < MIN_NBFORMAT:
        raise NotebookFormatError(
            f"nbformat {version} is older than {MIN_NBFORMAT}",
            fix=f"upgrade it: jupyter nbconvert --to notebook --nbformat {MIN_NBFORMAT} "
            f"--output upgraded.ipynb {name}",
            notebook=name,
        )
    if not isinstance(document.get("cells"), list):
        raise NotebookReadError(
            "not a notebook: the JSON has no 'cells' list",
            fix="open it in Jupyter and save it again",
            notebook=name,
        )
    cells = tuple(_raw_cell(i, c) for i, c in enumerate(document["cells"]))
    kernelspec = document.get("metadata", {}).get("kernelspec") or {}
    return NotebookFile(name, cells, sha256, kernelspec.get("name"))


def _raw_cell(index: int, cell: Any) -> RawCell:
    if not isinstance(cell, dict):
        return RawCell(index, "unknown", "")
    source = cell.get("source", "")
    if isinstance(source, list):
        source = "".join(source)
    metadata = cell.get("metadata") or {}
    tags = metadata.get("tags") or []
    return RawCell(
        index,
        str(cell.get("cell_type", "")),
        str(source),
        tuple(str(t) for t in tags),
        metadata,
    )
