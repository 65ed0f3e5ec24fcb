"""Serve-time monitoring settings and drift alerts (a log line, and a webhook when set)."""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlnb.monitoring.drift import DEFAULT_PSI_THRESHOLD, FeatureDrift

logger = logging.getLogger("mlnb.monitoring")
DEFAULT_WINDOW = 1000


@dataclass(frozen=True)
class MonitorSettings:
    """Serve-time settings, from the environment of ``bentoml serve``."""

    window: int = DEFAULT_WINDOW
    interval: float = 2.0
    default_threshold: float = DEFAULT_PSI_THRESHOLD
    thresholds: dict[str, float] = field(default_factory=dict)
    webhook: str | None = None
    rotate_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MonitorSettings:
        env = dict(os.environ if env is None else env)
        thresholds = {}
        for item in env.get("MLNB_DRIFT_THRESHOLDS", "").split(","):
            name, _, value = item.partition("=")
            if name.strip() and value.strip():
                thresholds[name.strip()] = float(value)
        return cls(
            window=int(env.get("MLNB_DRIFT_WINDOW", DEFAULT_WINDOW)),
            interval=float(env.get("MLNB_DRIFT_INTERVAL", 2.0)),
            default_threshold=float(env.get("MLNB_DRIFT_THRESHOLD", DEFAULT_PSI_THRESHOLD)),
            thresholds=thresholds,
            webhook=env.get("MLNB_ALERT_WEBHOOK") or None,
            rotate_seconds=float(env.get("MLNB_LOG_ROTATE_SECONDS", 60.0)),
        )


class DriftAlerts:
    """Says when a feature starts drifting: once, not on every refresh while it stays so."""

    def __init__(self, bento: str, webhook: str | None) -> None:
        self.bento = bento
        self.webhook = webhook
        self._alerting: set[str] = set()

    def update(self, scores: Iterable[FeatureDrift]) -> None:
        drifted = [s for s in scores if s.drifted]
        for score in drifted:
            if score.feature in self._alerting:
                continue
            self._alerting.add(score.feature)
            logger.warning(
                "mlnb drift alert: %s %s PSI %.3f > %s over the last %d rows",
                self.bento,
                score.feature,
                score.psi,
                score.threshold,
                score.rows,
            )
            if self.webhook:
                payload = {"bento": self.bento, **score.to_json()}
                threading.Thread(  # a slow webhook never holds the monitor up
                    target=post_alert, args=(self.webhook, payload), daemon=True
                ).start()
        self._alerting &= {s.feature for s in drifted}


def post_alert(url: str, payload: dict[str, Any], timeout: float = 3.0) -> None:
    """POST an alert as JSON; a failure is logged, never raised."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except Exception as exc:  # an alert never fails anything
        logger.warning("mlnb drift alert: webhook %s failed: %s", url, exc)
