"""The run record's shape (``runs/<id>/run.json``) as TypedDicts, and its version.

In the core because the store reads and writes records too; :mod:`mlnb.run.record` makes them.

Every record :mod:`mlnb.run.record` writes carries ``record_version`` (:data:`RECORD_VERSION`).
A record without it is version 1: written before the key existed, with the same keys, except
that records older still (before issue 20) may lack ``error.cell_index`` and each stage's
``cell_indexes`` (:func:`mlnb.run.record.with_index_keys` fills them in). Readers accept both.

``run_record.schema.json`` beside this module (:data:`SCHEMA_FILE`) is the same shape as a
JSON Schema, for other languages (a test checks it against these TypedDicts and against the
sidebar's ``labextension/src/types.ts``). A key of a class's ``_...Keys`` base is always
written; a key of the class itself (``total=False``) only when it applies. Pure core: the
standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypedDict

RECORD_VERSION = 2  # 1: records without the key (before issue 19); 2: the key is written
SCHEMA_FILE = Path(__file__).with_name("run_record.schema.json")

RunStatus = Literal["running", "succeeded", "failed"]
StageStatus = Literal["ran", "running", "cached", "failed", "not-run"]
StageAction = Literal["run", "cached"]


class NotebookInfo(TypedDict):
    """The notebook the run ran: its absolute path, its sha256 and its flavour."""

    path: str
    sha256: str
    flavour: str  # "mlnb" or "kale"


class FileRef(TypedDict):
    """A file the run read (``inputs``): its path and its sha256 (None when it is gone)."""

    path: str
    sha256: str | None


class _ArtifactKeys(TypedDict):
    path: str
    sha256: str | None
    kind: str  # "model", "training sample", "training holdout" or "file"


class ArtifactEntry(_ArtifactKeys, total=False):
    """A file the run made: the model, the training samples, or a file a stage wrote."""

    stage: str  # the stage that wrote it (kind "file")


# "class" is a Python keyword, hence the functional form.
ModelInfo = TypedDict(
    "ModelInfo",
    {"stage": str, "variable": str, "path": str, "sha256": str, "format": str, "class": str},
)
"""The model a train stage fitted: the variable, its saved object and its class."""


class Violation(TypedDict):
    """One broken rule of a data contract."""

    value: str
    column: str | None
    rule: str
    severity: str  # "error" or "warn"
    rows: int | None
    examples: list[Any]
    message: str


class _StageContractKeys(TypedDict):
    status: str  # passed | warned | failed | learned | unchecked
    file: str
    sha256: str | None
    values: dict[str, int]  # value -> rows checked (or learned from)
    violations: list[Violation]


class StageContract(_StageContractKeys, total=False):
    """A data stage's contract verdict (``stages[].contract``)."""

    unchecked: list[str]  # values handed on that the contract does not name
    absent: list[str]  # values the contract names that were not handed on
    not_learned: dict[str, str]  # value -> why no rule was learned for it


class _StageKeys(TypedDict):
    name: str
    kind: str  # data | train | serve, or step (Kale)
    cells: list[int]  # the same as cell_indexes (the older key)
    cell_indexes: list[int]  # 0-based
    depends_on: list[str]
    action: StageAction
    status: StageStatus
    seconds: float | None
    cache_key: str
    reason: str
    from_run: str | None  # the run whose result a cached stage reused
    outputs: dict[str, dict[str, Any]]  # name -> its saved object
    metrics: dict[str, float | None]


class StageEntry(_StageKeys, total=False):
    """One stage of a run: what the plan decided and what happened."""

    started_at: str
    save_seconds: float
    contract: StageContract
    loaded: list[str]  # the names a cached stage loaded for the stages after it
    changed: list[str]  # loaded values the stage changed in place
    unchecked: list[str]  # loaded values that could not be fingerprinted
    model_guessed: str  # the model variable a Kale step serves, guessed
    not_cached: str  # why the stage's result was not cached


class _ErrorKeys(TypedDict):
    stage: str | None
    cell: int | None  # the same as cell_index (the older key)
    cell_index: int | None  # 0-based
    ename: str
    evalue: str


class ErrorInfo(_ErrorKeys, total=False):
    """Why a run failed, and where."""

    first_line: str  # the failing cell's first line
    injected: str  # the role of the mlnb cell that failed ("start", "end", ...)


class _BuildKeys(TypedDict):
    bento: str  # the Bento's tag


class BuildEntry(_BuildKeys, total=False):
    """One Bento built from the run (``builds``)."""

    model: str  # the model's tag in BentoML's store
    format: str  # onnx | native
    built_at: str
    reused_from_run: str  # the run that built a Bento of the same content first


class GitInfo(TypedDict):
    """The repository holding the notebook, when there is one."""

    commit: str | None
    branch: str | None
    dirty: bool


class _EnvironmentKeys(TypedDict):
    python: str
    implementation: str
    platform: str
    executable: str
    mlnb: str
    packages: dict[str, str]  # distribution -> version


class Environment(_EnvironmentKeys, total=False):
    """The Python the run's kernel ran and the versions of the packages it imported."""

    packages_note: str  # when the versions were read from another Python than the kernel's


class ContractRef(TypedDict):
    """The data contract the run met: its file and the copy of it kept in the store."""

    file: str
    sha256: str
    object: dict[str, str]  # {path, sha256} of the stored copy


class _RunKeys(TypedDict):
    record_version: int
    run_id: str
    status: RunStatus
    notebook: NotebookInfo
    parameters: dict[str, Any]
    given_parameters: dict[str, Any]
    stages: list[StageEntry]
    notices: list[str]
    metrics: dict[str, float | None]
    model: ModelInfo | None
    training_data: dict[str, Any] | None  # columns, dtypes, rows, samples, profile
    environment: Environment | None
    git: GitInfo | None
    inputs: list[FileRef]
    artifacts: list[ArtifactEntry]
    error: ErrorInfo | None
    started_at: str
    finished_at: str | None
    seconds: float | None
    builds: list[BuildEntry]
    store: str
    executed_notebook: str | None  # relative to the store; None when the kernel never started
    kernel: str
    no_cache: bool
    mlnb_version: str
    pid: int
    host: str


class RunRecord(_RunKeys, total=False):
    """One run: ``runs/<id>/run.json``."""

    contract: ContractRef | None  # set once the run is over
    executed_notebook_from: str  # a fully cached run: the run whose executed notebook it copied
    unforeseen_changes: list[str]
    superseded_by: str  # the run that ran again on the corrected plan


def record_version(record: Mapping[str, Any]) -> int:
    """The version of a record as read: 1 for a record written before the key existed."""
    version = record.get("record_version", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else 1
