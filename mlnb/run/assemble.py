"""The notebook papermill executes: the user's cells plus mlnb's injected cells.

The source notebook is never written. Its copy gets a first cell that starts mlnb's runtime
in the kernel, a cell before and after each stage that runs (the one after saves what later
stages use and reports the stage), and, in place of each cached stage's cells, one cell that
loads its saved values. ``mlnb:skip`` cells become raw cells, so they stay visible but do not
run. Injected cells carry the tag ``mlnb-injected`` (reports hide them) and every cell has
``metadata.mlnb_run``: ``{"cell": index in the source}`` or ``{"injected": role, "stage": name}``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from mlnb.analysis import fit_arguments_in
from mlnb.run.plan import RunPlan, StagePlan, providers

INJECTED_TAG = "mlnb-injected"
META_KEY = "mlnb_run"
PARAMETERS_TAG = "parameters"
KALE_PARAMETERS_TAG = "pipeline-parameters"
_MLNB_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def assemble(
    document: dict[str, Any], plan: RunPlan, runtime_config: dict[str, Any]
) -> dict[str, Any]:
    """A new notebook document (plain JSON) for papermill to execute."""
    cells: list[dict[str, Any]] = document.get("cells", [])
    with_ids = (document.get("nbformat"), document.get("nbformat_minor", 0)) >= (4, 5)
    builder = _Builder(with_ids)
    pipeline = plan.pipeline
    owner = {index: stage for stage in plan.stages for index in stage.stage.cells}
    kept_code = set(pipeline.setup_cells)
    if pipeline.parameters_cell is not None:
        kept_code.add(pipeline.parameters_cell)
    kale_parameters = [
        i for i, c in enumerate(cells) if KALE_PARAMETERS_TAG in _tags(c) and i not in owner
    ]
    kept_code.update(kale_parameters)
    users = _users(plan)

    builder.injected("start", None, _start_source(runtime_config))
    emitted: set[int] = set()
    for index, cell in enumerate(cells):
        if index in emitted:
            continue
        if index in owner:
            span = _span(owner[index], cells, owner)
            emitted.update(span)
            _stage_block(builder, owner[index], span, cells, plan, users)
        elif cell.get("cell_type") != "code" or index in kept_code:
            builder.keep(index, cell)
        else:
            builder.raw(index, cell)
    builder.injected("finish", None, "_mlnb_run.finish()")
    if kale_parameters and pipeline.parameters_cell is not None:
        last = builder.position[kale_parameters[-1]]
        tags = builder.cells[last]["metadata"].setdefault("tags", [])
        if PARAMETERS_TAG not in tags:  # a cell tagged both ways keeps one `parameters` tag
            tags.append(PARAMETERS_TAG)

    result = {key: copy.deepcopy(value) for key, value in document.items() if key != "cells"}
    result["cells"] = builder.cells
    return result


class _Builder:
    def __init__(self, with_ids: bool) -> None:
        self.cells: list[dict[str, Any]] = []
        self.position: dict[int, int] = {}  # source index -> position in the new notebook
        self.with_ids = with_ids

    def _add(self, cell: dict[str, Any], source_index: int | None = None) -> None:
        if source_index is not None:
            self.position[source_index] = len(self.cells)
        self.cells.append(cell)

    def keep(self, index: int, cell: dict[str, Any]) -> None:
        new = copy.deepcopy(cell)
        new.setdefault("metadata", {})[META_KEY] = {"cell": index}
        self._add(new, index)

    def raw(self, index: int, cell: dict[str, Any]) -> None:
        metadata = copy.deepcopy(cell.get("metadata") or {})
        metadata["tags"] = [t for t in metadata.get("tags", []) if t != PARAMETERS_TAG]
        metadata[META_KEY] = {"cell": index, "skipped": True}
        new: dict[str, Any] = {"cell_type": "raw", "metadata": metadata, "source": cell["source"]}
        if "id" in cell:
            new["id"] = cell["id"]
        self._add(new, index)

    def injected(self, role: str, stage: str | None, source: str) -> None:
        cell: dict[str, Any] = {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {"tags": [INJECTED_TAG], META_KEY: {"injected": role, "stage": stage}},
            "outputs": [],
            "source": source,
        }
        if self.with_ids:
            cell["id"] = f"mlnb-{role}-{len(self.cells)}"
        self._add(cell)


def _stage_block(
    builder: _Builder,
    stage: StagePlan,
    span: list[int],
    cells: list[dict[str, Any]],
    plan: RunPlan,
    users: dict[str, dict[str, list[str]]],
) -> None:
    name = stage.name
    if stage.action == "cached":
        note = f"# mlnb: stage {name!r} is unchanged; its cells did not run (cached, run "
        note += f"{stage.entry['run_id'] if stage.entry else '?'}).\n"
        if stage.load:
            note += "# Load the values it saved that the stages running after it use.\n"
        builder.injected(
            "load", name, f"{note}_mlnb_run.load_stage({name!r}, {stage.load!r}, globals())"
        )
        for index in span:
            if cells[index].get("cell_type") != "code":
                builder.keep(index, cells[index])
        return
    loads = list(stage.stage.loads)
    builder.injected("begin", name, f"_mlnb_run.begin_stage({name!r}, globals(), {loads!r})")
    for index in span:
        builder.keep(index, cells[index])
    spec = {
        "stage": name,
        "kind": stage.stage.kind,
        "save": list(stage.save),
        "users": {n: users[name].get(n, []) for n in stage.save},
        "model": stage.stage.options.model,
        "metrics": list(stage.stage.options.metrics),
        "metric_names": [n for n in plan.pipeline.metric_names if n in stage.stage.defines],
        "uses": list(stage.stage.uses),
        "defines": list(stage.stage.defines),
        "read_later": _read_later(plan, name),
        "fit_arguments": fit_arguments_in(p.tree for p in plan.pipeline.stage_parses(stage.stage)),
    }
    source = f"# mlnb: stage {name!r} ran; save what later stages use and record it.\n"
    builder.injected("end", name, f"{source}_mlnb_run.end_stage(globals(), {spec!r})")


def _read_later(plan: RunPlan, name: str) -> list[str]:
    """The names the stages after ``name`` load: what it must save if it changes them."""
    stages = [s.stage for s in plan.stages]
    position = next(i for i, s in enumerate(stages) if s.name == name)
    return sorted({n for later in stages[position + 1 :] for n in later.loads})


def _span(stage: StagePlan, cells: list[dict[str, Any]], owner: dict[int, StagePlan]) -> list[int]:
    """The stage's cells; with the text cells between them when no other code interleaves."""
    first, last = min(stage.stage.cells), max(stage.stage.cells)
    between = range(first, last + 1)
    foreign = [
        i for i in between if cells[i].get("cell_type") == "code" and owner.get(i) is not stage
    ]
    return list(stage.stage.cells) if foreign else list(between)


def _users(plan: RunPlan) -> dict[str, dict[str, list[str]]]:
    """provider stage -> name -> the stages that use it from that provider."""
    found: dict[str, dict[str, list[str]]] = {s.name: {} for s in plan.stages}
    for (user, name), provider in providers(plan.pipeline).items():
        found[provider].setdefault(name, []).append(user)
    return found


def _tags(cell: dict[str, Any]) -> list[str]:
    return list((cell.get("metadata") or {}).get("tags") or [])


def _start_source(config: dict[str, Any]) -> str:
    """The first cell: import this run's mlnb, check the kernel, start the runtime.

    ``prepare`` stops the run before any stage when the kernel's environment lacks a package
    mlnb saves values with, and registers the ``%%mlnb`` magic, so stage cells written as
    ``%%mlnb data`` run although the notebook never runs ``%load_ext mlnb``.
    """
    kernel = config.get("kernel")
    return (
        "# mlnb: injected by `mlnb run` to record this run (not part of your notebook).\n"
        "try:\n"
        "    from mlnb.run import kernel_setup as _mlnb_setup\n"
        "except ImportError:  # a kernel from another environment: use this run's mlnb\n"
        "    import sys\n"
        f"    sys.path.append({_MLNB_PARENT!r})\n"
        "    from mlnb.run import kernel_setup as _mlnb_setup\n"
        f"_mlnb_setup.prepare({kernel!r})  # the packages mlnb needs here; the %%mlnb magic\n"
        "from mlnb.run import runtime as _mlnb_run\n"
        f"_mlnb_run.start({config!r})"
    )
