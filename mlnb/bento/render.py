"""Rendering the service, its serve-code module and its bentofile from the Jinja templates.

Templates come from :mod:`mlnb.templating` (one cached environment per search path, strict
about undefined names); a user's ``--templates DIR`` is searched first. Every failure, a
missing template, an undefined name, or a service that is not valid Python, is a
:class:`~mlnb.errors.TemplateRenderError` naming the template and line; so is a bentofile
whose ``include`` leaves out a file the service imports (a bentofile template older than the
service template).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
import yaml  # type: ignore[import-untyped]

from mlnb.errors import TemplateRenderError
from mlnb.templating import environment

SERVICE_TEMPLATE = "service.py.j2"
SERVE_CODE_TEMPLATE = "mlnb_serve_code.py.j2"
BENTOFILE_TEMPLATE = "bentofile.yaml.j2"
TEMPLATES = (SERVICE_TEMPLATE, SERVE_CODE_TEMPLATE, BENTOFILE_TEMPLATE)


def template_sources(user_dir: str | Path | None) -> dict[str, str]:
    """The text of the templates a build would use (part of the Bento's version)."""
    return template_sources_of(TEMPLATES, user_dir)


def template_sources_of(names: Iterable[str], user_dir: str | Path | None) -> dict[str, str]:
    """The text of the named templates, from ``user_dir`` or mlnb's own."""
    env = environment(str(user_dir) if user_dir else None)
    sources = {}
    for name in names:
        try:
            source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            raise _not_found(name, user_dir) from None
        sources[name] = source
    return sources


def render(name: str, context: dict[str, Any], user_dir: str | Path | None = None) -> str:
    env = environment(str(user_dir) if user_dir else None)
    try:
        text = env.get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise _not_found(name, user_dir) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateRenderError(
            f"template {exc.filename or name}, line {exc.lineno}: {exc.message}",
            fix="correct the template's Jinja syntax",
        ) from None
    except jinja2.UndefinedError as exc:
        raise TemplateRenderError(
            f"template {name} uses an undefined name: {exc.message}",
            fix=f"use only the names mlnb passes: {', '.join(sorted(context))}",
        ) from None
    if name.endswith(".py.j2"):
        _check_python(name, text)
    return text


def check_included(bentofile: str, files: Iterable[str]) -> None:
    """Every one of ``files`` is in what the rendered bentofile includes, as BentoML matches it."""
    import pathspec

    try:
        spec = yaml.safe_load(bentofile) or {}
    except yaml.YAMLError as exc:
        raise TemplateRenderError(
            f"template {BENTOFILE_TEMPLATE} renders invalid YAML: {exc}",
            fix="check the template's indentation",
        ) from None
    include = spec.get("include") if isinstance(spec, dict) else None
    exclude = (spec.get("exclude") if isinstance(spec, dict) else None) or []
    included = pathspec.PathSpec.from_lines("gitwildmatch", include or ["*"])
    excluded = pathspec.PathSpec.from_lines("gitwildmatch", exclude)
    for name in files:
        if not included.match_file(name) or excluded.match_file(name):
            raise TemplateRenderError(
                f"template {BENTOFILE_TEMPLATE} leaves {name} out of the Bento, and the "
                "service imports it",
                fix=f"add '- {name}' to the include list of your {BENTOFILE_TEMPLATE} "
                "(mlnb's own template has it)",
            )


def _check_python(name: str, text: str) -> None:
    try:
        ast.parse(text)
    except SyntaxError as exc:
        line = text.splitlines()[exc.lineno - 1].strip() if exc.lineno else ""
        raise TemplateRenderError(
            f"template {name} renders invalid Python at line {exc.lineno} ({exc.msg}): {line}",
            fix="check the template's indentation and the code it inserts",
        ) from None


def _not_found(name: str, user_dir: str | Path | None) -> TemplateRenderError:
    where = f"{user_dir} or mlnb's templates" if user_dir else "mlnb's templates"
    return TemplateRenderError(
        f"template {name} is not in {where}",
        fix=f"copy mlnb's {name} into your templates folder and edit it there",
    )
