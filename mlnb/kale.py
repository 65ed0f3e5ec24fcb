"""Reading Kale-tagged notebooks, so people can bring the notebooks they already have.

Kale's tags: ``imports`` and ``functions`` (run before every step), ``pipeline-parameters``,
``pipeline-metrics``, ``skip``, ``step:NAME`` (older notebooks: ``block:NAME``) and
``prev:NAME``. An untagged cell joins the group above it; cells of one step may be spread over
the notebook. Kale's resource tags (``limit:``, ``annotation:``, ``label:``, ``image:``) are
accepted and ignored: they concern a Kubeflow cluster, not the pipeline's shape.
"""

from __future__ import annotations

from mlnb.errors import TwoStageTagsError
from mlnb.layout import Layout, StageDraft
from mlnb.notebook import NotebookFile
from mlnb.tags import StageOptions

SETUP_TAGS = frozenset({"imports", "functions"})
STEP_PREFIXES = ("step:", "block:")
KIND = "step"


def is_kale_notebook(notebook: NotebookFile) -> bool:
    """True when the notebook uses Kale's step tags and none of mlnb's."""
    tags = {t for c in notebook.code_cells for t in c.tags}
    has_mlnb = any(t.startswith("mlnb:") for t in tags) or any(
        c.source.lstrip().startswith("%%mlnb") for c in notebook.code_cells
    )
    return not has_mlnb and any(t.startswith(STEP_PREFIXES) for t in tags)


def kale_layout(notebook: NotebookFile) -> Layout:
    layout = Layout(notebook.path, "kale")
    steps: dict[str, StageDraft] = {}
    current: StageDraft | None = None  # None: the setup group
    for cell in notebook.code_cells:
        layout.cell_sources[cell.index] = cell.source
        step_names = [t.split(":", 1)[1] for t in cell.tags if t.startswith(STEP_PREFIXES)]
        if len(set(step_names)) > 1:
            raise TwoStageTagsError(
                f"the cell has more than one step tag ({', '.join(step_names)})",
                fix="keep one step: tag per cell; split the cell to start a second step",
                notebook=notebook.path,
                cell=layout.cell_ref(cell.index),
            )
        tags = set(cell.tags)
        if "skip" in tags:
            layout.skipped_cells.append(cell.index)
        elif "pipeline-parameters" in tags:
            if layout.parameters_cell is None:
                layout.parameters_cell = cell.index
                layout.parameters_source = cell.source
            else:  # Kale joins several parameter cells; later ones extend the first
                layout.parameters_source += "\n" + cell.source
        elif "pipeline-metrics" in tags:
            layout.metrics_cell = cell.index
        elif tags & SETUP_TAGS:
            current = None
            _add_setup(layout, cell.index, cell.source)
        elif step_names:
            name = step_names[0]
            if name not in steps:
                steps[name] = StageDraft(name, KIND, StageOptions(), declared_deps=[])
                layout.stages.append(steps[name])
            current = steps[name]
            prevs = [t.split(":", 1)[1] for t in cell.tags if t.startswith("prev:")]
            assert current.declared_deps is not None
            current.declared_deps.extend(p for p in prevs if p not in current.declared_deps)
            current.add(cell.index, cell.source)
        elif current is not None:
            current.add(cell.index, cell.source)
        else:
            _add_setup(layout, cell.index, cell.source)
    return layout


def _add_setup(layout: Layout, index: int, source: str) -> None:
    layout.setup_cells.append(index)
    layout.setup_sources.append(source)
