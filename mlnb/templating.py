"""The Jinja templates mlnb renders (services, bentofiles, reports), and where they are found.

Templates ship in the wheel as ``mlnb/_templates``; in a source checkout they are the top-level
``templates/`` folder. A user's folder (``--templates DIR``) is searched first, so a user can
override one template and keep the rest.

HTML is escaped in one way: templates named ``*.html`` or ``*.html.j2`` are rendered with
autoescape, so every value is written as text unless it is :class:`markupsafe.Markup`, and the
few fragments mlnb builds in Python (SVG charts, the notebook panel's widgets) are built with
markupsafe too, the escaper Jinja uses. The run report is rendered by nbconvert, whose
environment does not autoescape (notebook outputs are HTML); its template turns autoescape on
around mlnb's header.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

_PACKAGE_DIR = Path(__file__).resolve().parent


def packaged_templates_dir() -> Path:
    """The templates that came with mlnb: in the wheel, or in a source checkout."""
    for candidate in (_PACKAGE_DIR / "_templates", _PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("mlnb's templates folder is missing from this installation")


@lru_cache(maxsize=8)
def environment(user_dir: str | None = None) -> jinja2.Environment:
    """One cached environment per template search path, strict about undefined names."""
    search = [*([user_dir] if user_dir else []), str(packaged_templates_dir())]
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
    )


def render(name: str, user_dir: str | Path | None = None, **context: object) -> str:
    return environment(str(user_dir) if user_dir else None).get_template(name).render(**context)
