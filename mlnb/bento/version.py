"""Names and content-derived versions of models and Bentos.

A Bento's version hashes what decides its behaviour: the serve code, the model's tag (itself
a hash of the model files), the format, the request schema, the pins, the Python version,
the templates and mlnb's runtime files. Building the same run twice gives the same tag; the
run id is a label, not part of the version, so two runs with identical content share a Bento.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlnb.bento.folder import runtime_files

LENGTH = 12


def bento_name(notebook: str) -> str:
    """A BentoML name from the notebook's name: ``Breast Cancer.ipynb`` -> ``breast_cancer``."""
    stem = Path(notebook).stem.lower()
    name = re.sub(r"[^a-z0-9]+", "_", stem).strip("_")
    if not name or not name[0].isalpha():
        name = f"nb_{name}" if name else "notebook"
    return name[:50]


def class_name(name: str) -> str:
    """``breast_cancer`` -> ``BreastCancer``."""
    return "".join(part.capitalize() for part in name.split("_") if part) or "Service"


def digest(files: Mapping[str, bytes | Path]) -> str:
    """A short hash of named files (bytes in memory or paths)."""
    h = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        data = content if isinstance(content, bytes) else Path(content).read_bytes()
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:LENGTH]


CONVERTERS = ("skl2onnx", "onnx", "onnxmltools", "onnxconverter-common")


def model_digest(files: Mapping[str, bytes | Path], model_format: str, native: Path) -> str:
    """The version of a stored model.

    A native model is named by its files. A converted one is named by what decides the
    conversion (the trained model's file, the feeding spec and the converters' versions),
    not by the ONNX bytes: a converter that writes the same graph with other bytes from one
    process to the next must not make the same run a new model and a new Bento.
    """
    if model_format != "onnx":
        return digest(files)
    from importlib import metadata

    versions = []
    for name in CONVERTERS:
        try:
            versions.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    identity: dict[str, bytes | Path] = {
        name: content for name, content in files.items() if name != "model.onnx"
    }
    identity["native"] = native
    identity["converters"] = "\n".join(versions).encode()
    return digest(identity)


def runtime_digest() -> str:
    return digest(dict(runtime_files().items()))


def content_version(**parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]
