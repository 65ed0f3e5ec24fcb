"""The ipywidgets view of the panel: a thin layer over :mod:`mlnb.panel.state`.

Run and Build start ``mlnb`` subprocesses; a task on the kernel's own event loop follows the
process and the run record in the store (:mod:`mlnb.panel.loop`), so the kernel stays free while
a run goes on and every widget change reaches the front end. What the panel shows of the command
comes from one state machine (:class:`mlnb.panel.state.PanelState`, :func:`~mlnb.panel.state.step`).
Run runs the notebook as saved on disk, and says so. History rows link to each run's report and
executed notebook (:mod:`mlnb.panel.links`). The latest run's
data contract verdict per data stage is shown with its first violations, and "Top features"
computes the global importance of the newest successful run's model in a process of its own
(:mod:`mlnb.importance`; read from the store's cache when it was computed before). The ``HTML``
widgets get markup built with :class:`markupsafe.Markup`, which escapes every value it is
given (names, parameters, metrics, messages); the other widgets show their values as text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w  # type: ignore[import-untyped]
from markupsafe import Markup

from mlnb.errors import MlnbError
from mlnb.importance import cached_importance
from mlnb.panel.links import Link, run_links, server_place
from mlnb.panel.loop import POLL_SECONDS, KernelLoop, follow, require
from mlnb.panel.state import (
    SAVED_NOTE,
    BuildStarted,
    CommandEnded,
    FormField,
    PanelEvent,
    PanelState,
    RunStarted,
    build_command,
    cli_parameters,
    contract_rows,
    error_text,
    feature_rows,
    form_fields,
    history_rows,
    importance_command,
    importance_from_output,
    importance_note,
    run_command,
    stage_rows,
    step,
)
from mlnb.pipeline import Pipeline, load_pipeline
from mlnb.store import Store, new_run_id
from mlnb.text_table import format_number

ERROR_COLOUR = "var(--jp-error-color1, #c0392b)"  # the theme's, light where none is loaded


class MlnbPanel:
    """Pipeline, parameters form, Run and Build, progress and history for one notebook."""

    def __init__(
        self, notebook: str | Path, store: str | None = None, kernel: str | None = None
    ) -> None:
        self.notebook = Path(notebook).resolve()
        self.store_arg = store
        self.store = Store.for_notebook(self.notebook, store)
        self.pipeline: Pipeline | None = None
        self.fields: list[FormField] = []
        self.inputs: dict[str, w.ValueWidget] = {}
        self.title = w.HTML()
        self.stages = w.HTML()
        self.form = w.VBox()
        self.kernel = w.Text(
            value=kernel or "",
            description="kernel",
            placeholder="the notebook's kernel",
            tooltip="the Jupyter kernel the run uses (mlnb run --kernel); "
            "`jupyter kernelspec list` shows the installed ones",
            style={"description_width": "initial"},
        )
        self.run_button = w.Button(
            description="Run",
            button_style="primary",
            icon="play",
            tooltip="mlnb run: " + SAVED_NOTE.format(notebook=self.notebook.name),
        )
        self.build_button = w.Button(description="Build", icon="cube")
        self.bar = w.IntProgress(value=0, min=0, max=1, description="stages")
        self.status = w.Label()
        self.error = w.HTML()
        self.history = w.HTML()
        self.contracts = w.HTML()
        self.features_button = w.Button(
            description="Top features",
            icon="bar-chart",
            tooltip="the global importance of the latest successful run's model "
            "(computed once, in a process of its own, then read from the store)",
        )
        self.features_status = w.Label()
        self.features = w.HTML()
        # A click may be handled on a subshell thread (ipykernel 7 with JupyterLab's default
        # settings): hand it to the kernel's loop, where every widget change is made.
        self.loop = KernelLoop.capture()
        self.features_button.on_click(lambda _: self._on_loop(self.start_importance))
        self.run_button.on_click(lambda _: self._on_loop(self.start_run))
        self.build_button.on_click(lambda _: self._on_loop(self.start_build))
        self.widget = w.VBox(
            [
                self.title,
                self.stages,
                self.form,
                self.kernel,
                w.HBox([self.run_button, self.build_button]),
                w.HBox([self.bar, self.status]),
                self.error,
                self.contracts,
                w.HBox([self.features_button, self.features_status]),
                self.features,
                self.history,
            ]
        )
        for widget, name in (
            (self.run_button, "run"),
            (self.build_button, "build"),
            (self.status, "status"),
            (self.error, "error"),
            (self.history, "history"),
        ):
            widget.add_class(f"mlnb-panel-{name}")  # for styles and tests
        self.state = PanelState()
        self.server = server_place()
        self._task: asyncio.Task[None] | None = None
        self._importance_task: asyncio.Task[None] | None = None
        self._importance_busy = False
        self.refresh(rebuild_form=True)

    # -- rendering ------------------------------------------------------------------------

    def refresh(self, rebuild_form: bool = False) -> None:
        try:
            self.pipeline = load_pipeline(self.notebook)
        except MlnbError as error:
            self.pipeline = None
            self.show_error(str(error))
        runs = self.store.list_runs(self.notebook)
        latest = runs[0] if runs else None
        self.title.value = str(Markup("<b>mlnb</b> · {}").format(self.notebook.name))
        if self.pipeline is not None:
            self.stages.value = _table(
                ["stage", "kind", "cells", "last status"],
                [[r.name, r.kind, r.cells, r.status] for r in stage_rows(self.pipeline, latest)],
            )
            if rebuild_form:
                self._build_form(self.pipeline)
        self.contracts.value = _contracts_html(latest)
        model_run = _model_run(runs)
        self.features_button.disabled = self.importance_busy or model_run is None
        if model_run is not None and not self.importance_busy:
            cached = cached_importance(self.store, model_run)  # a JSON read, nothing computed
            self.show_importance(cached, str(model_run["run_id"]))
        self.history.value = "<b>runs</b>" + _table(
            ["run", "status", "started", "stages", "metrics", "bento", "open"],
            [
                [r.run_id, r.status, r.started_at, r.stages, r.metrics, r.bentos, links]
                for r, links in zip(
                    history_rows(runs),
                    [_links_html(run_links(run, self.notebook, self.server)) for run in runs],
                    strict=False,  # history_rows shows the newest ten
                )
            ],
        )

    def _build_form(self, pipeline: Pipeline) -> None:
        self.fields = form_fields(pipeline.parameters)
        self.inputs = {f.name: _input_widget(f) for f in self.fields}
        self.form.children = [w.HTML("<b>parameters</b>"), *self.inputs.values()]

    def show_error(self, message: str) -> None:
        self.error.value = (
            str(
                Markup(f'<pre style="color:{ERROR_COLOUR};white-space:pre-wrap">{{}}</pre>').format(
                    message
                )
            )
            if message
            else ""
        )

    def show_importance(self, importance: dict[str, Any] | None, run_id: str) -> None:
        if importance is None:
            self.features.value = ""
            return
        head = Markup("<b>top features</b> of run <code>{}</code><br><small>{}</small>").format(
            run_id, importance_note(importance)
        )
        bar = Markup(
            "<span style='display:inline-block;height:8px;width:{:.0f}px;"
            "background:var(--jp-brand-color1, #2e86de)'>"
            "</span>"
        )
        rows = [
            [r.feature, bar.format(80 * r.share), r.contribution, r.permutation]
            for r in feature_rows(importance)
        ]
        table = _table(["feature", "", "mean |contribution|", "permutation"], rows)
        self.features.value = str(head) + table

    # -- actions: each runs on the kernel's event loop (KernelLoop.call) ----------------------

    def _on_loop(self, action: Any) -> None:
        require(self.loop).call(action)

    @property
    def importance_busy(self) -> bool:
        return self._importance_busy

    def start_importance(self) -> str | None:
        """Compute (or read from the store) the newest successful run's top features, in a
        process of its own; the status line says so while it goes."""
        loop = require(self.loop)
        run = _model_run(self.store.list_runs(self.notebook))
        if run is None or self.importance_busy:
            return None
        run_id = str(run["run_id"])
        command = importance_command(run_id, self.store_arg).start()
        loop.check()
        self._importance_busy = True
        self.features_button.disabled = True
        self.features_status.value = f"computing the top features of run {run_id}..."
        self._importance_task = loop.spawn(
            follow(command, lambda event: self._importance_ended(event, run_id)),
            name="mlnb-panel-importance",
        )
        return run_id

    def _importance_ended(self, event: PanelEvent, run_id: str) -> None:
        if not isinstance(event, CommandEnded):
            return
        require(self.loop).check()
        self._importance_busy = False
        found = importance_from_output(event.stdout) if event.returncode == 0 else None
        if found is None:
            self.features_status.value = "the top features could not be computed"
            self.show_error(error_text(event.stderr, event.stdout))
        else:
            cached = " (from the store)" if found.get("cached") else ""
            self.features_status.value = f"run {run_id}{cached}"
            self.show_importance(found, run_id)
        self.features_button.disabled = False

    def form_values(self) -> dict[str, Any]:
        return {name: widget.value for name, widget in self.inputs.items()}

    def start_run(self) -> str | None:
        """Start ``mlnb run`` on the notebook as saved, with the form's values; None when a
        command is running already."""
        loop = require(self.loop)
        if self.busy:
            return None
        try:
            argv = cli_parameters(self.fields, self.form_values())
        except MlnbError as error:  # a value of the wrong type: said, nothing started
            self.show_error(str(error))
            return None
        run_id = new_run_id()
        kernel = self.kernel.value.strip() or None
        command = run_command(self.notebook, run_id, argv, self.store_arg, kernel).start()
        total = len(self.pipeline.stages) if self.pipeline else 1
        self.emit(RunStarted(run_id, total, self.notebook.name))
        self._task = loop.spawn(
            follow(command, self.emit, lambda: self._read_run(run_id), POLL_SECONDS),
            name="mlnb-panel-run",
        )
        return run_id

    def start_build(self) -> None:
        loop = require(self.loop)
        if self.busy:
            return
        command = build_command(self.notebook, self.store_arg).start()
        self.emit(BuildStarted())
        self._task = loop.spawn(follow(command, self.emit), name="mlnb-panel-build")

    @property
    def busy(self) -> bool:
        return self.state.busy

    @property
    def last_record(self) -> dict[str, Any] | None:
        """The latest run record the panel has seen (while a run goes on, or at its end)."""
        return None if self.state.record is None else dict(self.state.record)

    async def settled(self, timeout: float | None = None) -> None:
        """Wait, on the kernel's loop, until the commands started so far have ended and the
        panel shows it (for tests: ``await panel.settled()`` in a cell)."""
        await asyncio.sleep(0)  # let clicks handed over from other threads start their command
        tasks = [t for t in (self._task, self._importance_task) if t is not None]
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout)

    def emit(self, event: PanelEvent) -> None:
        """The one way the panel's command state changes: step the state machine, then show it."""
        before = self.state
        self.state = step(before, event)
        self._show(self.state)
        if self.state.history_version != before.history_version:
            try:
                self.refresh()
            except (MlnbError, OSError) as error:  # the store went away: say so, stay usable
                self.show_error(f"{self.state.error}\n{error}".strip())

    def _show(self, state: PanelState) -> None:
        require(self.loop).check()
        self.run_button.disabled = self.build_button.disabled = not state.buttons_enabled
        self.bar.max = state.total
        self.bar.value = state.done
        self.bar.bar_style = state.bar_style
        self.status.value = state.status
        self.show_error(state.error)

    def _read_run(self, run_id: str) -> Mapping[str, Any] | None:
        try:
            return self.store.get_run(run_id)
        except MlnbError:
            return None


def _input_widget(f: FormField) -> w.ValueWidget:
    style = {"description_width": "initial"}
    common: dict[str, Any] = {"description": f.name, "style": style, "tooltip": f.help}
    if f.kind == "choice":
        options = list(f.choices)
        value = str(f.default) if str(f.default) in options else options[0]
        return w.Dropdown(options=options, value=value, **common)
    if f.kind == "bool":
        return w.Checkbox(value=bool(f.default), indent=False, **common)
    if f.kind == "int":
        return w.IntText(value=int(f.default), **common)
    if f.kind == "float":
        return w.FloatText(value=float(f.default), **common)
    if f.kind == "str":
        return w.Text(value=str(f.default), **common)
    return w.Text(value=str(f.default), disabled=True, **common)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table; text is escaped, Markup kept, and a float reads as in the CLI's tables."""
    th = Markup("<th style='text-align:left;padding:2px 8px'>{}</th>")
    td = Markup("<td style='padding:2px 8px'>{}</td>")
    head = Markup("").join(th.format(h) for h in header)
    body = Markup("").join(
        Markup("<tr>{}</tr>").format(
            Markup("").join(td.format(format_number(c) if isinstance(c, float) else c) for c in r)
        )
        for r in rows
    )
    return str(Markup("<table><tr>{}</tr>{}</table>").format(head, body))


def _model_run(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest successful run that recorded a model."""
    return next((r for r in runs if r.get("status") == "succeeded" and r.get("model")), None)


# JupyterLab's theme colours (ERROR_COLOUR too), light ones where no theme is loaded
_CONTRACT_COLOURS = {
    "passed": "var(--jp-success-color1, #1e8449)",
    "learned": "var(--jp-brand-color1, #2471a3)",
    "warned": "var(--jp-warn-color1, #b9770e)",
}


def _contracts_html(latest: Mapping[str, Any] | None) -> str:
    """Each data stage's contract verdict in the latest run, with its first violations."""
    rows = contract_rows(latest)
    if not rows:
        return ""
    chip = Markup("<b style='color:{}'>{}</b>")
    cells = []
    for row in rows:
        shown = chip.format(_CONTRACT_COLOURS.get(row.status, ERROR_COLOUR), row.status)
        if row.status in ("unchecked", "-"):
            shown = chip.format("var(--jp-ui-font-color2, #7f8c8d)", row.status)
        problems = Markup("<br>").join(row.violations)
        if row.more:
            problems += Markup("<br>and {} more").format(row.more)
        cells.append([row.stage, shown, row.file, problems])
    return "<b>data contracts</b>" + _table(["stage", "contract", "file", "violations"], cells)


def _links_html(links: list[Link]) -> Markup:
    """The row's links: JupyterLab's command linker opens a ``lab_path`` in a tab of the same
    JupyterLab; the others open in a new browser tab."""
    anchor = Markup("<a href='{}' title='{}' target='_blank' rel='noopener'{}>{}</a>")
    opens = Markup(" data-commandlinker-command='docmanager:open' data-commandlinker-args='{}'")
    shown = []
    for link in links:
        extra = opens.format(json.dumps({"path": link.lab_path})) if link.lab_path else Markup("")
        shown.append(anchor.format(link.href, link.title, extra, link.text))
    return Markup(" · ").join(shown)
