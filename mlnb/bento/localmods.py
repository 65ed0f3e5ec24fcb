"""Modules beside the notebook that a Bento must carry: what the stages and the model import.

A notebook that does ``from features import DayOfWeek`` (``features.py`` next to it) trains a
model whose pickle refers to ``features``; the Bento then needs that file to load the model.
The build copies every local module the cells import (as :func:`mlnb.run.keys.local_refs`
finds them), and those the model's pickle names, into ``notebook_modules/`` in the Bento,
which the generated serve-code module puts first on ``sys.path``. A local module may not take
the name of one of the Bento's own modules (``service``, ``mlnb_serve_code``): the notebook's
``import`` would get the Bento's module instead, so the build refuses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mlnb.errors import ServeCodeError
from mlnb.pipeline import Pipeline
from mlnb.run.keys import local_refs

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
    """``notebook_modules/<path relative to the notebook>`` -> the module's file, sorted."""
    sources = [*pipeline.setup_sources, *(s for stage in pipeline.stages for s in stage.sources)]
    found = set(local_refs(sources, base_dir).modules)
    tops = {module.split(".")[0] for module in model_modules}
    found |= set(local_refs([f"import {top}" for top in sorted(tops)], base_dir).modules)
    files = {}
    for path in sorted(found):
        relative = Path(path).resolve().relative_to(base_dir.resolve()).as_posix()
        files[f"{FOLDER}/{relative}"] = Path(path)
    return files


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
