"""``mlnb release``: one Bento that serves two versions of a notebook's service together.

The release Bento holds both versions' service folders as they were built (``primary/`` and
``candidate/``: their ``service.py``, serve code, spec and files, each version's model in
the model store as before), one copy of mlnb's serving runtime, ``mlnb_release.json`` (the
mode, the versions, the rules) and ``release_service.py``, whose service answers with the
primary in its own worker and holds the candidate as a BentoML dependency
(:mod:`mlnb.serving.release`). The two versions must take the same request: the release is
refused, naming the fields that differ, when they do not. Its version is derived from the two
versions and the release's settings: the same release builds the same Bento.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb import __version__
from mlnb.bento import bentoml_store, render, version
from mlnb.bento.folder import build_folder, write_build_dir
from mlnb.errors import ReleaseError as ReleaseError  # re-exported: it lived here

RELEASE_TEMPLATE = "release_service.py.j2"
MODES = ("shadow", "canary")
MAX_SPEC_BYTES = 256 * 1024 * 1024  # an mlnb_service.json carries the training profile


@dataclass(frozen=True)
class ReleaseOptions:
    mode: str  # "shadow" or "canary"
    percent: float | None = None  # canary
    key: str | None = None  # canary: sticky per value of this field
    promote_if: tuple[str, ...] = ()
    rollback_if: tuple[str, ...] = ()
    after: int | None = None  # requests the candidate handles before its rules decide
    name: str | None = None


@dataclass(frozen=True)
class Version:
    """One version's Bento as the release reads it."""

    tag: str
    src: Path  # the Bento's src/ folder
    spec: dict[str, Any]
    class_name: str
    requirements: list[str]


def read_version(tag: str) -> Version:
    """A Bento in the store, checked to be one ``mlnb build`` made that a release can hold."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        found = bentoml.bentos.get(tag)
    except NotFound:
        raise ReleaseError(
            f"no Bento {tag} in the BentoML store",
            fix="pass a tag `mlnb build` printed (`bentoml list` shows them)",
        ) from None
    src = Path(found.path) / "src"
    spec_path = src / "mlnb_service.json"
    service = src / "service.py"
    if not spec_path.is_file() or not service.is_file():
        raise ReleaseError(
            f"{found.tag} is not a Bento mlnb built (it has no mlnb_service.json)",
            fix="release two Bentos built by `mlnb build`",
        )
    if "SPEC.service_name" not in service.read_text(encoding="utf-8"):
        raise ReleaseError(
            f"{found.tag} was built by an mlnb older than releases",
            fix=f"rebuild it with this mlnb: mlnb build NOTEBOOK (mlnb {__version__})",
        )
    if spec_path.stat().st_size > MAX_SPEC_BYTES:
        raise ReleaseError(f"{spec_path} is larger than {MAX_SPEC_BYTES} bytes")
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    entry = str(found.info.entry_service or "")
    service_ref = str(getattr(found.info, "service", "") or "")
    class_name = service_ref.partition(":")[2] or entry
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", class_name):
        raise ReleaseError(f"cannot tell the service class of {found.tag} ({service_ref!r})")
    requirements_file = Path(found.path) / "env" / "python" / "requirements.txt"
    requirements = []
    if requirements_file.is_file():
        for line in requirements_file.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "-")):
                requirements.append(line)
    return Version(str(found.tag), src, spec, class_name, requirements)


def schema_differences(primary: dict[str, Any], candidate: dict[str, Any]) -> list[str]:
    """How the two versions' request schemas differ, one line per field (empty: the same)."""
    mine = {f["name"]: f for f in primary["schema"]["fields"]}
    theirs = {f["name"]: f for f in candidate["schema"]["fields"]}
    lines = []
    for name in mine.keys() - theirs.keys():
        lines.append(f"{name!r}: only the primary takes it")
    for name in theirs.keys() - mine.keys():
        lines.append(f"{name!r}: only the candidate takes it")
    for name in mine.keys() & theirs.keys():
        for key in ("dtype", "kind", "nullable"):
            if mine[name].get(key) != theirs[name].get(key):
                lines.append(
                    f"{name!r}: {key} {mine[name].get(key)} in the primary, "
                    f"{theirs[name].get(key)} in the candidate"
                )
    if not lines and list(mine) != list(theirs):
        lines.append("the fields are the same but in another order (rows given as lists differ)")
    if primary.get("task") != candidate.get("task"):
        lines.append(
            f"task: {primary.get('task')} in the primary, {candidate.get('task')} in the candidate"
        )
    return sorted(lines)


def merged_requirements(primary: Version, candidate: Version) -> list[str]:
    """Both versions' pins; refused when they pin one package at two versions (one
    environment serves both)."""
    pins: dict[str, str] = {}
    clashes = []
    for pin in [*primary.requirements, *candidate.requirements]:
        name = re.split(r"[=<>!~ ;\[]", pin, maxsplit=1)[0].lower().replace("_", "-")
        if name in pins and pins[name] != pin:
            clashes.append(f"{pins[name]} (primary) vs {pin} (candidate)")
        pins.setdefault(name, pin)
    if clashes:
        raise ReleaseError(
            "the two versions pin different packages, and a release serves both from one "
            f"environment: {'; '.join(clashes[:5])}",
            fix="build both versions in one environment (mlnb build in the same venv)",
        )
    return sorted(pins.values())


def build_release(
    primary_tag: str,
    candidate_tag: str,
    options: ReleaseOptions,
    *,
    store_root: Path,
    progress: Callable[[str], None] = lambda _: None,
    templates: str | None = None,
) -> dict[str, Any]:
    """Build the release Bento; what was built (tag, folders, settings)."""
    from mlnb.reporting.paths import default_monitor_folder, relative_monitor_folder
    from mlnb.serving import release_rules

    bentoml_store.quiet_bentoml()
    if options.mode not in MODES:
        raise ReleaseError(f"no release mode {options.mode!r}", fix="--shadow or --canary")
    if options.mode == "canary" and (options.percent is None or not 0 < options.percent < 100):
        raise ReleaseError(
            f"a canary needs --percent between 0 and 100, not {options.percent}",
            fix="e.g. --percent 10",
        )
    promote = release_rules.parse_rules(",".join(options.promote_if), "--promote-if")
    rollback = release_rules.parse_rules(",".join(options.rollback_if), "--rollback-if")
    primary, candidate = read_version(primary_tag), read_version(candidate_tag)
    if primary.tag == candidate.tag:
        raise ReleaseError(
            f"the primary and the candidate are the same Bento {primary.tag}",
            fix="release a new version beside the live one",
        )
    differences = schema_differences(primary.spec, candidate.spec)
    if differences:
        raise ReleaseError(
            "the two versions do not take the same request: " + "; ".join(differences[:10]),
            fix="retrain the candidate on the primary's columns, or serve it on its own",
        )
    if options.key is not None and options.key not in {
        f["name"] for f in primary.spec["schema"]["fields"]
    }:
        raise ReleaseError(
            f"--key {options.key!r} is not a field of the request",
            fix="name one of the training columns (the same value always goes to one version)",
        )
    requirements = merged_requirements(primary, candidate)
    name = options.name or f"{primary.spec['bento_name']}_release"
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9_-]{0,48}[a-z0-9])?", name):
        raise ReleaseError(f"{name!r} is not a Bento name", fix="lower-case letters, digits, _ -")
    settings = {
        "mode": options.mode,
        "percent": options.percent if options.mode == "canary" else None,
        "key": options.key,
        "promote_if": release_rules.rules_text(promote),
        "rollback_if": release_rules.rules_text(rollback),
        "after": options.after,
    }
    release_version = version.content_version(
        primary=primary.tag,
        candidate=candidate.tag,
        runtime=version.runtime_digest(),
        template=render.template_sources_of([RELEASE_TEMPLATE], templates),
        **settings,
    )
    tag = f"{name}:{release_version}"
    # relative, as a version's: the release travels (mlnb serve passes the store's folder)
    monitor = relative_monitor_folder(name, release_version)
    versions = {
        role: {
            "tag": v.tag,
            "bento_name": v.spec["bento_name"],
            "bento_version": v.spec["bento_version"],
            "run_id": v.spec.get("run_id"),
            "metrics": v.spec.get("metrics") or {},
        }
        for role, v in (("primary", primary), ("candidate", candidate))
    }
    spec = {
        "version": 1,
        "release": tag,
        "bento_name": name,
        "bento_version": release_version,
        "task": primary.spec.get("task"),
        "classes": primary.spec.get("classes"),
        "monitor_dir": monitor,
        "versions": versions,
        **settings,
    }
    service_names = {role: f"{name}_{role}"[:60] for role in versions}
    rendered: dict[str, str | bytes] = {
        "mlnb_release.json": json.dumps(spec, indent=1, default=str),
        "primary/__init__.py": "",
        "candidate/__init__.py": "",
    }
    copied: dict[str, Path] = {}
    for role, v in (("primary", primary), ("candidate", candidate)):
        for path in sorted(v.src.rglob("*")):
            relative = path.relative_to(v.src)
            if not path.is_file() or relative.parts[0] in ("mlnb", "bentofile.yaml"):
                continue
            if relative.parts[-1] == "mlnb_service.json" and len(relative.parts) == 1:
                continue
            copied[f"{role}/{relative.as_posix()}"] = path
        role_spec = {
            **v.spec,
            "service_name": service_names[role],
            "release_role": role,
            "monitor_dir": f"{monitor}/{role}",
        }
        rendered[f"{role}/mlnb_service.json"] = json.dumps(role_spec, default=str)
    context = {
        "mlnb_version": __version__,
        "release_tag": tag,
        "mode_description": _describe(options),
        "primary_tag": primary.tag,
        "candidate_tag": candidate.tag,
        "primary_run": versions["primary"]["run_id"],
        "candidate_run": versions["candidate"]["run_id"],
        "service_name": name,
        "class_name": version.class_name(name),
        "primary_class": primary.class_name,
        "candidate_class": candidate.class_name,
        "timeout": 60,
        "feedback": _has_feedback(),
    }
    rendered["release_service.py"] = render.render(RELEASE_TEMPLATE, context, templates)
    rendered["bentofile.yaml"] = _bentofile(tag, context["class_name"], requirements, primary, spec)
    build_dir = build_folder(store_root, name, release_version)
    write_build_dir(build_dir, rendered, copied)
    progress(f"release folder {build_dir}")
    created = bentoml_store.build_bento(build_dir, name, release_version)
    progress(f"release {tag} {'built' if created else 'exists already (same settings): reused'}")
    return {
        "release": tag,
        "created": created,
        "build_dir": str(build_dir),
        # where `mlnb serve` logs it; `bentoml serve` elsewhere logs under its own folder
        "monitor_dir": str(default_monitor_folder(store_root, name, release_version)),
        "primary": primary.tag,
        "candidate": candidate.tag,
        **settings,
    }


def _describe(options: ReleaseOptions) -> str:
    if options.mode == "shadow":
        return "the primary answers every request; the candidate sees the same rows in shadow"
    key = f", sticky per {options.key}" if options.key else ""
    return f"the candidate answers {options.percent:g}% of requests (a canary{key})"


def _has_feedback() -> bool:
    import importlib.util

    return importlib.util.find_spec("mlnb.serving.feedback") is not None


def _bentofile(
    tag: str, class_name: str, requirements: list[str], primary: Version, spec: dict[str, Any]
) -> str:
    import yaml  # type: ignore[import-untyped]

    docker = {}
    bento_yaml = primary.src.parent / "bento.yaml"
    if bento_yaml.is_file():
        info = yaml.safe_load(bento_yaml.read_text(encoding="utf-8")) or {}
        python_version = ((info.get("docker") or {}).get("python_version")) or None
        if python_version:
            docker = {"python_version": str(python_version)}
    name = tag.partition(":")[0]
    document = {
        "service": f"release_service:{class_name}",
        "name": name,
        "description": f"Release of {spec['versions']['candidate']['tag']} beside "
        f"{spec['versions']['primary']['tag']} ({spec['mode']})",
        "labels": {
            "mlnb_release": spec["mode"],
            "primary": spec["versions"]["primary"]["tag"],
            "candidate": spec["versions"]["candidate"]["tag"],
        },
        "include": [
            "release_service.py",
            "mlnb_release.json",
            "mlnb/**/*.py",
            "primary/**",
            "candidate/**",
        ],
        "python": {"lock_packages": False, "packages": requirements},
        **({"docker": docker} if docker else {}),
    }
    header = f"# Generated by mlnb {__version__} (`mlnb release`).\n"
    return header + str(yaml.safe_dump(document, sort_keys=False))
