"""What a generated service knows about itself, handed to the monitoring hooks at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUILD_KEYS = (
    "run",
    "notebook",
    "notebook_sha256",
    "git_commit",
    "git_dirty",
    "mlnb_version",
    "model_format",
)


@dataclass(frozen=True)
class ServiceInfo:
    """One Bento's identity, its request schema and the training data it was built from.

    ``monitor_dir`` is absolute: ``$MLNB_MONITOR_DIR`` when the service starts with it set,
    else ``mlnb-monitoring/<name>/<version>`` under the folder ``bentoml serve`` started in.
    ``build`` is the Bento's lineage, the same strings its labels carry (:data:`BUILD_KEYS`;
    ``"unknown"`` where the build could not tell, e.g. ``git_commit`` outside a repository).
    """

    bento_name: str
    bento_version: str
    run_id: str
    monitor_dir: Path
    task: str  # "classification" or "regression"
    classes: list[Any] | None  # class labels in the order of each row's probabilities
    features: list[dict[str, Any]]  # [{"name", "dtype", "kind", "nullable"}] in training order
    profile: dict[str, Any] | None  # run.json training_data.profile (the reference)
    prediction_profile: dict[str, Any] | None = None  # the served predictions on training rows
    # the data contract's soft rules for the features (mlnb_service.json "contract"), None
    # when the run had no contract or the Bento is older than serve-time contract checks
    contract: dict[str, Any] | None = None
    # the run's training metrics (mlnb_service.json "metrics"), e.g. {"accuracy": 0.97}
    metrics: dict[str, Any] | None = None
    # False for a version inside a release: the release's own book takes its labels
    takes_feedback: bool = True
    # run, notebook, notebook_sha256, git_commit, git_dirty, mlnb_version, model_format
    build: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"{self.bento_name}:{self.bento_version}"
