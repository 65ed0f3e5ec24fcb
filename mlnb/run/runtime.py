"""The kernel side of a run: what mlnb's injected cells call.

``start`` opens the run's event log and watches which files the notebook opens (an audit
hook, filtered to the project's folders); ``begin_stage``/``end_stage`` bracket a stage that
runs: the end saves the names later stages use, the model, the metrics and the training data
profile, and appends one JSON line to the event log; ``load_stage`` brings back a cached
stage's saved values; ``finish`` marks the end of the notebook. The parent process derives
each stage's status from these events, so what is recorded is what executed.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import sys
import time
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

from mlnb.errors import StageResultError
from mlnb.run.outputs import save_pickled, save_value, write_object

_state: _Runtime | None = None
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class _Runtime:
    def __init__(self, config: dict[str, Any]) -> None:
        self.store = Path(config["store"])
        self.events = config["events"]
        self.roots = tuple(os.path.join(r, "") for r in config.get("roots", []))
        self.ignored = tuple(
            os.path.join(p, "")
            for p in [config["store"], sys.prefix, sys.base_prefix, *config.get("ignore", [])]
        )
        self.stage: str | None = None
        self.started = 0.0
        self.before: dict[str, str | None] = {}  # fingerprints of the stage's loaded values
        self.reads: dict[str | None, set[str]] = {None: set()}
        self.writes: dict[str | None, set[str]] = {None: set()}
        self.contract = _contract_checker(config.get("contract"), self.store)

    def emit(self, event: dict[str, Any]) -> None:
        line = json.dumps(_finite(event), default=str) + "\n"
        fd = os.open(self.events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not args:
            return
        path = args[0]
        if not isinstance(path, str):
            return
        path = os.path.abspath(path)
        if not path.startswith(self.roots) or path.startswith(self.ignored):
            return
        if path.endswith((".pyc", ".ipynb")) or "__pycache__" in path:
            return
        mode = args[1] if len(args) > 1 else None
        flags = args[2] if len(args) > 2 else 0
        if isinstance(mode, str):
            writing = any(c in mode for c in "wax+")
        else:
            writing = bool(isinstance(flags, int) and flags & _WRITE_FLAGS)
        (self.writes if writing else self.reads).setdefault(self.stage, set()).add(path)


def start(config: dict[str, Any]) -> None:
    """Called by the first injected cell of the run."""
    global _state
    _state = _Runtime(config)
    sys.addaudithook(_audit)
    _state.emit(
        {
            "event": "start",
            "t": time.time(),
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "prefix": sys.prefix,
        }
    )


def _audit(event: str, args: tuple[Any, ...]) -> None:
    state = _state
    if state is not None:
        with contextlib.suppress(Exception):  # bookkeeping never breaks the user's code
            state.audit(event, args)


def _runtime() -> _Runtime:
    if _state is None:
        raise RuntimeError("mlnb's run runtime was not started (the first injected cell)")
    return _state


def begin_stage(
    stage: str, namespace: MutableMapping[str, Any] | None = None, loads: Iterable[str] = ()
) -> None:
    """Mark the stage's start; fingerprint the values it loads, to see what it changes."""
    from mlnb.run.fingerprint import fingerprints

    state = _runtime()
    state.stage = stage
    state.before = fingerprints(namespace, loads) if namespace is not None else {}
    state.started = time.time()
    state.emit({"event": "begin", "stage": stage, "t": state.started})


def end_stage(namespace: MutableMapping[str, Any], spec: dict[str, Any]) -> None:
    """Save what later stages use, the model, metrics and training data; report it."""
    from mlnb.run.fingerprint import changed, unchecked

    state = _runtime()
    stage = spec["stage"]
    code_done = time.time()
    moved = changed(state.before, namespace)
    planned = set(spec.get("defines", []))
    unplanned = [n for n in moved if n not in planned]
    read_later = set(spec.get("read_later", []))
    outputs: dict[str, Any] = {}
    users: dict[str, list[str]] = spec.get("users", {})
    save = list(spec.get("save", []))
    save += [n for n in unplanned if n in read_later and n not in save]
    for name in save:
        if name not in namespace:
            raise StageResultError(
                f"stage {stage!r} did not define {name!r}, which a later stage uses "
                "(or which its outputs list names)",
                fix=f"define {name!r} in stage {stage!r}, or remove it from the stage's outputs",
                stage=stage,
            )
        outputs[name] = save_value(namespace[name], name, stage, state.store, users.get(name, ()))
    if spec.get("kind") == "data" and state.contract is not None:
        _check_contract(state, stage, {n: namespace[n] for n in save}, outputs)
    event: dict[str, Any] = {"event": "end", "stage": stage, "outputs": outputs}
    event["changed"] = moved
    event["unplanned_changes"] = unplanned
    event["unchecked"] = unchecked(state.before, namespace)
    state.before = {}
    kale_model = _kale_model(namespace, spec)
    if kale_model:
        spec = {**spec, "model": kale_model}
        event["model_guessed"] = kale_model
    if spec.get("kind") == "train" or spec.get("model"):
        event.update(_train_results(namespace, spec, state.store, outputs))
    names = spec.get("metric_names") or []
    if names:
        found = {n: namespace[n] for n in names if _is_number(namespace.get(n))}
        event.setdefault("metrics", {}).update({k: float(v) for k, v in found.items()})
    reads = state.reads.get(stage, set()) | state.reads.get(None, set())
    writes = state.writes.get(stage, set())
    event["inputs"] = sorted(p for p in reads - writes if os.path.isfile(p))
    event["artifacts"] = sorted(p for p in writes if os.path.isfile(p))
    event["t"] = time.time()
    event["seconds"] = code_done - state.started
    event["save_seconds"] = event["t"] - code_done
    state.stage = None
    state.emit(event)


def _contract_checker(config: dict[str, Any] | None, store: Path) -> Any:
    """The run's data contract checker (None when no data stage runs)."""
    if not config:
        return None
    from mlnb.contract.worker import ContractClient
    from mlnb.run.outputs import checked_object

    text = None
    if config.get("object"):
        text = checked_object(config["object"], store, "the data contract").read_text("utf-8")
    return ContractClient(text, config["file"], config.get("sha256"), store, config.get("socket"))


def _check_contract(
    state: _Runtime, stage: str, values: dict[str, Any], outputs: dict[str, Any]
) -> None:
    """Learn or check the data stage's contract; a broken rule fails the stage here, before
    any later stage runs (its values are saved, so `mlnb contract` can learn from them)."""
    from mlnb.contract import violation_error

    report = state.contract.apply(stage, values, outputs)
    state.emit({"event": "contract", "stage": stage, "report": report, "outputs": outputs})
    if report["status"] == "failed":
        raise violation_error(report, stage)


def load_stage(
    stage: str, refs: dict[str, dict[str, Any]], namespace: MutableMapping[str, Any]
) -> None:
    """Bring back the values a cached stage saved, for the stages that run after it."""
    from mlnb.run.outputs import load_value

    state = _runtime()
    started = time.time()
    for name, ref in refs.items():
        namespace[name] = load_value(ref, state.store, name)
    state.emit(
        {"event": "loaded", "stage": stage, "names": sorted(refs), "seconds": time.time() - started}
    )


def finish() -> None:
    state = _runtime()
    if state.contract is not None:
        state.contract.close()
    state.emit({"event": "finish", "t": time.time()})


def _train_results(
    namespace: MutableMapping[str, Any],
    spec: dict[str, Any],
    store: Path,
    outputs: dict[str, Any],
) -> dict[str, Any]:
    from mlnb.run import profile

    stage = spec["stage"]
    result: dict[str, Any] = {"metrics": _metrics(namespace, spec)}
    variable = spec.get("model")
    if variable and variable not in namespace:
        raise StageResultError(
            f"train stage {stage!r} names its model {variable!r}, but no variable "
            f"{variable!r} exists after it ran",
            fix=f"assign the fitted model to {variable!r}, or name the right variable "
            "(--model VAR or cell.metadata.mlnb.model)",
            stage=stage,
        )
    if not variable:
        variable = _guess_model(namespace, spec.get("defines", []))
    if not variable:
        return result
    model = namespace[variable]
    ref = outputs.get(variable)
    if ref is None or ref["format"] not in ("joblib", "cloudpickle"):
        ref = save_pickled(model, variable, stage, store)
    kind = type(model)
    result["model"] = {
        "stage": stage,
        "variable": variable,
        "path": ref["path"],
        "sha256": ref["sha256"],
        # cloudpickle when the model holds functions or classes defined in the notebook
        "format": ref["format"],
        "class": f"{kind.__module__}.{kind.__qualname__}",
    }
    names = [*spec.get("uses", []), *spec.get("defines", [])]
    inputs = {n: namespace[n] for n in names if n in namespace}
    fitted_on = (spec.get("fit_arguments") or {}).get(variable, [])
    found = profile.find_training_data(model, inputs, fitted_on)
    if found is None:
        result["training_data"] = None
        return result
    name, frame = found
    holdout = profile.find_holdout(name, frame, inputs)
    labels = None if holdout is None else _labels_ref(holdout[0], len(holdout[1]), inputs, store)
    result["training_data"] = {
        "variable": name,
        "columns": [str(c) for c in frame.columns],
        "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
        "rows": len(frame),
        "sample": _sample_ref(profile.sample(frame), store),
        "holdout": None
        if holdout is None
        else {
            "variable": holdout[0],
            **_sample_ref(profile.sample(holdout[1]), store),
            "labels": labels,
        },
        "profile": profile.profile(frame),
    }
    return result


def _labels_ref(
    holdout: str, rows: int, inputs: MutableMapping[str, Any], store: Path
) -> dict[str, Any] | None:
    """The holdout sample's labels (same rows, same order), for permutation importance."""
    from mlnb.run import profile

    found = profile.find_labels(holdout, rows, inputs)
    if found is None:
        return None
    import pandas as pd  # type: ignore[import-untyped]

    labels = pd.DataFrame({"label": found[profile.sample_positions(rows)]})
    with contextlib.suppress(Exception):  # labels of a type parquet cannot hold: no labels
        return _sample_ref(labels, store)
    return None


def _sample_ref(frame: Any, store: Path) -> dict[str, Any]:
    sha, path = write_object(store, lambda fh: frame.to_parquet(fh))
    return {"path": path, "sha256": sha, "rows": len(frame)}


def _metrics(namespace: MutableMapping[str, Any], spec: dict[str, Any]) -> dict[str, float]:
    stage = spec["stage"]
    table = namespace.get("metrics") if "metrics" in spec.get("defines", []) else None
    table = table if isinstance(table, dict) else {}
    named = spec.get("metrics") or []
    if not named:
        return {str(k): float(v) for k, v in table.items() if _is_number(v)}
    found: dict[str, float] = {}
    for name in named:
        value = table.get(name, namespace.get(name))
        if not _is_number(value):
            where = "neither a key of the dict `metrics` nor a variable"
            if value is not None:
                where = f"{type(value).__name__}, not a number"
            raise StageResultError(
                f"train stage {stage!r} names metric {name!r}, which is {where}",
                fix=f"set metrics[{name!r}] (or a variable {name}) to a number in the stage, "
                "or drop it from the stage's metrics",
                stage=stage,
            )
        found[name] = float(value)  # type: ignore[arg-type]
    return found


def _kale_model(namespace: MutableMapping[str, Any], spec: dict[str, Any]) -> str | None:
    """A Kale step's model: the one fitted estimator it defines, when there is exactly one."""
    if spec.get("kind") != "step" or spec.get("model"):
        return None
    fitted = [n for n in spec.get("defines", []) if _is_fitted_estimator(namespace.get(n))]
    return fitted[0] if len(fitted) == 1 else None


def _is_fitted_estimator(value: Any) -> bool:
    """A model with ``fit`` and ``predict`` that scikit-learn's own check calls fitted."""
    if isinstance(value, type) or not (hasattr(value, "fit") and hasattr(value, "predict")):
        return False
    try:
        from sklearn.exceptions import NotFittedError  # type: ignore[import-untyped]
        from sklearn.utils.validation import check_is_fitted  # type: ignore[import-untyped]
    except ImportError:  # scikit-learn's convention: fitted attributes end in `_`
        return any(k.endswith("_") and not k.startswith("_") for k in vars(value))
    try:
        check_is_fitted(value)
    except NotFittedError:
        return False
    except (TypeError, ValueError):  # not a scikit-learn estimator
        return any(k.endswith("_") and not k.startswith("_") for k in vars(value))
    return True


def _guess_model(namespace: MutableMapping[str, Any], defines: Iterable[str]) -> str | None:
    candidates = [
        n
        for n in defines
        if hasattr(namespace.get(n), "fit")
        and hasattr(namespace.get(n), "predict")
        and not isinstance(namespace.get(n), type)
    ]
    if "model" in candidates:
        return "model"
    return candidates[0] if len(candidates) == 1 else None


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
