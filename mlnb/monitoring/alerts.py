"""Serve-time monitoring settings, drift alerts and data contract alerts (a log line, and a
webhook when set)."""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlnb.monitoring.contract_rules import DEFAULT_WINDOW as DEFAULT_CONTRACT_WINDOW
from mlnb.monitoring.contract_rules import NULL_SHARE, WindowVerdict
from mlnb.monitoring.drift import DEFAULT_PSI_THRESHOLD, FeatureDrift

logger = logging.getLogger("mlnb.monitoring")
DEFAULT_WINDOW = 1000
# A feature whose values break its range or category rule in more than this share of a
# contract window's rows raises an alert (training's own extremes are broken now and then).
DEFAULT_CONTRACT_ALERT_SHARE = 0.05


@dataclass(frozen=True)
class MonitorSettings:
    """Serve-time settings, from the environment of ``bentoml serve``."""

    window: int = DEFAULT_WINDOW
    interval: float = 2.0
    default_threshold: float = DEFAULT_PSI_THRESHOLD
    thresholds: dict[str, float] = field(default_factory=dict)
    webhook: str | None = None
    rotate_seconds: float = 60.0
    contract_window: int = DEFAULT_CONTRACT_WINDOW
    contract_alert_share: float = DEFAULT_CONTRACT_ALERT_SHARE

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
            contract_window=int(env.get("MLNB_CONTRACT_WINDOW", DEFAULT_CONTRACT_WINDOW)),
            contract_alert_share=float(
                env.get("MLNB_CONTRACT_ALERT_SHARE", DEFAULT_CONTRACT_ALERT_SHARE)
            ),
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
                payload = {"bento": self.bento, "alert": "drift", **score.to_json()}
                _post_in_background(self.webhook, payload)
        self._alerting &= {s.feature for s in drifted}


def breaking(window: WindowVerdict, share: float) -> list[dict[str, Any]]:
    """The ``(feature, rule)`` pairs a complete contract window raises an alert for: a range or
    category rule broken by more than ``share`` of its rows, a null share rule broken."""
    found = []
    for (feature, rule), count in window.violations.items():
        fraction = count / window.rows if window.rows else 0.0
        if (rule == NULL_SHARE and count) or (rule != NULL_SHARE and fraction > share):
            alert: dict[str, Any] = {"feature": feature, "rule": rule, "rows": window.rows}
            if rule == NULL_SHARE:
                alert["missing"] = window.missing.get(feature, 0)
            else:
                alert.update(violations=count, share=round(fraction, 6), threshold=share)
            found.append(alert)
    return found


class ContractAlerts:
    """Says when a feature starts breaking a contract rule over a window: once, not on every
    window while it goes on breaking it."""

    def __init__(self, bento: str, webhook: str | None, share: float) -> None:
        self.bento = bento
        self.webhook = webhook
        self.share = share
        self._alerting: set[tuple[str, str]] = set()

    def update(self, windows: Iterable[WindowVerdict]) -> None:
        for window in windows:
            found = breaking(window, self.share)
            for alert in found:
                key = (alert["feature"], alert["rule"])
                if key in self._alerting:
                    continue
                self._alerting.add(key)
                logger.warning(
                    "mlnb contract alert: %s %s breaks its %s rule over the last %d rows (%s)",
                    self.bento,
                    alert["feature"],
                    alert["rule"],
                    window.rows,
                    f"{alert['missing']} missing"
                    if alert["rule"] == NULL_SHARE
                    else f"{alert['violations']} rows",
                )
                if self.webhook:
                    _post_in_background(
                        self.webhook, {"bento": self.bento, "alert": "contract", **alert}
                    )
            self._alerting = {(a["feature"], a["rule"]) for a in found}


def _post_in_background(url: str, payload: dict[str, Any]) -> None:
    """A slow webhook never holds the monitor up."""
    threading.Thread(target=post_alert, args=(url, payload), daemon=True).start()


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
        logger.warning("mlnb alert: webhook %s failed: %s", url, exc)
