"""Stage cache keys: what a stage's result depends on, hashed.

A stage's key hashes its normalised source (comments and layout do not count), its kind and
options, the setup cells, the values of the parameters it reads, the keys of the stages it
depends on, and the local files and modules its code names. Changing a train parameter thus
changes the train stage's key and, through the chain of keys, the keys of the stages after
it, never the data stage's. Files a stage opened while running (seen by the kernel) are
checked again when a cached result is reused (see :mod:`mlnb.run.plan`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb.analysis import ParsedCell, parse_cell, parsed_cells
from mlnb.pipeline import Pipeline, Stage

# Bump when what a key covers, or how outputs are stored, changes: old entries then miss.
CACHE_FORMAT = 3  # 3: training profiles carry quantile bins (drift from counts)
_MAX_PATH_LITERAL = 1024
_MAX_PACKAGE_FILES = 500


def normalise(sources: Sequence[str]) -> str:
    """Cells as the syntax trees of the Python IPython runs, ignoring comments and layout.

    Magics are in the tree as IPython's calls with their arguments, so ``%time f(1)`` and
    ``%time f(2)`` differ, and so do two ``%%bash`` bodies.
    """
    return normalised(parse_cell(source) for source in sources)


def normalised(cells: Iterable[ParsedCell]) -> str:
    """:func:`normalise` of cells parsed already."""
    return "\n\n".join(ast.dump(cell.ipython) for cell in cells)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def canonical(value: Any) -> str:
    """A stable text form of a JSON-like value (for hashing)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


@dataclass(frozen=True)
class LocalRefs:
    """Local files a block of code names by a string literal, and local modules it imports."""

    files: tuple[str, ...]
    modules: tuple[str, ...]

    @property
    def paths(self) -> tuple[str, ...]:
        return self.files + self.modules


def local_refs(sources: Iterable[str], base_dir: Path) -> LocalRefs:
    """Absolute paths of existing files named in string literals, and of imported modules.

    Relative literals are read from ``base_dir`` (the kernel's working directory); a module is
    local when ``base_dir/NAME.py`` or a package ``base_dir/NAME/`` exists.
    """
    return local_refs_in(parsed_cells(sources), base_dir)


def local_refs_in(trees: Iterable[ast.Module], base_dir: Path) -> LocalRefs:
    """:func:`local_refs` of parsed cells (their rewritten trees, only read)."""
    files: set[str] = set()
    modules: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                path = _existing_file(node.value, base_dir)
                if path:
                    files.add(path)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    modules |= _module_files(alias.name.split(".")[0], base_dir)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules |= _module_files(node.module.split(".")[0], base_dir)
    return LocalRefs(tuple(sorted(files)), tuple(sorted(modules - files)))


def _existing_file(text: str, base_dir: Path) -> str | None:
    if not text or len(text) > _MAX_PATH_LITERAL or "\n" in text or "\0" in text:
        return None
    path = os.path.join(base_dir, os.path.expanduser(text))
    try:
        return os.path.abspath(path) if os.path.isfile(path) else None
    except (OSError, ValueError):
        return None


def _module_files(name: str, base_dir: Path) -> set[str]:
    single = base_dir / f"{name}.py"
    if single.is_file():
        return {str(single.absolute())}
    package = base_dir / name
    if (package / "__init__.py").is_file():
        found = sorted(
            str(p.absolute()) for p in package.rglob("*.py") if "__pycache__" not in p.parts
        )
        return set(found[:_MAX_PACKAGE_FILES])
    return set()


def display_path(path: str, base_dir: Path) -> str:
    """``path`` relative to the notebook's folder when it is inside it, else absolute."""
    try:
        return Path(path).relative_to(base_dir).as_posix()
    except ValueError:
        return path


@dataclass(frozen=True)
class CodeFacts:
    """What the keys take from the code alone: the hashes of the normalised setup and stage
    sources and the local files and modules they name. Read once per plan from the
    pipeline's parse; the plan's rounds (see :func:`mlnb.run.plan.make_plan`) reuse it."""

    setup_hash: str
    setup_refs: LocalRefs
    source_hashes: Mapping[str, str]  # stage -> hash of its normalised source
    stage_refs: Mapping[str, LocalRefs]

    @property
    def paths(self) -> list[str]:
        """Every file and module the code names, sorted."""
        found = set(self.setup_refs.paths)
        for refs in self.stage_refs.values():
            found |= set(refs.paths)
        return sorted(found)


def code_facts(pipeline: Pipeline, base_dir: Path) -> CodeFacts:
    setup = pipeline.setup_parses
    stages = {s.name: pipeline.stage_parses(s) for s in pipeline.stages}
    return CodeFacts(
        setup_hash=sha256_text(normalised(setup)),
        setup_refs=local_refs_in((p.tree for p in setup), base_dir),
        source_hashes={name: sha256_text(normalised(p)) for name, p in stages.items()},
        stage_refs={
            name: local_refs_in((p.tree for p in parses), base_dir)
            for name, parses in stages.items()
        },
    )


@dataclass(frozen=True)
class StageKey:
    name: str
    key: str
    components: dict[str, Any]
    file_deps: tuple[str, ...] = ()  # earlier stages that write files this one names


def stage_keys(
    pipeline: Pipeline,
    parameters: Mapping[str, Any],
    base_dir: Path,
    fingerprint: Any,
    written: Mapping[str, str] | None = None,
    code: CodeFacts | None = None,
) -> dict[str, StageKey]:
    """Every stage's key, in pipeline order.

    ``fingerprint(paths) -> {path: sha256 | None}`` hashes files (the store caches it).
    ``written`` maps files the stages wrote last time to the stage that wrote them: a stage's
    own output file is no input of it, and a file an earlier stage writes makes this stage
    depend on that one (its key, rather than the file's current content). ``code`` is
    :func:`code_facts` of the pipeline's code, when the caller has it already.
    """
    written = written or {}
    code = code or code_facts(pipeline, base_dir)
    order = {s.name: i for i, s in enumerate(pipeline.stages)}
    setup_hash, setup_refs, stage_refs = code.setup_hash, code.setup_refs, code.stage_refs
    every_path = code.paths
    hashes: Mapping[str, str | None] = fingerprint(every_path) if every_path else {}

    parameter_names = set(pipeline.parameter_defaults)
    keys: dict[str, StageKey] = {}
    for stage in pipeline.stages:
        paths, file_deps = [], []
        for path in sorted(set(setup_refs.paths) | set(stage_refs[stage.name].paths)):
            writer = written.get(path)
            if writer is None:
                paths.append(path)
            elif writer != stage.name and order.get(writer, len(order)) < order[stage.name]:
                file_deps.append(writer)
        depends = list(dict.fromkeys([*stage.depends_on, *file_deps]))
        components = {
            "format": CACHE_FORMAT,
            "kernel": pipeline.kernel_name or "python3",
            "kind": stage.kind,
            "options": _options(stage),
            "source": code.source_hashes[stage.name],
            "setup": setup_hash,
            "parameters": {n: parameters.get(n) for n in stage.uses if n in parameter_names},
            "depends_on": {d: keys[d].key for d in depends if d in keys},
            "files": {display_path(p, base_dir): hashes.get(p) for p in paths},
        }
        key = sha256_text(canonical(components))
        keys[stage.name] = StageKey(stage.name, key, components, tuple(dict.fromkeys(file_deps)))
    return keys


def _options(stage: Stage) -> dict[str, Any]:
    return {
        "model": stage.options.model,
        "metrics": list(stage.options.metrics),
        "outputs": list(stage.options.outputs),
    }


def explain_change(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str:
    """Why a stage's key differs from the one it had last time, in words."""
    if previous is None:
        return "no cached result"
    if previous.get("format") != current.get("format"):
        return "mlnb's cache format changed"
    reasons: list[str] = []
    if previous.get("source") != current.get("source"):
        reasons.append("its code changed")
    if previous.get("kind") != current.get("kind") or previous.get("options") != current.get(
        "options"
    ):
        reasons.append("its stage options changed")
    if previous.get("setup") != current.get("setup"):
        reasons.append("the setup cells changed")
    if previous.get("kernel") != current.get("kernel"):
        reasons.append("the kernel changed")
    old_params = previous.get("parameters") or {}
    for name, value in (current.get("parameters") or {}).items():
        if name not in old_params:
            reasons.append(f"it now reads parameter {name}")
        elif canonical(old_params[name]) != canonical(value):
            reasons.append(f"parameter {name} changed ({old_params[name]!r} -> {value!r})")
    old_deps = previous.get("depends_on") or {}
    for name, key in (current.get("depends_on") or {}).items():
        if name not in old_deps:
            reasons.append(f"it now reads what stage {name!r} makes")
        elif old_deps[name] != key:
            reasons.append(f"stage {name!r} changed")
    old_files = previous.get("files") or {}
    for path, sha in (current.get("files") or {}).items():
        if path not in old_files:
            reasons.append(f"it now reads {path}")
        elif old_files[path] != sha:
            reasons.append(f"{path} changed")
    return "; ".join(reasons) or "its inputs changed"
