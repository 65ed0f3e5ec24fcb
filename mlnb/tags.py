"""The notebook contract: what a cell's tags, first line and ``metadata.mlnb`` mean.

A cell opens a stage either by a tag in ``cell.metadata.tags`` (``mlnb:train`` or
``mlnb:train:NAME``, options in ``cell.metadata.mlnb``) or by a first line
``%%mlnb train [--name NAME] [--model VAR] [--metrics a,b] [--outputs x,y]``. Both forms parse
to the same :class:`StageMark`. This module is the single source of truth for that contract;
it imports neither IPython nor anything that runs code.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mlnb.errors import (
    CellRef,
    StageOptionsError,
    TwoStageTagsError,
    UnknownMagicKindError,
    UnknownTagError,
)

STAGE_KINDS: tuple[str, ...] = ("data", "train", "serve")
TAG_PREFIX = "mlnb:"
SKIP_TAG = "mlnb:skip"
PARAMETERS_TAG = "parameters"
INJECTED_PARAMETERS_TAG = "injected-parameters"
MAGIC_NAME = "mlnb"
METADATA_KEY = "mlnb"
METADATA_VERSION = 1
_OPTION_KEYS = ("model", "metrics", "outputs")
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAGIC_LINE = re.compile(rf"^%%{MAGIC_NAME}(\s|$)")


@dataclass(frozen=True)
class StageOptions:
    """Per-stage options: the model variable, metric names, and outputs to keep."""

    model: str | None = None
    metrics: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    def to_metadata(self) -> dict[str, Any]:
        """The ``cell.metadata.mlnb`` object these options are stored as."""
        meta: dict[str, Any] = {"version": METADATA_VERSION}
        if self.model:
            meta["model"] = self.model
        if self.metrics:
            meta["metrics"] = list(self.metrics)
        if self.outputs:
            meta["outputs"] = list(self.outputs)
        return meta


@dataclass(frozen=True)
class StageMark:
    """A cell's claim to open a stage, however it was written."""

    kind: str
    name: str
    options: StageOptions = field(default_factory=StageOptions)

    @property
    def tag(self) -> str:
        return stage_tag(self.kind, self.name)

    @property
    def magic_line(self) -> str:
        parts = [f"%%{MAGIC_NAME}", self.kind]
        if self.name != self.kind:
            parts += ["--name", self.name]
        if self.options.model:
            parts += ["--model", self.options.model]
        if self.options.metrics:
            parts += ["--metrics", ",".join(self.options.metrics)]
        if self.options.outputs:
            parts += ["--outputs", ",".join(self.options.outputs)]
        return " ".join(parts)


CellRoleKind = Literal["plain", "stage", "skip", "parameters"]


@dataclass(frozen=True)
class CellRole:
    """What one code cell is to mlnb, and its source with any ``%%mlnb`` line removed."""

    role: CellRoleKind
    body: str
    mark: StageMark | None = None


def stage_tag(kind: str, name: str | None = None) -> str:
    """The tag that opens a stage: ``mlnb:KIND`` or ``mlnb:KIND:NAME``."""
    return f"{TAG_PREFIX}{kind}" if not name or name == kind else f"{TAG_PREFIX}{kind}:{name}"


def is_mlnb_tag(tag: str) -> bool:
    return tag.startswith(TAG_PREFIX)


def read_cell(
    index: int,
    source: str,
    tags: Sequence[str],
    metadata: Mapping[str, Any],
    notebook: str | None = None,
) -> CellRole:
    """Parse one code cell's tags, first line and ``metadata.mlnb`` into its role."""
    cell = CellRef.of(index, source)
    tag_marks = [m for m in (_mark_from_tag(t, cell, notebook) for t in tags) if m is not None]
    skipped = SKIP_TAG in tags
    magic = _split_magic(source)
    if magic is not None:
        magic_mark = parse_magic_line(magic[0], cell=cell, notebook=notebook)
        body = magic[1]
    else:
        magic_mark, body = None, source

    marks = tag_marks + ([magic_mark] if magic_mark is not None else [])
    distinct = list(dict.fromkeys((m.kind, m.name) for m in marks))
    if len(distinct) > 1 or (distinct and skipped):
        found = ", ".join([stage_tag(*key) for key in distinct] + ([SKIP_TAG] if skipped else []))
        raise TwoStageTagsError(
            f"the cell is marked more than once ({found})",
            fix="keep one stage tag (or one %%mlnb line) per cell; "
            "to start a second stage, split the cell",
            notebook=notebook,
            cell=cell,
        )
    options = options_from_metadata(metadata.get(METADATA_KEY), cell=cell, notebook=notebook)
    if skipped:
        return CellRole("skip", body)
    if marks:
        base = magic_mark or marks[0]
        return CellRole("stage", body, _with_options(base, options, cell, notebook))
    if PARAMETERS_TAG in tags or INJECTED_PARAMETERS_TAG in tags:
        return CellRole("parameters", body)
    return CellRole("plain", body)


def _mark_from_tag(tag: str, cell: CellRef, notebook: str | None) -> StageMark | None:
    if not is_mlnb_tag(tag) or tag == SKIP_TAG:
        return None
    parts = tag[len(TAG_PREFIX) :].split(":")
    kind = parts[0]
    if kind not in STAGE_KINDS or len(parts) > 2:
        raise UnknownTagError(
            f"unknown tag {tag!r}",
            fix="use mlnb:data, mlnb:train or mlnb:serve (optionally with :NAME), or mlnb:skip",
            notebook=notebook,
            cell=cell,
        )
    name = parts[1] if len(parts) == 2 else kind
    _check_name(name, f"tag {tag!r}", cell, notebook)
    return StageMark(kind, name)


def _split_magic(source: str) -> tuple[str, str] | None:
    """``(magic line, body)`` when the first non-blank line is a ``%%mlnb`` line."""
    stripped = source.lstrip("\n")
    first, _, rest = stripped.partition("\n")
    if not _MAGIC_LINE.match(first):
        return None
    return first, rest


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit
        raise ValueError(message)


def _magic_parser() -> _ArgumentParser:
    parser = _ArgumentParser(prog="%%mlnb", add_help=False, exit_on_error=False)
    parser.add_argument("kind")
    parser.add_argument("--name")
    parser.add_argument("--model")
    parser.add_argument("--metrics", default="")
    parser.add_argument("--outputs", default="")
    return parser


def parse_magic_line(
    line: str, *, cell: CellRef | None = None, notebook: str | None = None
) -> StageMark:
    """Parse ``%%mlnb KIND [--name N] [--model VAR] [--metrics a,b] [--outputs x,y]``."""
    text = line.strip()
    if text.startswith(f"%%{MAGIC_NAME}"):
        text = text[len(MAGIC_NAME) + 2 :]
    usage = "%%mlnb data|train|serve [--name NAME] [--model VAR] [--metrics a,b] [--outputs x,y]"
    try:
        args = _magic_parser().parse_args(shlex.split(text))
    except ValueError as exc:
        raise StageOptionsError(
            f"cannot read the %%mlnb line: {exc}",
            fix=f"write it as {usage}",
            notebook=notebook,
            cell=cell,
        ) from None
    if args.kind not in STAGE_KINDS:
        raise UnknownMagicKindError(
            f"unknown stage kind {args.kind!r} in the %%mlnb line",
            fix=f"use one of {', '.join(STAGE_KINDS)}: {usage}",
            notebook=notebook,
            cell=cell,
        )
    name = args.name or args.kind
    _check_name(name, "--name", cell, notebook)
    options = StageOptions(
        model=args.model,
        metrics=_split_list(args.metrics),
        outputs=_split_list(args.outputs),
    )
    for var in (options.model, *options.outputs):
        if var is not None:
            _check_name(var, "a variable name", cell, notebook)
    return StageMark(args.kind, name, options)


def options_from_metadata(
    raw: object, *, cell: CellRef | None = None, notebook: str | None = None
) -> StageOptions:
    """Validate a ``cell.metadata.mlnb`` object into options; absent means no options."""
    if raw is None:
        return StageOptions()

    def bad(message: str) -> StageOptionsError:
        example = '{"version": 1, "model": "model", "metrics": ["accuracy"]}'
        return StageOptionsError(
            f"cell.metadata.mlnb: {message}",
            fix=f"write an object like {example}",
            notebook=notebook,
            cell=cell,
        )

    if not isinstance(raw, Mapping):
        raise bad(f"expected an object, found {type(raw).__name__}")
    version = raw.get("version", METADATA_VERSION)
    if version != METADATA_VERSION:
        raise bad(f"version {version!r} is not supported (this mlnb reads {METADATA_VERSION})")
    unknown = sorted(set(raw) - {"version", *_OPTION_KEYS})
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)}")
    model = raw.get("model")
    if model is not None and not (isinstance(model, str) and _NAME_PATTERN.match(model)):
        raise bad(f"field 'model' must be a variable name, found {model!r}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("metrics", "outputs"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(f"field {key!r} must be a list of strings, found {value!r}")
        lists[key] = tuple(value)
    return StageOptions(model=model, metrics=lists["metrics"], outputs=lists["outputs"])


def _with_options(
    mark: StageMark, metadata_options: StageOptions, cell: CellRef, notebook: str | None
) -> StageMark:
    """Merge metadata options into a mark; a field set both ways must agree."""
    merged: dict[str, Any] = {}
    for key in _OPTION_KEYS:
        own, meta = getattr(mark.options, key), getattr(metadata_options, key)
        if own and meta and own != meta:
            raise StageOptionsError(
                f"the %%mlnb line and cell.metadata.mlnb disagree on {key!r} ({own!r} vs {meta!r})",
                fix=f"set {key!r} in one place only",
                notebook=notebook,
                cell=cell,
            )
        merged[key] = own or meta
    return StageMark(mark.kind, mark.name, StageOptions(**merged))


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _check_name(name: str, what: str, cell: CellRef | None, notebook: str | None) -> None:
    if not _NAME_PATTERN.match(name):
        raise StageOptionsError(
            f"{name!r} in {what} is not a valid name",
            fix="use letters, digits and underscores, starting with a letter",
            notebook=notebook,
            cell=cell,
        )
