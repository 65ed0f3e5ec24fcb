"""Modules beside the notebook that a Bento must carry: what the stages and the model import.

A notebook that does ``from features import DayOfWeek`` (``features.py`` next to it) trains a
model whose pickle refers to ``features``; the Bento then needs that file to load the model.
The build copies every local module the cells import (as :func:`mlnb.run.keys.local_refs_in`
finds them in the pipeline's parse), and those the model's pickle names, into
``notebook_modules/`` in the Bento, which the generated serve-code module puts first on
``sys.path``. A local module may not take the name of one of the Bento's own modules
(``service``, ``mlnb_serve_code``): the notebook's ``import`` would get the Bento's module
instead, so the build refuses it.
"""

from __future__ import annotations

import ast
import keyword
from collections.abc import Iterable
from pathlib import Path

from mlnb.errors import ServeCodeError
from mlnb.pipeline import Pipeline
from mlnb.run.keys import local_refs_in

FOLDER = "notebook_modules"
# The Bento's own top-level modules: service.py (BentoML imports it as ``service``) and the
# notebook's code and model load, mlnb_serve_code.py.
RESERVED = ("service", "mlnb_serve_code")


def notebook_folder(pipeline: Pipeline) -> Path:
    """The folder the notebook's kernel ran in, where its local modules live."""
    return Path(pipeline.notebook).resolve().parent


def local_modules(
    pipeline: Pipeline, base_dir: Path, model_modules: Iterable[str] = ()
) -> dict[str, Path]:
    """``notebook_modules/<path relative to the notebook>`` -> the module's file, sorted:
    the local modules the setup and stage cells import (read from the pipeline's parse of
    them) and those ``model_modules`` (what the model's pickle names) come from."""
    found = set(local_refs_in((p.tree for p in pipeline.trees()), base_dir).modules)
    tops = sorted({module.split(".")[0] for module in model_modules})
    imports: list[ast.stmt] = [
        ast.Import(names=[ast.alias(name=top)]) for top in tops if _importable(top)
    ]
    found |= set(local_refs_in([ast.Module(body=imports, type_ignores=[])], base_dir).modules)
    files = {}
    for path in sorted(found):
        relative = Path(path).resolve().relative_to(base_dir.resolve()).as_posix()
        files[f"{FOLDER}/{relative}"] = Path(path)
    return files


def _importable(name: str) -> bool:
    """Whether ``import name`` is Python (a pickle may name any module)."""
    return name.isidentifier() and not keyword.iskeyword(name)


def top_names(files: Iterable[str]) -> set[str]:
    """The importable names of carried files (``notebook_modules/features.py`` -> features)."""
    names = set()
    for relative in files:
        first = relative.split("/", 2)[1]
        names.add(first[:-3] if first.endswith(".py") else first)
    return names


def check_names(names: Iterable[str], notebook: str) -> None:
    """Refuse a carried local module named like one of the Bento's own modules."""
    taken = sorted(set(names) & set(RESERVED))
    if taken:
        name = taken[0]
        raise ServeCodeError(
            f"the notebook imports a module {name!r} from beside it; a Bento's {name}.py is "
            "mlnb's own generated module, so the served code would import that one instead",
            fix=f"rename {name}.py (or the {name}/ folder) beside the notebook and its imports",
            notebook=notebook,
        )
