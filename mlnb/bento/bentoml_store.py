"""The BentoML edge of a build: the model store and ``bentoml build``, nothing else.

Both steps are idempotent on a content-derived version: a model or Bento whose tag exists
already is reused, not rebuilt (BentoML would refuse to overwrite it).

Whether a Bento is in the store is first looked up in the store's folder
(``$BENTOML_HOME/bentos/<name>/<version>/bento.yaml``, ``<name>/latest`` for a name alone):
``mlnb serve TAG`` then starts ``bentoml serve`` without importing BentoML itself first
(about a second). Anything that lookup does not find is asked of BentoML.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb.errors import BentoBuildError


def quiet_bentoml() -> None:
    """The environment of the BentoML processes mlnb starts: no usage tracking, whoever
    starts mlnb, and ``$PWD`` naming the folder mlnb runs in, as a shell would set it. BentoML
    moves a served Bento's processes into the Bento's folder; a service that logs where it was
    started (:func:`mlnb.serving.runtime.serving_folder`) reads that folder from ``$PWD``,
    which a parent that started mlnb in another folder without a shell leaves stale."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    with contextlib.suppress(OSError):  # a working folder removed meanwhile: leave it
        os.environ["PWD"] = os.getcwd()


def model_exists(tag: str) -> bool:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.models.get(tag)
    except NotFound:
        return False
    return True


def store_model(
    tag: str,
    files: Mapping[str, bytes | Path],
    *,
    labels: Mapping[str, str],
    metadata: Mapping[str, Any],
) -> bool:
    """Put the files into the model store under ``tag``; False when it was there already."""
    import bentoml

    if model_exists(tag):
        return False
    try:
        with bentoml.models.create(tag, labels=dict(labels), metadata=dict(metadata)) as model:
            for name, content in files.items():
                target = Path(model.path_of(name))
                if isinstance(content, bytes):
                    target.write_bytes(content)
                else:
                    shutil.copyfile(content, target)
    except Exception as exc:
        if model_exists(tag):  # a concurrent build of the same content won
            return False
        raise BentoBuildError(
            f"BentoML could not store the model {tag}: {exc}",
            fix="check that $BENTOML_HOME is writable",
        ) from None
    return True


def bento_exists(tag: str) -> bool:
    if _stored(tag) is not None:
        return True
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.bentos.get(tag)
    except NotFound:
        return False
    return True


_TAG_PART = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?")


def _stored(tag: str) -> str | None:
    """``name:version`` of a Bento found in the store's folder; None to ask BentoML."""
    name, _, version = tag.partition(":")
    if not _TAG_PART.fullmatch(name) or (version and not _TAG_PART.fullmatch(version)):
        return None  # BentoML normalises or refuses such tags: let it
    home = os.environ.get("BENTOML_HOME") or os.path.join(os.path.expanduser("~"), "bentoml")
    folder = Path(os.path.expandvars(home)) / "bentos" / name
    try:
        if not version or version == "latest":
            version = (folder / "latest").read_text().strip()
        if _TAG_PART.fullmatch(version) and (folder / version / "bento.yaml").is_file():
            return f"{name}:{version}"
    except OSError:
        pass
    return None


def build_bento(build_ctx: Path, name: str, version: str) -> bool:
    """``bentoml build`` of the folder under ``name:version``; False when it existed."""
    import bentoml

    if bento_exists(f"{name}:{version}"):
        return False
    try:
        bentoml.bentos.build_bentofile(
            str(build_ctx / "bentofile.yaml"), build_ctx=str(build_ctx), version=version
        )
    except Exception as exc:
        if bento_exists(f"{name}:{version}"):  # a concurrent build of the same content won
            return False
        raise BentoBuildError(
            f"bentoml build failed for {name}:{version}: {type(exc).__name__}: {exc}",
            fix=f"look at the generated files in {build_ctx}, or rerun with --debug",
        ) from exc
    return True


@dataclass(frozen=True)
class StoredLineage:
    """What a Bento in the store says of where it came from: its labels' run, and when."""

    run: str | None
    created: str | None  # the Bento's creation date, YYYY-MM-DD

    def describe(self) -> str:
        run = f"run {self.run}" if self.run else "a run it does not name"
        return f"built from {run} on {self.created}" if self.created else f"built from {run}"


def stored_lineage(tag: str) -> StoredLineage:
    """The run named by the ``mlnb.run`` label of the Bento ``tag``, and its creation date."""
    import bentoml

    info = bentoml.bentos.get(tag).info
    created = getattr(info, "creation_time", None)
    run = (info.labels or {}).get("mlnb.run")
    return StoredLineage(run, created.date().isoformat() if created is not None else None)


def bento_tag(tag: str) -> str:
    """The full ``name:version`` of a tag that may omit the version (the latest)."""
    stored = _stored(tag)
    if stored is not None:
        return stored
    import bentoml

    return str(bentoml.bentos.get(tag).tag)
