"""A credential scan of the code a build would ship: keys, tokens and passwords stay out.

Two kinds of finding: a string that has the shape of a known secret (cloud keys, tokens,
private keys, credentials in a URL), and a string literal given to a name that says it is one
(``password = "..."``, ``{"api_key": "..."}``, ``connect(token="...")``). The first finding
is raised as a :class:`~mlnb.errors.CredentialInServeCodeError` naming the cell and line,
with the value masked.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mlnb.analysis import python_source
from mlnb.errors import CellRef, CredentialInServeCodeError

_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{30,})")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("a Stripe key", re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}")),
    ("an API secret key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}")),
    ("a JSON web token", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.")),
    ("a password in a URL", re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@'\"]+:[^/\s@'\"]+@")),
)
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "pass", "secret", "token", "apikey", "credential"}
    | {"credentials", "bearer", "passphrase"}
)
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("auth", "key")})
_PLACEHOLDER = re.compile(r"^(|x+|\*+|<[^>]*>|\$\{?\w+\}?|changeme|your[_\- ].*|\.\.\.)$", re.I)


@dataclass(frozen=True)
class Finding:
    cell: int
    cell_source: str
    line: int  # 1-based, in the cell
    what: str
    text: str  # the line, value masked


def scan(cells: Iterable[tuple[int, str]]) -> list[Finding]:
    """Every finding in the cells, in cell and line order."""
    findings: list[Finding] = []
    for cell, source in cells:
        findings.extend(_scan_cell(cell, source))
    return sorted(findings, key=lambda f: (f.cell, f.line))


def check_no_credentials(cells: Iterable[tuple[int, str]], notebook: str, stage: str) -> None:
    """Raise for the first finding, naming the cell and line."""
    findings = scan(cells)
    if not findings:
        return
    first = findings[0]
    more = f" ({len(findings) - 1} more found)" if len(findings) > 1 else ""
    raise CredentialInServeCodeError(
        f"line {first.line} holds what looks like {first.what}: {first.text}{more}",
        fix="keep secrets out of the notebook: read them at serve time, e.g. "
        'os.environ["API_KEY"], and set them where the service runs',
        notebook=notebook,
        cell=CellRef.of(first.cell, first.cell_source),
        stage=stage,
    )


def _scan_cell(cell: int, source: str) -> list[Finding]:
    lines = source.splitlines()
    found: dict[int, Finding] = {}
    for number, line in enumerate(lines, 1):
        for what, pattern in _SHAPES:
            match = pattern.search(line)
            if match:
                found[number] = Finding(cell, source, number, what, _mask(line, match.group()))
                break
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError:
        return list(found.values())
    for name, value, number in _named_strings(tree):
        if number in found or not secret_name(name) or _PLACEHOLDER.match(value.strip()):
            continue
        if len(value) < 4 or " " in value.strip():
            continue  # a sentence, a label or a tiny value, not a secret
        line = lines[number - 1] if number <= len(lines) else ""
        found[number] = Finding(cell, source, number, f"a secret ({name})", _mask(line, value))
    return list(found.values())


def secret_name(name: str) -> bool:
    """Whether a name says it holds a secret: ``db_password``, ``apiKey``, not ``tokenizer``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    pairs = set(itertools.pairwise(words))
    return bool(_SECRET_WORDS.intersection(words) or _SECRET_PAIRS & pairs)


def _named_strings(tree: ast.AST) -> Iterable[tuple[str, str, int]]:
    """(name, string value, line) for strings bound to a name, a dict key or a keyword."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            value = _string(node.value)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [_target_name(target) for target in targets]
            if value is not None:
                yield from ((name, value, node.lineno) for name in names if name)
        elif isinstance(node, ast.Dict):
            for key, item in zip(node.keys, node.values, strict=True):
                name, value = _string(key), _string(item)
                if name is not None and value is not None:
                    yield name, value, item.lineno
        elif isinstance(node, ast.keyword) and node.arg:
            value = _string(node.value)
            if value is not None:
                yield node.arg, value, node.value.lineno


def _string(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _target_name(target: ast.expr) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Subscript):
        return _string(target.slice)
    return None


def _mask(line: str, secret: str) -> str:
    shown = secret[:4] + "*" * 8 if len(secret) > 8 else "*" * 8
    return line.strip().replace(secret, shown)[:120]
