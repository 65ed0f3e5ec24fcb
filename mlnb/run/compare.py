"""What differs between two runs: parameters, stage keys and statuses, metrics, notebook."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def diff_runs(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    params_a, params_b = a.get("parameters") or {}, b.get("parameters") or {}
    parameters = {
        name: {"a": params_a.get(name), "b": params_b.get(name)}
        for name in sorted(set(params_a) | set(params_b))
        if params_a.get(name) != params_b.get(name) or (name in params_a) != (name in params_b)
    }
    stages_a = {s["name"]: s for s in a.get("stages") or []}
    stages_b = {s["name"]: s for s in b.get("stages") or []}
    stages = {}
    for name in [*stages_a, *(n for n in stages_b if n not in stages_a)]:
        sa, sb = stages_a.get(name) or {}, stages_b.get(name) or {}
        if sa.get("cache_key") != sb.get("cache_key") or sa.get("status") != sb.get("status"):
            stages[name] = {
                "key_changed": sa.get("cache_key") != sb.get("cache_key"),
                "a": {"cache_key": sa.get("cache_key"), "status": sa.get("status")},
                "b": {"cache_key": sb.get("cache_key"), "status": sb.get("status")},
            }
    metrics_a, metrics_b = a.get("metrics") or {}, b.get("metrics") or {}
    metrics = {}
    for name in sorted(set(metrics_a) | set(metrics_b)):
        va, vb = metrics_a.get(name), metrics_b.get(name)
        delta = None
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
            delta = vb - va
        metrics[name] = {"a": va, "b": vb, "delta": delta}
    nb_a, nb_b = a.get("notebook") or {}, b.get("notebook") or {}
    return {
        "a": a.get("run_id"),
        "b": b.get("run_id"),
        "notebook": None
        if nb_a.get("sha256") == nb_b.get("sha256") and nb_a.get("path") == nb_b.get("path")
        else {"a": nb_a, "b": nb_b},
        "parameters": parameters,
        "stages": stages,
        "metrics": metrics,
        "status": {"a": a.get("status"), "b": b.get("status")},
    }
