"""Fingerprints of values in the kernel: how a run sees what a stage changed in place.

A stage's loaded values are fingerprinted before its cells run and again after; a value whose
fingerprint moved was changed in place (``X.dropna(inplace=True)``, ``model.fit(...)``, a
function that appends to a global list). joblib's hash reads numpy buffers directly, so
frames and arrays cost one pass over their bytes. Modules, functions and classes are names,
not data, and are not fingerprinted; a value that cannot be pickled cannot be fingerprinted.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any

_NOT_DATA = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)


def fingerprint(value: Any) -> str | None:
    """A digest of ``value``'s content, or None when it is code or cannot be hashed."""
    if isinstance(value, _NOT_DATA):
        return None
    try:
        import joblib  # type: ignore[import-untyped]

        return str(joblib.hash(value, hash_name="sha1"))
    except Exception:  # unpicklable: a connection, a generator, a lock
        return None


def fingerprints(namespace: Mapping[str, Any], names: Iterable[str]) -> dict[str, str | None]:
    """Fingerprints of the names present in ``namespace``."""
    return {name: fingerprint(namespace[name]) for name in names if name in namespace}


def changed(before: Mapping[str, str | None], namespace: Mapping[str, Any]) -> list[str]:
    """The names whose value is no longer the one fingerprinted in ``before``.

    A name rebound to another object counts too: the stage made a new version of it.
    """
    moved = []
    for name, old in before.items():
        if old is None or name not in namespace:
            continue
        if fingerprint(namespace[name]) != old:
            moved.append(name)
    return sorted(moved)


def unchecked(before: Mapping[str, str | None], namespace: Mapping[str, Any]) -> list[str]:
    """Loaded data values that could not be fingerprinted (so a change would go unseen)."""
    return sorted(
        name
        for name, old in before.items()
        if old is None and name in namespace and not isinstance(namespace[name], _NOT_DATA)
    )
