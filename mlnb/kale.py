"""Reading Kale-tagged notebooks, so people can bring the notebooks they already have.

Kale's tags: ``imports`` and ``functions`` (run before every step), ``pipeline-parameters``,
``pipeline-metrics``, ``skip``, ``step:NAME`` (older notebooks: ``block:NAME``) and
``prev:NAME``. An untagged cell joins the group above it; cells of one step may be spread over
the notebook. Kale's resource tags (``limit:``, ``annotation:``, ``label:``, ``image:``) are
accepted and ignored: they concern a Kubeflow cluster, not the pipeline's shape.

Kale has no way to name a step's model, so a step's cells may carry mlnb's own options object
in ``cell.metadata.mlnb`` (``{"version": 1, "model": "clf", "metrics": ["accuracy"]}``), and
``mlnb:skip`` means what Kale's ``skip`` means. mlnb's stage tags and ``%%mlnb`` lines are not
mixed with Kale's steps: a notebook with both is refused with the two ways out, since either
reading would silently drop the other's tags.
"""

from __future__ import annotations

import json
import re

from mlnb.cell_numbers import cell_label
from mlnb.errors import CellRef, MixedTagsError, StageOptionsError, TwoStageTagsError
from mlnb.layout import Layout, StageDraft
from mlnb.notebook import NotebookFile, RawCell
from mlnb.tags import METADATA_KEY, SKIP_TAG, StageOptions, options_from_metadata

SETUP_TAGS = frozenset({"imports", "functions"})
STEP_PREFIXES = ("step:", "block:")
KIND = "step"
_MAGIC_LINE = re.compile(r"^\s*%%mlnb(\s|$)")
_OPTION_FIELDS = ("model", "metrics", "outputs")


def is_kale_notebook(notebook: NotebookFile) -> bool:
    """True when the notebook uses Kale's step tags (and no mlnb stage marks).

    Raises :class:`MixedTagsError` when it uses both.
    """
    step_cell = next(
        (c for c in notebook.code_cells if any(t.startswith(STEP_PREFIXES) for t in c.tags)), None
    )
    if step_cell is None:
        return False
    mlnb_cell = next((c for c in notebook.code_cells if _mlnb_mark(c) is not None), None)
    if mlnb_cell is not None:
        raise _mixed(notebook, step_cell, mlnb_cell)
    return True


def _mlnb_mark(cell: RawCell) -> str | None:
    """The mlnb stage tag or ``%%mlnb`` line of a cell, if it has one."""
    tag = next((t for t in cell.tags if t.startswith("mlnb:") and t != SKIP_TAG), None)
    if tag is not None:
        return tag
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return first.strip() if _MAGIC_LINE.match(first) else None


def _mixed(notebook: NotebookFile, step_cell: RawCell, mlnb_cell: RawCell) -> Exception:
    step_tag = next(t for t in step_cell.tags if t.startswith(STEP_PREFIXES))
    mark = _mlnb_mark(mlnb_cell) or ""
    step_ref = CellRef.of(step_cell.index, step_cell.source)
    mlnb_ref = CellRef.of(mlnb_cell.index, mlnb_cell.source)
    what = "a %%mlnb line" if mark.startswith("%%") else f"the tag {mark}"
    options = json.dumps({"version": 1, "model": "clf", "metrics": ["accuracy"]})
    return MixedTagsError(
        f"the notebook has Kale step tags ({step_ref}: {step_tag}) and mlnb stage marks "
        f"({mlnb_ref}: {mark}); mlnb reads one kind per notebook and would ignore the other",
        fix=f"to keep the Kale steps, remove {what} from {cell_label(mlnb_cell.index)} (to name a "
        f'step\'s model, give one of its cells the metadata "{METADATA_KEY}": {options}); '
        "or, to use mlnb's stages, replace the step:/block:/prev: tags with "
        "mlnb:data, mlnb:train and mlnb:serve tags (and skip with mlnb:skip)",
        notebook=notebook.path,
        cell=mlnb_ref,
    )


def kale_layout(notebook: NotebookFile) -> Layout:
    layout = Layout(notebook.path, "kale")
    steps: dict[str, StageDraft] = {}
    options_from: dict[str, dict[str, int]] = {}  # step -> option field -> cell that set it
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
        if "skip" in tags or SKIP_TAG in tags:
            layout.skipped_cells.append(cell.index)
            continue
        owner: StageDraft | None = None
        if "pipeline-parameters" in tags:
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
            current = owner = steps[name]
            prevs = [t.split(":", 1)[1] for t in cell.tags if t.startswith("prev:")]
            assert current.declared_deps is not None
            current.declared_deps.extend(p for p in prevs if p not in current.declared_deps)
            current.add(cell.index, cell.source)
        elif current is not None:
            owner = current
            current.add(cell.index, cell.source)
        else:
            _add_setup(layout, cell.index, cell.source)
        _apply_options(layout, cell, owner, options_from)
    return layout


def _apply_options(
    layout: Layout,
    cell: RawCell,
    step: StageDraft | None,
    options_from: dict[str, dict[str, int]],
) -> None:
    """Merge a cell's ``metadata.mlnb`` into its step's options; a field set twice must agree."""
    raw = cell.metadata.get(METADATA_KEY)
    if raw is None:
        return
    ref = layout.cell_ref(cell.index)
    options = options_from_metadata(raw, cell=ref, notebook=layout.notebook)
    if step is None:
        raise StageOptionsError(
            f"cell.metadata.{METADATA_KEY} is on a cell that belongs to no step "
            "(imports, functions, parameters or metrics)",
            fix=f"move the {METADATA_KEY!r} metadata to a cell of the step that makes the model",
            notebook=layout.notebook,
            cell=ref,
        )
    seen = options_from.setdefault(step.name, {})
    merged = {key: getattr(step.options, key) for key in _OPTION_FIELDS}
    for key in _OPTION_FIELDS:
        value = getattr(options, key)
        if not value:
            continue
        if merged[key] and merged[key] != value:
            other = layout.cell_ref(seen[key])
            raise StageOptionsError(
                f"step {step.name!r} gets {key!r} twice: {merged[key]!r} from {other} and "
                f"{value!r} from this cell's metadata",
                fix=f"set {key!r} in the metadata of one cell of the step only",
                notebook=layout.notebook,
                cell=ref,
                stage=step.name,
            )
        merged[key] = value
        seen.setdefault(key, cell.index)
    step.options = StageOptions(**merged)


def _add_setup(layout: Layout, index: int, source: str) -> None:
    layout.setup_cells.append(index)
    layout.setup_sources.append(source)
