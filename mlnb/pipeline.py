"""The pipeline a notebook describes: stages, their names and dependencies, and its parameters.

``load_pipeline(path)`` is the one entry point the CLI, the magics and the server use. It reads
the notebook, groups its cells (mlnb's contract or Kale's), analyses each stage's names and
validates the whole, raising an :class:`~mlnb.errors.MlnbError` that names the cell and the fix.
"""

from __future__ import annotations

import dataclasses
import graphlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mlnb.analysis import (
    BUILTIN_NAMES,
    CodeSyntaxError,
    NameUse,
    ParsedCell,
    ParsedCells,
    analyse,
    analyse_parsed,
    parse_cell,
)
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
    # Every global name the stage's code reads from outside it, functions' bodies included.
    reads: tuple[str, ...] = ()
    # Names read from earlier cells and changed in place: new versions, so also in defines.
    changes: tuple[str, ...] = ()
    # Kale's prev: tags (None for mlnb's tags); depends_on adds the inferred data flow.
    declared_deps: tuple[str, ...] | None = None
    # Why the analysis cannot tell what the stage reads (%run, exec, ...); then it reads all.
    opaque: tuple[str, ...] = ()
    # The dependencies that come from data flow (for mlnb's tags: all of depends_on).
    inferred_deps: tuple[str, ...] = ()
    # The values the stage loads from before it (setup, parameters, earlier stages): the run
    # fingerprints them before and after the stage to see what it changed in place.
    loads: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return "\n\n".join(self.sources)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "cells": list(self.cells),
            "cell_indexes": list(self.cells),
            "defines": list(self.defines),
            "uses": list(self.uses),
            "depends_on": list(self.depends_on),
            "declared_depends_on": None if self.declared_deps is None else list(self.declared_deps),
            "inferred_depends_on": list(self.inferred_deps),
            "changes": list(self.changes),
            "opaque": list(self.opaque),
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
    setup_opaque: tuple[str, ...] = ()
    # Each setup and stage cell's parse (cell index -> tree), made once when the notebook is
    # read: the cache keys and the run's lineage read it instead of parsing again. Shared and
    # read-only: never change a tree (see :class:`~mlnb.analysis.ParsedCell`).
    parsed: ParsedCells = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    def parses(self, cells: Iterable[int], sources: Iterable[str]) -> tuple[ParsedCell, ...]:
        """The parse of each cell, as the pipeline holds it; a cell it does not hold with this
        source (a pipeline made by hand, say) is parsed now. Raises
        :class:`~mlnb.analysis.CodeSyntaxError` for a cell that is not Python."""
        found = []
        for index, source in zip(cells, sources, strict=True):
            held = self.parsed.get(index)
            found.append(held if held is not None and held.source == source else parse_cell(source))
        return tuple(found)

    @property
    def setup_parses(self) -> tuple[ParsedCell, ...]:
        return self.parses(self.setup_cells, self.setup_sources)

    def stage_parses(self, stage: Stage) -> tuple[ParsedCell, ...]:
        return self.parses(stage.cells, stage.sources)

    def trees(self) -> tuple[ParsedCell, ...]:
        """Every setup and stage cell's parse, in notebook order of the groups."""
        return (*self.setup_parses, *(p for s in self.stages for p in self.stage_parses(s)))

    @property
    def notices(self) -> tuple[str, ...]:
        """What the analysis could not tell, one line per stage (shown once per command)."""
        found = []
        if self.setup_opaque:
            found.append(
                f"the setup cells use {', '.join(self.setup_opaque)}, which mlnb cannot read: "
                "names no cell defines are taken to come from them"
            )
        for stage in self.stages:
            if stage.opaque:
                found.append(
                    f"stage {stage.name!r} uses {', '.join(stage.opaque)}, which mlnb cannot "
                    "read: it is treated as reading every name defined before it"
                )
        return tuple(found)

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
            "parameters_cell_index": self.parameters_cell,
            "setup_cells": list(self.setup_cells),
            "setup_cell_indexes": list(self.setup_cells),
            "skipped_cells": list(self.skipped_cells),
            "skipped_cell_indexes": list(self.skipped_cells),
            "metric_names": list(self.metric_names),
            "notices": list(self.notices),
        }

    def with_changes(self, observed: Mapping[str, Iterable[str]]) -> Pipeline:
        """The pipeline with names seen changed in place at run time added to their stages.

        A stage that changed an earlier stage's value when it last ran (a function it called
        did, say) makes a new version of it; later stages then read that version.
        """
        extra = {k: set(v) - set(self.stage(k).defines) for k, v in observed.items()}
        if not any(extra.values()):
            return self
        stages = [
            dataclasses.replace(
                stage,
                defines=tuple(sorted({*stage.defines, *extra.get(stage.name, ())})),
                changes=tuple(sorted({*stage.changes, *extra.get(stage.name, ())})),
            )
            for stage in self.stages
        ]
        return dataclasses.replace(self, stages=_link(stages, self))


def load_pipeline(path: str | Path) -> Pipeline:
    """Read, group, analyse and validate a notebook."""
    return pipeline_from_notebook(read_notebook(path))


def pipeline_from_notebook(notebook: NotebookFile) -> Pipeline:
    layout = kale_layout(notebook) if is_kale_notebook(notebook) else mlnb_layout(notebook)
    return build_pipeline(layout, notebook)


def build_pipeline(layout: Layout, notebook: NotebookFile) -> Pipeline:
    parsed: dict[int, ParsedCell] = {}
    setup = _analyse_cells(layout, layout.setup_cells, layout.setup_sources, parsed)
    parameters_cell = layout.parameters_cell
    parameters = read_parameters(
        layout.parameters_source,
        cell=None if parameters_cell is None else layout.cell_ref(parameters_cell),
        notebook=layout.notebook,
    )
    parameter_names = {p.name for p in parameters}
    known_outside = BUILTIN_NAMES | setup.defines | parameter_names

    analysed = [
        (draft, _analyse_cells(layout, draft.cells, draft.sources, parsed, stage=draft.name))
        for draft in layout.stages
    ]
    functions: dict[str, frozenset[str]] = dict(setup.functions)
    for _, use in analysed:
        functions.update(use.functions)
    stages: list[Stage] = []
    defined: set[str] = set()
    opaque_before = bool(setup.opaque)
    for draft, use in analysed:
        missing = sorted(use.reads - known_outside - defined)
        if missing and not opaque_before and not use.opaque:
            raise _undefined_name(layout, draft, missing[0], parsed)
        if draft.declared_deps is not None:
            _check_declared(layout, draft)
        known = known_outside | defined
        called = _function_reads(use.reads, functions) & known
        stages.append(
            Stage(
                name=draft.name,
                kind=draft.kind,
                cells=tuple(draft.cells),
                sources=tuple(draft.sources),
                options=draft.options,
                defines=tuple(sorted(use.defines)),
                uses=(),
                depends_on=(),
                reads=tuple(sorted(use.reads | called)),
                changes=tuple(sorted(use.changes)),
                declared_deps=None if draft.declared_deps is None else tuple(draft.declared_deps),
                opaque=use.opaque,
            )
        )
        defined |= use.defines
        opaque_before = opaque_before or bool(use.opaque)

    pipeline = Pipeline(
        notebook=layout.notebook,
        flavour=layout.flavour,
        stages=(),
        parameters=parameters,
        parameters_cell=layout.parameters_cell,
        setup_cells=tuple(layout.setup_cells),
        setup_sources=tuple(layout.setup_sources),
        setup_defines=tuple(sorted(setup.defines)),
        skipped_cells=tuple(layout.skipped_cells),
        metric_names=_kale_metric_names(layout),
        notebook_sha256=notebook.sha256,
        kernel_name=notebook.kernel_name,
        setup_opaque=setup.opaque,
        parsed=MappingProxyType(parsed),
    )
    pipeline = dataclasses.replace(pipeline, stages=_link(stages, pipeline))
    _check_serve_has_train(pipeline, layout)
    _check_acyclic(pipeline, layout)
    return pipeline


def _function_reads(names: Iterable[str], functions: Mapping[str, frozenset[str]]) -> set[str]:
    """The globals read by the notebook's functions among ``names``, transitively."""
    found: set[str] = set()
    frontier = [n for n in names if n in functions]
    seen: set[str] = set()
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        for read in functions[name]:
            found.add(read)
            if read in functions:
                frontier.append(read)
    return found


def _link(stages: Sequence[Stage], pipeline: Pipeline) -> tuple[Stage, ...]:
    """Each stage's inputs and dependencies, from what the stages before it define.

    A stage depends on the latest earlier stage that defines (or changes) each name it reads,
    and on its declared (Kale ``prev:``) steps. An opaque stage reads every name defined before
    it; a name nothing defines, read after an opaque stage, is taken to come from that stage.
    """
    parameter_names = {p.name for p in pipeline.parameters}
    outside = parameter_names | set(pipeline.setup_defines)
    linked: list[Stage] = []
    defined_by: dict[str, int] = {}  # name -> position of the latest stage that defines it
    last_opaque: int | None = None
    names = [s.name for s in stages]
    for stage in stages:
        reads = set(stage.reads) | (set(defined_by) | outside if stage.opaque else set())
        for name in sorted(reads - outside - defined_by.keys() - BUILTIN_NAMES):
            if last_opaque is not None:  # it must come from the opaque stage
                source = linked[last_opaque]
                linked[last_opaque] = dataclasses.replace(
                    source, defines=tuple(sorted({*source.defines, name}))
                )
                defined_by[name] = last_opaque
        inputs = sorted(n for n in reads if n in defined_by or n in parameter_names)
        providers = sorted({defined_by[n] for n in inputs if n in defined_by})
        inferred = tuple(linked[i].name for i in providers)
        declared = stage.declared_deps or ()
        depends = tuple(n for n in names if n in inferred or n in declared)
        linked.append(
            dataclasses.replace(
                stage,
                uses=tuple(inputs),
                depends_on=depends,
                inferred_deps=inferred,
                loads=tuple(sorted(n for n in reads if n in defined_by or n in outside)),
            )
        )
        for name in stage.defines:
            defined_by[name] = len(linked) - 1
        if stage.opaque:
            last_opaque = len(linked) - 1
    return tuple(linked)


def _analyse_cells(
    layout: Layout,
    cells: list[int],
    sources: list[str],
    parsed: dict[int, ParsedCell],
    stage: str | None = None,
) -> NameUse:
    """Parse each cell once (into ``parsed``) and analyse them as one block; the first cell
    that is not Python is named."""
    for index, source in zip(cells, sources, strict=True):
        try:
            parsed[index] = parse_cell(source)
        except CodeSyntaxError as exc:
            raise CellSyntaxError(
                f"{'the cell' if exc.lineno is None else f'line {exc.lineno}'} is not valid "
                f"Python ({exc})",
                fix="correct the syntax, or tag the cell mlnb:skip",
                notebook=layout.notebook,
                cell=layout.cell_ref(index),
                stage=stage,
            ) from None
    return analyse_parsed(parsed[index] for index in cells)


def _undefined_name(
    layout: Layout, draft: StageDraft, name: str, parsed: Mapping[int, ParsedCell]
) -> UndefinedNameError:
    def use(cells: Sequence[int]) -> NameUse:  # every stage is parsed by now
        return analyse_parsed(parsed[index] for index in cells)

    cell_index = draft.cells[0]
    for i in range(len(draft.cells)):  # the first cell of the stage that reads it
        if name in use(draft.cells[: i + 1]).reads:
            cell_index = draft.cells[i]
            break
    later = [s.name for s in layout.stages if name in use(s.cells).defines]
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
