"""The pipeline a notebook describes: stages, their names and dependencies, and its parameters.

``load_pipeline(path)`` is the one entry point the CLI, the magics and the server use. It reads
the notebook, groups its cells (mlnb's contract or Kale's), analyses each stage's names and
validates the whole, raising an :class:`~mlnb.errors.MlnbError` that names the cell and the fix.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlnb.analysis import BUILTIN_NAMES, CodeSyntaxError, NameUse, analyse
from mlnb.errors import (
    CellSyntaxError,
    ServeWithoutTrainError,
    StageCycleError,
    UndefinedNameError,
    UnknownStageError,
)
from mlnb.kale import is_kale_notebook, kale_layout
from mlnb.layout import Flavour, Layout, StageDraft, mlnb_layout
from mlnb.notebook import NotebookFile, read_notebook
from mlnb.parameters import Parameter, read_parameters
from mlnb.tags import StageOptions


@dataclass(frozen=True)
class Stage:
    """A named run of cells, what it defines, what it reads and the stages it needs."""

    name: str
    kind: str
    cells: tuple[int, ...]
    sources: tuple[str, ...]
    options: StageOptions
    defines: tuple[str, ...]
    uses: tuple[str, ...]
    depends_on: tuple[str, ...]

    @property
    def source(self) -> str:
        return "\n\n".join(self.sources)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "cells": list(self.cells),
            "defines": list(self.defines),
            "uses": list(self.uses),
            "depends_on": list(self.depends_on),
            "model": self.options.model,
            "metrics": list(self.options.metrics),
            "outputs": list(self.options.outputs),
        }


@dataclass(frozen=True)
class Pipeline:
    notebook: str
    flavour: Flavour
    stages: tuple[Stage, ...]
    parameters: tuple[Parameter, ...] = ()
    parameters_cell: int | None = None
    setup_cells: tuple[int, ...] = ()
    setup_sources: tuple[str, ...] = ()
    setup_defines: tuple[str, ...] = ()
    skipped_cells: tuple[int, ...] = ()
    metric_names: tuple[str, ...] = ()
    notebook_sha256: str = ""
    kernel_name: str | None = field(default=None, compare=False)

    @property
    def parameter_defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise UnknownStageError(
            f"no stage is named {name!r}",
            fix=f"use one of: {', '.join(s.name for s in self.stages) or '(no stages)'}",
            notebook=self.notebook,
        )

    def stages_of_kind(self, kind: str) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if s.kind == kind)

    def downstream(self, name: str) -> set[str]:
        """The stages that depend on ``name``, directly or not."""
        found: set[str] = set()
        frontier = {name}
        while frontier:
            frontier = {s.name for s in self.stages if set(s.depends_on) & frontier} - found
            found |= frontier
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "flavour": self.flavour,
            "stages": [s.to_json() for s in self.stages],
            "parameters": self.parameter_defaults,
            "parameter_details": [p.to_json() for p in self.parameters],
            "parameters_cell": self.parameters_cell,
            "setup_cells": list(self.setup_cells),
            "skipped_cells": list(self.skipped_cells),
            "metric_names": list(self.metric_names),
        }


def load_pipeline(path: str | Path) -> Pipeline:
    """Read, group, analyse and validate a notebook."""
    return pipeline_from_notebook(read_notebook(path))


def pipeline_from_notebook(notebook: NotebookFile) -> Pipeline:
    layout = kale_layout(notebook) if is_kale_notebook(notebook) else mlnb_layout(notebook)
    return build_pipeline(layout, notebook)


def build_pipeline(layout: Layout, notebook: NotebookFile) -> Pipeline:
    setup = _analyse_cells(layout, layout.setup_cells, layout.setup_sources)
    parameters = read_parameters(layout.parameters_source)
    parameter_names = {p.name for p in parameters}
    known_outside = BUILTIN_NAMES | setup.defines | parameter_names

    stages: list[Stage] = []
    defined_by: dict[str, str] = {}  # name -> latest earlier stage that defines it
    for draft in layout.stages:
        use = _analyse_cells(layout, draft.cells, draft.sources, stage=draft.name)
        inputs = sorted(n for n in use.reads if n in defined_by or n in parameter_names)
        missing = sorted(use.reads - known_outside - defined_by.keys())
        if missing:
            raise _undefined_name(layout, draft, missing[0])
        inferred = dict.fromkeys(defined_by[n] for n in inputs if n in defined_by)
        if draft.declared_deps is not None:
            _check_declared(layout, draft)
            depends_on = tuple(draft.declared_deps)
        else:
            depends_on = tuple(s.name for s in stages if s.name in inferred)
        stages.append(
            Stage(
                name=draft.name,
                kind=draft.kind,
                cells=tuple(draft.cells),
                sources=tuple(draft.sources),
                options=draft.options,
                defines=tuple(sorted(use.defines)),
                uses=tuple(inputs),
                depends_on=depends_on,
            )
        )
        for name in use.defines:
            defined_by[name] = draft.name

    pipeline = Pipeline(
        notebook=layout.notebook,
        flavour=layout.flavour,
        stages=tuple(stages),
        parameters=parameters,
        parameters_cell=layout.parameters_cell,
        setup_cells=tuple(layout.setup_cells),
        setup_sources=tuple(layout.setup_sources),
        setup_defines=tuple(sorted(setup.defines)),
        skipped_cells=tuple(layout.skipped_cells),
        metric_names=_kale_metric_names(layout),
        notebook_sha256=notebook.sha256,
        kernel_name=notebook.kernel_name,
    )
    _check_serve_has_train(pipeline, layout)
    _check_acyclic(pipeline, layout)
    return pipeline


def _analyse_cells(
    layout: Layout, cells: list[int], sources: list[str], stage: str | None = None
) -> NameUse:
    try:
        return analyse(sources)
    except CodeSyntaxError:
        pass
    for index, source in zip(cells, sources, strict=True):  # find the cell to name
        try:
            analyse([source])
        except CodeSyntaxError as exc:
            raise CellSyntaxError(
                f"line {exc.lineno} is not valid Python ({exc})",
                fix="correct the syntax, or tag the cell mlnb:skip",
                notebook=layout.notebook,
                cell=layout.cell_ref(index),
                stage=stage,
            ) from None
    raise AssertionError("unreachable: the cells parsed one by one")  # pragma: no cover


def _undefined_name(layout: Layout, draft: StageDraft, name: str) -> UndefinedNameError:
    cell_index = draft.cells[0]
    for i in range(len(draft.cells)):  # the first cell of the stage that reads it
        if name in analyse(draft.sources[: i + 1]).reads:
            cell_index = draft.cells[i]
            break
    later = [s.name for s in layout.stages if name in analyse(s.sources).defines]
    if later:
        message = f"stage {draft.name!r} uses {name!r} before any stage defines it"
        fix = (
            f"stage {later[0]!r} defines {name!r} later: move that code above stage "
            f"{draft.name!r}, or define {name!r} in an earlier stage"
        )
    else:
        message = f"stage {draft.name!r} uses {name!r}, which no cell defines"
        fix = (
            f"define or import {name!r} in an earlier stage or in the setup cells "
            "before the first stage"
        )
    return UndefinedNameError(
        message,
        fix=fix,
        notebook=layout.notebook,
        cell=layout.cell_ref(cell_index),
        stage=draft.name,
    )


def _check_declared(layout: Layout, draft: StageDraft) -> None:
    names = {s.name for s in layout.stages}
    for dep in draft.declared_deps or []:
        if dep not in names:
            raise UnknownStageError(
                f"step {draft.name!r} names prev:{dep}, but no step is called {dep!r}",
                fix=f"use one of: {', '.join(sorted(names))}",
                notebook=layout.notebook,
                cell=layout.cell_ref(draft.cells[0]),
                stage=draft.name,
            )


def _check_serve_has_train(pipeline: Pipeline, layout: Layout) -> None:
    serves = pipeline.stages_of_kind("serve")
    if serves and not pipeline.stages_of_kind("train"):
        raise ServeWithoutTrainError(
            f"serve stage {serves[0].name!r} has no train stage to serve a model from",
            fix="tag the cells that fit the model mlnb:train (or start them with %%mlnb train)",
            notebook=pipeline.notebook,
            cell=layout.cell_ref(serves[0].cells[0]),
            stage=serves[0].name,
        )


def _check_acyclic(pipeline: Pipeline, layout: Layout) -> None:
    sorter = graphlib.TopologicalSorter({s.name: s.depends_on for s in pipeline.stages})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        loop = list(exc.args[1])
        first = pipeline.stage(loop[0])
        raise StageCycleError(
            f"the stages depend on each other in a loop: {' -> '.join(loop)}",
            fix="remove one of these dependencies (a prev: tag) so the steps can run in order",
            notebook=pipeline.notebook,
            cell=layout.cell_ref(first.cells[0]),
            stage=first.name,
        ) from None


def _kale_metric_names(layout: Layout) -> tuple[str, ...]:
    if layout.metrics_cell is None:
        return ()
    source = layout.cell_sources.get(layout.metrics_cell, "")
    return tuple(sorted(analyse([source]).reads))
