"""Every error mlnb raises on purpose: one root, structured fields, a message that names the fix.

The CLI prints ``str(error)`` and exits 2; :func:`error_response` is the one place that turns an
error into the JSON body and HTTP status the others send: the CLI's ``--json`` error, the
server extension's routes and jobs, a served model's ``/predict`` and ``/feedback`` answers.
Every subclass of :class:`MlnbError` is defined here, each with its own ``code``. Nothing here
imports IPython, tornado or BentoML (a Bento ships this module).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mlnb.cell_numbers import cell_label


@dataclass(frozen=True)
class CellRef:
    """Where in a notebook something went wrong: the cell's 0-based index and its first line.

    People read the 1-based number (``str(ref)`` says "cell 6" for ``cells[5]``).
    """

    index: int
    first_line: str

    @classmethod
    def of(cls, index: int, source: str) -> CellRef:
        first = next((line.strip() for line in source.splitlines() if line.strip()), "")
        return cls(index, first if len(first) <= 60 else first[:57] + "...")

    def __str__(self) -> str:
        return f"{cell_label(self.index)} ({self.first_line!r})"


class MlnbError(Exception):
    """The root of mlnb's errors. ``code`` is stable; the message names what to do.

    ``details``: more JSON-able keys for the error body (the server's inspect errors carry the
    ``stages`` found before validation failed); :func:`error_response` adds them.
    """

    code: ClassVar[str] = "mlnb-error"
    http_status: ClassVar[int] = 400

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        notebook: str | None = None,
        cell: CellRef | None = None,
        stage: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.fix = fix
        self.notebook = notebook
        self.cell = cell
        self.stage = stage
        self.details: dict[str, Any] | None = None if details is None else dict(details)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [part for part in (self.notebook, str(self.cell) if self.cell else None) if part]
        if self.stage and not self.cell:
            where.append(f"stage {self.stage!r}")
        text = f"{': '.join(where)}: {self.message}" if where else self.message
        return f"{text}\nFix: {self.fix}" if self.fix else text

    def to_json(self) -> dict[str, Any]:
        """The error's own fields (:func:`error_response` adds ``details``)."""
        return {
            "error": self.code,
            "message": self.message,
            "fix": self.fix,
            "notebook": self.notebook,
            "cell": None if self.cell is None else self.cell.index,
            "cell_index": None if self.cell is None else self.cell.index,
            "cell_first_line": None if self.cell is None else self.cell.first_line,
            "stage": self.stage,
        }


class NotebookReadError(MlnbError):
    """The file is missing, unreadable, or not notebook JSON."""

    code = "notebook-unreadable"
    http_status = 404


class NotebookFormatError(MlnbError):
    """The notebook is older than nbformat 4."""

    code = "notebook-format"


class UnknownTagError(MlnbError):
    code = "unknown-tag"


class UnknownMagicKindError(MlnbError):
    code = "unknown-magic-kind"


class StageOptionsError(MlnbError):
    """Bad ``%%mlnb`` options or a bad ``cell.metadata.mlnb`` object."""

    code = "bad-stage-options"


class TwoStageTagsError(MlnbError):
    code = "two-stage-tags"


class DuplicateStageError(MlnbError):
    code = "duplicate-stage"


class UndefinedNameError(MlnbError):
    code = "undefined-name"


class ServeWithoutTrainError(MlnbError):
    code = "serve-without-train"


class StageCycleError(MlnbError):
    code = "stage-cycle"


class UnknownStageError(MlnbError):
    """A reference (a Kale ``prev:``, a ``--stage`` flag) to a stage that does not exist."""

    code = "unknown-stage"


class CellSyntaxError(MlnbError):
    """A stage's cell is not valid Python, so its names cannot be read."""

    code = "syntax-error"


# --- build and serve (issue 4) ---------------------------------------------------------------


class BuildInputError(MlnbError):
    """The run cannot be built: it failed, recorded no model, or lacks its training schema."""

    code = "build-input"


class ServeCodeError(MlnbError):
    """The serve stage's code cannot become a service (a missing name, a bad ``predict``)."""

    code = "bad-serve-code"


class CredentialInServeCodeError(MlnbError):
    """The serve code holds what looks like a key, token or password."""

    code = "credential-in-serve-code"


class TemplateRenderError(MlnbError):
    """A service template is missing, refers to an undefined name or renders invalid code."""

    code = "bad-template"


class BentoBuildError(MlnbError):
    """BentoML could not store the model or build the Bento."""

    code = "bento-build-failed"
    http_status = 500


class UnknownBentoError(MlnbError):
    """``mlnb serve`` was given a tag or notebook with no Bento behind it."""

    code = "unknown-bento"
    http_status = 404


class RequestRejected(MlnbError):
    """A served model's request that breaks the training schema: answered with a 4xx.

    ``reason`` is a stable code (``missing-field``, ``wrong-type``, ...) and the body's
    ``error``; ``row`` and ``field`` say where, when the problem is in one row or field.
    ``status`` is the HTTP status it answers with (``http_status`` is not used).
    """

    code = "request-rejected"

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        status: int = 422,
        row: int | None = None,
        field: str | None = None,
        fix: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        self.reason = reason
        self.status = status
        self.row = row
        self.field = field
        self.errors = errors or []  # every problem found (up to a limit), this one first
        super().__init__(message, fix=fix)

    def summary(self) -> dict[str, Any]:
        """This problem as one item of another rejection's ``errors`` list."""
        return {"message": self.message, "row": self.row, "field": self.field, "error": self.reason}

    def to_json(self) -> dict[str, Any]:
        """A served model's error shape: ``error`` (the reason), ``message``, ``row``,
        ``field``, then ``fix`` and ``errors`` when there are any."""
        body: dict[str, Any] = {
            "error": self.reason,
            "message": self.message,
            "row": self.row,
            "field": self.field,
        }
        if self.fix:
            body["fix"] = self.fix
        if len(self.errors) > 1:
            body["errors"] = self.errors
        return body


# --- runs and the run store (mlnb run, mlnb runs, mlnb.store) ---


class UnknownParameterError(MlnbError):
    """``mlnb run -p NAME VALUE`` names no parameter of the notebook's parameters cell."""

    code = "unknown-parameter"


class RunNotFoundError(MlnbError):
    """A run id that the store does not hold."""

    code = "run-not-found"
    http_status = 404


class RunIdError(MlnbError):
    """``--run-id`` is not a valid id, or a run with that id exists already."""

    code = "bad-run-id"


class StoreError(MlnbError):
    """The store directory or its SQLite index cannot be used."""

    code = "store-error"
    http_status = 500


class StoreDiskError(StoreError):
    """Writing to the store failed for a reason of the disk: full, read-only, no permission."""

    code = "store-disk"


class StoredObjectError(StoreError):
    """A stored object is missing, or its bytes do not match the sha256 it is named by."""

    code = "store-object-damaged"


class UnsaveableOutputError(MlnbError):
    """A stage output that a later stage needs cannot be saved (raised inside the kernel)."""

    code = "unsaveable-output"


class StageResultError(MlnbError):
    """A train stage's named model or metrics are missing or unusable (raised in the kernel)."""

    code = "bad-stage-result"


# --- the Jupyter server extension (mlnb.server) ---


class BadRequestError(MlnbError):
    """A request to the server extension is missing a field or has one of the wrong type."""

    code = "bad-request"


class PathOutsideRootError(MlnbError):
    """A notebook path that leaves the Jupyter server's root directory."""

    code = "path-outside-root"
    http_status = 403


class JobNotFoundError(MlnbError):
    """A job id the server extension does not know (jobs live as long as the server)."""

    code = "job-not-found"
    http_status = 404


class JobConflictError(MlnbError):
    """A run or build of the same notebook is already going, or too many jobs are."""

    code = "job-conflict"
    http_status = 409


class JobFailedError(MlnbError):
    """A job's process ended without printing an error of its own (a signal, a crash): the
    job's ``error``, never raised."""

    code = "job-failed"
    http_status = 500


# --- reading real notebooks and running them in any kernel (issue 14) ---


class MixedTagsError(MlnbError):
    """A notebook carries both Kale's step tags and mlnb's stage tags or ``%%mlnb`` lines."""

    code = "mixed-tags"


class ParametersSyntaxError(MlnbError):
    """The parameters cell is not valid Python, so none of its parameters can be read."""

    code = "parameters-syntax-error"


class KernelPackagesError(MlnbError):
    """The kernel's environment lacks a package mlnb needs inside the kernel (raised there)."""

    code = "kernel-missing-packages"


class StageTaskError(MlnbError):
    """A stage failed inside a pipeline task (Kubeflow): the cell, its error name and message."""

    code = "stage-task-failed"


# --- mlnb build: the model ---


class ModelLoadError(MlnbError):
    """The run's model file cannot be loaded where the build runs (a module is missing)."""

    code = "model-load-failed"


# --- bounded hostile input (issue 16): JSON and YAML from outside mlnb ---


class InputLimitError(MlnbError):
    """JSON (or YAML) from outside mlnb that is too large, nested too deeply, or not valid.

    ``what`` names the input (``"the request body"``, ``"log line 12 of data.0.log"``),
    ``reason`` is ``too-large``, ``too-deep`` or ``invalid``, ``limit`` the limit it broke.
    """

    code = "input-limit"

    def __init__(
        self,
        message: str,
        *,
        what: str,
        reason: str,
        limit: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.reason = reason
        self.limit = limit
        super().__init__(message, fix=fix)


class SideEffectInServeCodeError(MlnbError):
    """The code a service runs calls a command, the network or a file write (``mlnb build``
    refuses it unless given ``--allow-side-effects``)."""

    code = "side-effect-in-serve-code"


class ContractFileError(MlnbError):
    """A data contract file (``NAME.contract.yaml``) that cannot be read or has a wrong shape."""

    code = "contract-file"


class ContractViolationError(MlnbError):
    """A data stage's values break rules of its data contract that are not marked ``warn``
    (raised in the kernel, before any later stage runs)."""

    code = "contract-violation"


class ImportanceUnavailableError(MlnbError):
    """A run whose model's global importance cannot be measured (no model, no kept rows)."""

    code = "importance-unavailable"


# --- explanations (issue 17): POST /explain and mlnb.explain ---


class ExplainError(MlnbError):
    """A model or rows that cannot be explained (a classifier with no number per row to
    explain, rows without the training columns)."""

    code = "explain-failed"


# --- labels fed back (issue 18): POST /feedback ---


class FeedbackRejected(RequestRejected):
    """A ``POST /feedback`` body that cannot be read as labels: answered with a 4xx.

    ``item`` is the index of the item at fault in a batch's ``feedback`` list (0 for a body
    of one item; None when the fault is in the body as a whole), ``field`` the field in it
    (``"label"``, ``"labels[3]"``, ``"request_id"``...).
    """

    code = "bad-feedback"

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        status: int = 422,
        item: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.item = item
        super().__init__(message, reason=reason, status=status, field=field, fix=fix)

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        body["item"] = self.item
        return body


# --- finding the store from where the user stands (issue 20) ---


class AmbiguousStoreError(StoreError):
    """Several stores below the current folder, for a command that must not guess."""

    code = "ambiguous-store"
    http_status = 409


# --- defined here for one list of codes; raised by the modules named (which re-export them) ---


class CheckUsageError(MlnbError):
    """``mlnb check``'s options that cannot be read, such as a bad ``--min`` (mlnb.check)."""

    code = "check-usage"


class MonitorLogError(MlnbError):
    """A monitoring folder or its logs that cannot be found or read (mlnb.reporting.logs)."""

    code = "monitor-logs"
    http_status = 404


class ExportError(MlnbError):
    """A pipeline that cannot be exported for Kubeflow (mlnb.export.kfp)."""

    code = "export-failed"


class GridError(MlnbError):
    """A parameter grid file that cannot be read or names unknown parameters (mlnb.grid)."""

    code = "bad-grid"


class ReleaseError(MlnbError):
    """A release that mlnb refuses: its options or its two versions (mlnb.bento.release)."""

    code = "release-refused"
    http_status = 400


class ReleaseRuleError(MlnbError):
    """A release's promote or rollback rule that cannot be read (mlnb.serving.release_rules)."""

    code = "release-rule"
    http_status = 400


class ReleaseStateError(MlnbError):
    """A release's routing file that cannot be read or changed (mlnb.serving.release_state)."""

    code = "release-state"
    http_status = 409


# --- the one error shape --------------------------------------------------------------------


def error_response(
    error: BaseException | None,
    *,
    status: int | None = None,
    message: str | None = None,
    fix: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body that answer ``error``: the one error shape, pure.

    An :class:`MlnbError` answers with its own status (a :class:`RequestRejected`'s
    ``status``, any other's ``http_status``; ``status`` is not used) and its ``to_json()``,
    ``details`` added. Anything else (or None) answers ``status`` (default 500) in
    :class:`MlnbError`'s shape, coded ``internal-error`` for a 5xx and ``http-STATUS`` below,
    saying ``message`` (default: the status's phrase) and ``fix``: never the exception's own
    text, which may hold paths or secrets (the log has it).
    """
    if isinstance(error, MlnbError):
        own = error.status if isinstance(error, RequestRejected) else error.http_status
        body = error.to_json()
        if error.details:
            body.update(error.details)
        return own, body
    code = 500 if status is None else status
    if not message:
        from http import HTTPStatus  # here, so that importing this module stays as light

        message = HTTPStatus(code).phrase
    return code, {
        "error": "internal-error" if code >= 500 else f"http-{code}",
        "message": message,
        "fix": fix,
        "notebook": None,
        "cell": None,
        "cell_index": None,
        "cell_first_line": None,
        "stage": None,
    }
