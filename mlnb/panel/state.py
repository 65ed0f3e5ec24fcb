"""The in-notebook panel in the core's terms: form fields, stage rows, history, a run process,
and the panel's state machine (:class:`PanelState`, :func:`step`): events in, what to show out.

Nothing here imports ipywidgets; :mod:`mlnb.panel.widgets` is a thin view over these.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlnb import child_process
from mlnb.errors import MlnbError
from mlnb.parameters import Parameter
from mlnb.pipeline import Pipeline
from mlnb.text_table import format_number

FIELD_KINDS = ("int", "float", "bool", "str", "choice", "fixed")


@dataclass(frozen=True)
class FormField:
    """One widget of the parameters form, typed from the parameter's default."""

    name: str
    kind: str  # one of FIELD_KINDS; "fixed" is shown but cannot be set from the form
    default: Any
    choices: tuple[str, ...] = ()
    help: str = ""


_NONE_HELP = "None, a number or text (typed as `mlnb run -p` types it)"


def form_fields(parameters: Sequence[Parameter]) -> list[FormField]:
    """A field per parameter. One whose default is None is a text field typed as ``-p``
    types it (None, True, 3, 0.5, else text): the REST API sets it to None, a number or a
    string too."""
    fields = []
    for p in parameters:
        if p.choices:
            kind = "choice"
        elif p.type_name in ("int", "float", "bool", "str"):
            kind = p.type_name
        elif p.type_name == "none":
            fields.append(FormField(p.name, "str", None, (), p.comment or _NONE_HELP))
            continue
        else:
            kind = "fixed"
        fields.append(FormField(p.name, kind, p.default, p.choices, p.comment))
    return fields


def cli_parameters(fields: Sequence[FormField], values: Mapping[str, Any]) -> list[str]:
    """``-y YAML`` giving the values that differ from the defaults (none: no argument),
    checked and written by :func:`mlnb.run_arguments.parameter_arguments`, as the REST API's
    are: a value of the wrong type is a :class:`~mlnb.errors.BadRequestError`.

    A widget's value is read as its parameter's type: a text stays a string (``"3"`` is not
    3, ``"None"`` is not None), except in the field of a parameter whose default is None,
    typed as ``-p`` types it (see :func:`form_fields`); a choice is of its default's type.
    """
    from mlnb.run.params import resolve_type
    from mlnb.run_arguments import parameter_arguments

    changed: dict[str, Any] = {}
    parameters = []
    for f in fields:
        if f.kind == "fixed" or f.name not in values:
            continue
        value = _form_value(f, values[f.name], resolve_type)
        if value == f.default and type(value) is type(f.default):
            continue
        changed[f.name] = value
        type_name = "none" if f.default is None else type(f.default).__name__
        parameters.append(Parameter(f.name, f.default, type_name))
    return parameter_arguments(parameters, changed)


def _form_value(f: FormField, value: Any, resolve_type: Callable[[str], Any]) -> Any:
    """A widget's value as its parameter's type (None, which no widget gives, kept: it is
    refused unless the default is None)."""
    if value is None:
        return None
    if f.default is None and f.kind == "str":
        return resolve_type(str(value))
    if f.kind == "choice" and not isinstance(f.default, str):  # `n = 3  # choices: 1, 3`
        typed = resolve_type(str(value))
        return float(typed) if type(f.default) is float and type(typed) is int else typed
    if f.kind in ("str", "choice"):
        return str(value)
    if f.kind == "bool":
        return bool(value)
    if f.kind == "int":
        return int(value)
    if f.kind == "float":
        return float(value)
    return value


@dataclass(frozen=True)
class StageRow:
    name: str
    kind: str
    cells: str
    status: str  # from the latest run: ran, cached, failed, not-run, running, or "-"


def stage_rows(pipeline: Pipeline, latest: Mapping[str, Any] | None) -> list[StageRow]:
    from mlnb.cell_numbers import cell_ranges  # 1-based, as JupyterLab numbers cells

    statuses = {s.get("name"): s.get("status", "-") for s in (latest or {}).get("stages", [])}
    return [
        StageRow(s.name, s.kind, cell_ranges(s.cells), str(statuses.get(s.name, "-")))
        for s in pipeline.stages
    ]


@dataclass(frozen=True)
class HistoryRow:
    run_id: str
    status: str
    started_at: str
    stages: str  # "load: cached, fit: ran, ..."
    metrics: str
    bentos: str


def history_rows(runs: Sequence[Mapping[str, Any]], limit: int = 10) -> list[HistoryRow]:
    rows = []
    for run in runs[:limit]:
        stages = ", ".join(f"{s.get('name')}: {s.get('status')}" for s in run.get("stages", []))
        metrics = ", ".join(
            f"{k}={format_number(v)}" for k, v in (run.get("metrics") or {}).items()
        )
        bentos = ", ".join(str(b.get("bento")) for b in run.get("builds") or [])
        rows.append(
            HistoryRow(
                str(run.get("run_id")),
                str(run.get("status")),
                str(run.get("started_at", ""))[:19],
                stages,
                metrics,
                bentos,
            )
        )
    return rows


def progress(record: Mapping[str, Any] | None, total: int) -> tuple[int, str]:
    """(stages finished, a line saying what is going on) for a run record being written."""
    if not record:
        return 0, "starting a kernel..."
    stages = record.get("stages", [])
    done = sum(1 for s in stages if s.get("status") in ("ran", "cached", "failed"))
    running = next((s.get("name") for s in stages if s.get("status") == "running"), None)
    status = record.get("status")
    if status == "running":
        return done, f"running stage {running}" if running else "running"
    return done, f"run {record.get('run_id')} {status}"


# --- the panel's state machine (issue 20): events in, what the panel shows out ---

SAVED_NOTE = "runs {notebook} as saved on disk: save it (Ctrl+S) to include unsaved edits"


@dataclass(frozen=True)
class RunStarted:
    """Run was pressed: ``mlnb run`` started in a process of its own."""

    run_id: str
    total: int  # stages in the pipeline
    notebook: str  # the file's name, as the status line says it


@dataclass(frozen=True)
class BuildStarted:
    """Build was pressed: ``mlnb build`` started in a process of its own."""


@dataclass(frozen=True)
class RecordSeen:
    """A poll of the store while the run goes on: its record as written so far (None: not yet)."""

    record: Mapping[str, Any] | None


@dataclass(frozen=True)
class CommandEnded:
    """The process ended. ``record`` is the run's final record (``mlnb run --json`` prints it;
    else the store's), None for a build or when the run wrote none."""

    returncode: int
    stdout: str
    stderr: str
    record: Mapping[str, Any] | None = None


PanelEvent = RunStarted | BuildStarted | RecordSeen | CommandEnded


@dataclass(frozen=True)
class PanelState:
    """Everything the panel shows about the command it runs; the view sets its widgets from this
    alone. ``history_version`` grows when a command ends: the view then reloads the runs."""

    action: str = ""  # "run", "build", or "" before the first command
    busy: bool = False
    run_id: str | None = None
    status: str = ""
    done: int = 0
    total: int = 1
    bar_style: str = ""  # ipywidgets' bar styles: "", "info", "success", "danger"
    error: str = ""
    record: Mapping[str, Any] | None = None
    history_version: int = 0

    @property
    def buttons_enabled(self) -> bool:
        """Run and Build can be pressed: nothing is running."""
        return not self.busy


def step(state: PanelState, event: PanelEvent) -> PanelState:
    """The state after ``event``. Events that do not fit (a poll after the end, an end with
    nothing running) leave the state as it is, so a late or doubled event changes nothing."""
    if isinstance(event, RunStarted):
        return PanelState(
            action="run",
            busy=True,
            run_id=event.run_id,
            status=f"{SAVED_NOTE.format(notebook=event.notebook)}; starting a kernel...",
            total=max(event.total, 1),
            bar_style="info",
            history_version=state.history_version,
        )
    if isinstance(event, BuildStarted):
        return PanelState(
            action="build",
            busy=True,
            status="building a Bento from the latest successful run...",
            bar_style="info",
            record=state.record,
            history_version=state.history_version,
        )
    if not state.busy:
        return state
    if isinstance(event, RecordSeen):
        if state.action != "run" or event.record is None:
            return state
        done, text = progress(event.record, state.total)
        return replace(state, done=min(done, state.total), status=text, record=event.record)
    return _ended(state, event)


def _ended(state: PanelState, event: CommandEnded) -> PanelState:
    ok = event.returncode == 0
    ended = replace(
        state,
        busy=False,
        bar_style="success" if ok else "danger",
        error="" if ok else error_text(event.stderr, event.stdout),
        history_version=state.history_version + 1,
    )
    if state.action == "build":
        return replace(ended, status=build_summary(event.stdout) if ok else "build failed")
    record = event.record if event.record is not None else state.record
    if record is None or record.get("run_id") != state.run_id:
        return replace(ended, status=f"run {state.run_id} failed (exit code {event.returncode})")
    stages = record.get("stages", [])
    done = sum(1 for s in stages if s.get("status") in ("ran", "cached", "failed"))
    return replace(
        ended,
        record=record,
        done=state.total if record.get("status") == "succeeded" else min(done, state.total),
        status=run_summary(record),
    )


def run_summary(record: Mapping[str, Any]) -> str:
    """``run 20261202-... succeeded in 0.41 s (3 cached)``: the status line once a run ended."""
    counts: dict[str, int] = {}
    for stage in record.get("stages", []):
        counts[str(stage.get("status"))] = counts.get(str(stage.get("status")), 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items())
    line = f"run {record.get('run_id')} {record.get('status')}"
    if isinstance(record.get("seconds"), (int, float)):
        line += f" in {float(record['seconds']):.2f} s"
    return f"{line} ({parts})" if parts else line


def build_summary(stdout: str) -> str:
    """``built NAME:VERSION (onnx)`` from what ``mlnb build --json`` printed, or that an
    existing Bento of the same content was reused, and which run built it."""
    try:
        result = child_process.read_json(stdout, ["build"])
    except MlnbError:
        return "built"
    if not isinstance(result, dict):
        return "built"
    if result.get("reused"):
        run = result.get("reused_from_run")
        source = f"built from run {run}; " if run else ""
        return f"reused the existing Bento {result.get('bento')} ({source}same content)"
    return f"built {result.get('bento')} ({result.get('format')})"


def final_record(stdout: str) -> dict[str, Any] | None:
    """The run record ``mlnb run --json`` printed, or None."""
    return child_process.run_record(stdout)


@dataclass
class CommandProcess:
    """An ``mlnb`` command in a subprocess: never in the user's kernel, never blocking it
    (:func:`mlnb.child_process.start`)."""

    argv: list[str]
    started: child_process.Started | None = field(default=None, repr=False)

    def start(self) -> CommandProcess:
        self.started = child_process.start(self.argv)
        return self

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return None if self.started is None else self.started.process

    @property
    def finished(self) -> bool:
        return self.started is not None and self.started.finished

    @property
    def returncode(self) -> int | None:
        return None if self.started is None else self.started.returncode

    def output(self) -> tuple[str, str]:
        """Standard output and error, once finished."""
        return ("", "") if self.started is None else self.started.output()


def run_command(
    notebook: Path,
    run_id: str,
    parameters: list[str],
    store: str | None,
    kernel: str | None = None,
) -> CommandProcess:
    argv = ["run", str(notebook), "--json", "--run-id", run_id, *parameters]
    if store:
        argv += ["--store", store]
    if kernel:
        argv += ["--kernel", kernel]
    return CommandProcess(argv)


def build_command(notebook: Path, store: str | None) -> CommandProcess:
    argv = ["build", str(notebook), "--json"]
    if store:
        argv += ["--store", store]
    return CommandProcess(argv)


def error_text(stderr: str, stdout: str = "") -> str:
    """What went wrong, as the panel shows it.

    A run that failed prints its record (``--json``) and nothing on stderr: the message is
    made from the record's error (the stage, the cell, IPython's error name and message).
    """
    record = child_process.run_record(stdout)
    if record is not None and record.get("error"):
        from mlnb.run.failure import failure_message

        return failure_message(record)
    return stderr.strip() or "the command failed without a message"


# --- data contracts and global importance (issue 17) ---

CONTRACT_STATES = ("passed", "warned", "failed", "learned", "unchecked")


@dataclass(frozen=True)
class ContractRow:
    """A data stage's contract verdict in a run, and its first violations as text."""

    stage: str
    status: str  # one of CONTRACT_STATES, or "-" when the run recorded none
    file: str
    violations: tuple[str, ...]
    more: int  # violations beyond those shown


def contract_rows(record: Mapping[str, Any] | None, limit: int = 3) -> list[ContractRow]:
    """One row per data stage of a run record, with up to ``limit`` violations."""
    rows = []
    for stage in (record or {}).get("stages", []):
        if stage.get("kind") != "data":
            continue
        contract = stage.get("contract") if isinstance(stage.get("contract"), Mapping) else {}
        found = [v for v in contract.get("violations") or [] if isinstance(v, Mapping)]
        rows.append(
            ContractRow(
                str(stage.get("name")),
                str(contract.get("status") or "-"),
                str(contract.get("file") or ""),
                tuple(violation_text(v) for v in found[:limit]),
                max(len(found) - limit, 0),
            )
        )
    return rows


def violation_text(violation: Mapping[str, Any]) -> str:
    """``X_train["mean radius"]: less_than_or_equal_to, 3 rows (e.g. 1000.0)``, and `warn`."""
    where = str(violation.get("value") or "")
    if violation.get("column") is not None:
        where += f"[{json.dumps(str(violation['column']))}]"
    text = f"{where}: {violation.get('rule')}"
    if isinstance(violation.get("rows"), int):
        text += f", {violation['rows']} row{'s' if violation['rows'] != 1 else ''}"
    examples = violation.get("examples") or []
    if isinstance(examples, list) and examples:
        text += " (e.g. " + ", ".join(str(e)[:40] for e in examples[:3]) + ")"
    if violation.get("severity") == "warn":
        text += " [warn]"
    return text


@dataclass(frozen=True)
class FeatureRow:
    feature: str
    contribution: str  # mean |contribution|, or "-"
    permutation: str  # mean drop of the score, ± its standard deviation, or "-"
    share: float  # of the largest value of the figure the features are ordered by, 0..1


def feature_rows(importance: Mapping[str, Any] | None, limit: int = 10) -> list[FeatureRow]:
    """The top features of an importance result (:mod:`mlnb.importance`), for a table."""
    features = [f for f in (importance or {}).get("features") or [] if isinstance(f, Mapping)]
    key = str((importance or {}).get("ordered_by"))
    scale = max([abs(float(f.get(key) or 0.0)) for f in features[:limit]] + [1e-12])
    rows = []
    for f in features[:limit]:
        mean, std = f.get("permutation_mean"), f.get("permutation_std")
        rows.append(
            FeatureRow(
                str(f.get("feature")),
                "-"
                if f.get("mean_abs_contribution") is None
                else format_number(float(f["mean_abs_contribution"])),
                "-" if mean is None else f"{format_number(float(mean))} ± {float(std or 0.0):.2g}",
                max(float(f.get(key) or 0.0), 0.0) / scale,
            )
        )
    return rows


def importance_note(importance: Mapping[str, Any]) -> str:
    """How the figures were made (methods, rows), or why they are unavailable."""
    if not importance.get("available", True):
        return f"unavailable: {importance.get('reason')}"
    parts = []
    c = importance.get("contribution") or {}
    if c.get("available"):
        exact = "exact" if c.get("exact") else "sampled"
        parts.append(
            f"mean |contribution|: {c.get('method')} SHAP ({exact}), {c.get('rows')} "
            f"{c.get('data')} rows"
        )
    else:
        parts.append(f"no contributions: {c.get('reason')}")
    p = importance.get("permutation") or {}
    if p.get("available"):
        parts.append(
            f"permutation: drop in {p.get('scoring')}, {p.get('repeats')} shuffles of "
            f"{p.get('rows')} {p.get('data')} rows"
        )
    else:
        parts.append(f"no permutation importance: {p.get('reason')}")
    return "; ".join(parts)


def importance_command(run_id: str, store: str | None) -> CommandProcess:
    """``mlnb report RUN --json --no-html``: the importance, computed (or read) in a process."""
    argv = ["report", run_id, "--json", "--no-html"]
    if store:
        argv += ["--store", store]
    return CommandProcess(argv)


def importance_from_output(stdout: str) -> dict[str, Any] | None:
    """The importance ``mlnb report --json`` printed, or None."""
    try:
        payload = child_process.read_json(stdout, ["report"])
    except MlnbError:
        return None
    found = payload.get("importance") if isinstance(payload, dict) else None
    return found if isinstance(found, dict) else None
