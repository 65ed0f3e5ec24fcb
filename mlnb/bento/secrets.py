"""A credential scan of everything a build would ship: keys, tokens and passwords stay out.

What is scanned is what goes into the Bento: every code cell of the notebook the run executed
(the serve and setup cells become ``mlnb_serve_code.py``; the parameters cell's defaults and
the run's values of the parameters the serve code reads are baked in as constants; and every
cell's source is shown in ``report.html``), then the generated files themselves
(``service.py``, ``mlnb_serve_code.py``, ``mlnb_service.json``, ``bentofile.yaml``).

The rules are detect-secrets' (its default plugins and filters: cloud keys, tokens, private
keys, credentials in URLs, ``password = "..."`` keywords, high-entropy strings), applied
line by line and, after constant folding (``"AKIA" + "..."``, implicit and multi-line
concatenation, f-strings of constants, ``"".join([...])`` of constants, names bound to such
constants), to each string the code builds. Two shapes detect-secrets 1.5 has no plugin for
(Google API keys, ``sk-`` API keys), and string literals given to a name that says it holds a
secret where detect-secrets' keyword rule does not look (``API_TOKEN = "..."``,
``connect(token="...")``, ``api_key: str = "..."``), are added. The generated files are
scanned without the high-entropy rules: their own digests and tags would match, and a
notebook's string has been scanned with them already, where the user can mark it.

detect-secrets is imported here only, when a build runs: never on ``mlnb run``'s path.
A finding never shows the value; a false positive is marked the detect-secrets way, with a
``# pragma: allowlist secret`` comment on its line.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mlnb.analysis import ParsedCell
from mlnb.bento.cell_trees import python_tree
from mlnb.errors import CellRef, CredentialInServeCodeError

ALLOWLIST = "pragma: allowlist secret"
ENTROPY_PLUGINS = ("Base64HighEntropyString", "HexHighEntropyString")
# detect-secrets' secret types, as a finding names them; priority: first the precise shapes.
_KINDS = {
    "AWS Access Key": "an AWS access key id",
    "Private Key": "a private key",
    "Basic Auth Credentials": "a password in a URL",
    "GitHub Token": "a GitHub token",
    "GitLab Token": "a GitLab token",
    "Slack Token": "a Slack token",
    "Stripe Access Key": "a Stripe key",
    "JSON Web Token": "a JSON web token",
    "OpenAI Token": "an OpenAI key",
}
# Shapes detect-secrets 1.5 has no plugin for.
_EXTRA_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("an API secret key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}")),
)
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "pass", "secret", "token", "apikey", "credential"}
    | {"credentials", "bearer", "passphrase"}
)
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("auth", "key")})
_PLACEHOLDER = re.compile(r"^(|x+|\*+|<[^>]*>|\$\{?\w+\}?|changeme|your[_\- ].*|\.\.\.)$", re.I)
_RANK_SHAPE, _RANK_KEYWORD, _RANK_NAME, _RANK_ENTROPY = range(4)


@dataclass(frozen=True)
class Finding:
    cell: int | None  # None: a generated file
    cell_source: str
    line: int  # 1-based, in the cell or file
    what: str  # the kind of secret, never its value
    where: str = ""  # the generated file, or how a cell's value ships ("the run's value of ...")
    rank: int = _RANK_SHAPE


def scan(
    cells: Iterable[tuple[int, str]], parsed: Mapping[int, ParsedCell] | None = None
) -> list[Finding]:
    """Every finding in the cells, one per line, in cell and line order. ``parsed``: the
    pipeline's parse of the cells (:attr:`mlnb.pipeline.Pipeline.parsed`), read instead of
    parsing a cell again."""
    held = parsed or {}
    return merge(f for cell, source in cells for f in _scan_cell(cell, source, held))


def scan_values(cell: int, source: str, values: Mapping[str, Any]) -> list[Finding]:
    """The parameter values a build bakes in (the run's, which may not be the defaults), each
    found at its line of the parameters cell (``source``)."""
    lines = source.splitlines()
    findings = []
    for name, value in values.items():
        if not isinstance(value, str):
            continue
        number = next(
            (
                n
                for n, line in enumerate(lines, 1)
                if re.match(rf"\s*{re.escape(name)}\s*[:=]", line)
            ),
            1,
        )
        for finding in _scan_cell(cell, f"{name} = {value!r}"):
            where = f"the run's value of parameter {name!r}"
            findings.append(Finding(cell, source, number, finding.what, where, finding.rank))
    return merge(findings)


def scan_files(files: Mapping[str, str]) -> list[Finding]:
    """Findings in generated files, by detect-secrets' rules without the high-entropy ones."""
    findings = []
    for name, text in files.items():
        lines = text.splitlines()
        for number, what, rank in _detect(list(enumerate(lines, 1)), name, entropy=False):
            findings.append(Finding(None, "", number, what, name, rank))
        for number, line in enumerate(lines, 1):
            for what, pattern in _EXTRA_SHAPES:
                if pattern.search(line) and ALLOWLIST not in line:
                    findings.append(Finding(None, "", number, what, name))
    return sorted(merge(findings, key=lambda f: (f.where, f.line)), key=lambda f: f.where)


def check_no_credentials(findings: list[Finding], notebook: str, stage: str | None) -> None:
    """Raise for the first finding, naming the cell (or file), the line and the kind."""
    if not findings:
        return
    first = findings[0]
    more = f" ({len(findings) - 1} more found)" if len(findings) > 1 else ""
    if first.cell is None:
        place = f"{first.where}, which the build generated, line {first.line}"
    else:
        place = f"line {first.line}" + (f" ({first.where})" if first.where else "")
    raise CredentialInServeCodeError(
        f"{place} holds what looks like {first.what}; it would ship inside the Bento{more}",
        fix="keep secrets out of the notebook: read them when the service handles a request, "
        'e.g. os.environ["API_KEY"] inside predict, and set them where the service runs '
        "(BentoML secrets, or the deployment's environment); if it is no secret, end its "
        f"line with '# {ALLOWLIST}'",
        notebook=notebook,
        cell=None if first.cell is None else _cell_ref(first, findings),
        stage=stage,
    )


def _cell_ref(first: Finding, findings: list[Finding]) -> CellRef:
    """The cell, named by its first line, cut before any string or comment when that line
    holds a finding: the message never shows a secret."""
    assert first.cell is not None
    ref = CellRef.of(first.cell, first.cell_source)
    lines = first.cell_source.splitlines()
    number = next((n for n, line in enumerate(lines, 1) if line.strip()), 0)
    if any(f.cell == first.cell and f.line == number for f in findings):
        match = re.search(r"[\"'#]", ref.first_line)
        cut = ref.first_line[: match.start() + 1] if match else ""
        return CellRef(first.cell, f"{cut}...")
    return ref


def merge(findings: Iterable[Finding], key: Any = None) -> list[Finding]:
    """One finding per line (the most precise kind), in cell and line order."""
    key = key or (lambda f: (f.cell if f.cell is not None else -1, f.line))
    best: dict[Any, Finding] = {}
    for finding in findings:
        k = key(finding)
        if k not in best or finding.rank < best[k].rank:
            best[k] = finding
    return sorted(best.values(), key=key)


def _scan_cell(
    cell: int, source: str, parsed: Mapping[int, ParsedCell] | None = None
) -> list[Finding]:
    lines = source.splitlines()
    findings: list[Finding] = []
    try:
        tree: ast.Module | None = python_tree(cell, source, parsed or {})
    except SyntaxError:
        tree = None
    names = _names_by_line(tree) if tree is not None else {}
    for number, what, rank in _detect(list(enumerate(lines, 1)), "cell.py", entropy=True):
        if rank == _RANK_KEYWORD and number in names:
            what = f"a secret ({names[number]})"
        findings.append(Finding(cell, source, number, what, rank=rank))
    for number, text in enumerate(lines, 1):
        for what, pattern in _EXTRA_SHAPES:
            if pattern.search(text) and ALLOWLIST not in text:
                findings.append(Finding(cell, source, number, what))
    if tree is None:
        return findings
    folded = list(_folded_strings(tree))
    synthetic = [
        (number, f"{name or 'value'} = {value!r}")
        for number, (name, value, _) in enumerate(folded, 1)
    ]
    for index, what, rank in _detect(synthetic, "cell.py", entropy=True):
        name, _, at = folded[index - 1]
        if ALLOWLIST in _line(lines, at):
            continue
        if rank == _RANK_KEYWORD and name:
            what = f"a secret ({name})"
        findings.append(Finding(cell, source, at, what, rank=rank))
    for name, value, at in folded:
        if ALLOWLIST in _line(lines, at):
            continue
        for what, pattern in _EXTRA_SHAPES:
            if pattern.search(value):
                findings.append(Finding(cell, source, at, what))
        if name and secret_name(name) and _looks_secret(value):
            findings.append(Finding(cell, source, at, f"a secret ({name})", rank=_RANK_NAME))
    return findings


def _detect(
    lines: list[tuple[int, str]], filename: str, *, entropy: bool
) -> Iterator[tuple[int, str, int]]:
    """(line, kind, rank) of each detect-secrets finding, with its default plugins and filters
    (the allowlist comment among them)."""
    from detect_secrets.core.scan import _process_line_based_plugins
    from detect_secrets.settings import default_settings

    if not lines:
        return
    with default_settings() as settings:
        if not entropy:
            settings.disable_plugins(*ENTROPY_PLUGINS)
        found = list(_process_line_based_plugins(lines, filename=filename))
    for secret in found:
        if secret.type in _KINDS:
            yield secret.line_number, _KINDS[secret.type], _RANK_SHAPE
        elif secret.type == "Secret Keyword":
            yield secret.line_number, "a secret keyword", _RANK_KEYWORD
        elif "High Entropy" in secret.type:
            yield secret.line_number, f"a random-looking key ({secret.type})", _RANK_ENTROPY
        else:
            yield secret.line_number, f"a {secret.type}", _RANK_SHAPE


def _looks_secret(value: str) -> bool:
    stripped = value.strip()
    if _PLACEHOLDER.match(stripped):
        return False
    return len(value) >= 4 and " " not in stripped  # not a sentence, a label, a tiny value


def secret_name(name: str) -> bool:
    """Whether a name says it holds a secret: ``db_password``, ``apiKey``, not ``tokenizer``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    pairs = set(itertools.pairwise(words))
    return bool(_SECRET_WORDS.intersection(words) or _SECRET_PAIRS & pairs)


def _line(lines: list[str], number: int) -> str:
    return lines[number - 1] if 0 < number <= len(lines) else ""


def _names_by_line(tree: ast.AST) -> dict[int, str]:
    """The name a string is bound to, per line (for the message)."""
    return {line: name for name, _, line in _folded_strings(tree) if name}


def _folded_strings(tree: ast.AST) -> Iterator[tuple[str | None, str, int]]:
    """(name or None, value, line) of every string the code builds from constants: each
    literal, concatenation, f-string or join of constants, as large as it folds."""
    constants: dict[str, str] = {}
    for statement in getattr(tree, "body", []):  # names bound to constants, in order
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            value = fold(statement.value, constants)
            target = statement.targets[0]
            if isinstance(target, ast.Name) and value is not None:
                constants[target.id] = value
    named: set[int] = set()
    for node in ast.walk(tree):
        for name, expr in _bindings(node):
            value = fold(expr, constants)
            if value is not None:
                named.add(id(expr))
                yield name, value, expr.lineno
    inner: set[int] = set()
    for node in ast.walk(tree):
        if id(node) in inner or not isinstance(node, ast.expr):
            continue
        value = fold(node, constants)
        if value is None:
            continue
        inner.update(id(child) for child in ast.walk(node))
        if id(node) not in named and not isinstance(node, ast.Name):
            yield None, value, node.lineno


def _bindings(node: ast.AST) -> Iterator[tuple[str, ast.expr]]:
    """(name, expression) for values bound to a name, a dict key or a keyword."""
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            name = _target_name(target)
            if name:
                yield name, node.value
    elif isinstance(node, ast.Dict):
        for key, item in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                yield key.value, item
    elif isinstance(node, ast.keyword) and node.arg:
        yield node.arg, node.value


def fold(node: ast.AST | None, constants: Mapping[str, str] | None = None) -> str | None:
    """The string an expression builds from constants alone, else None."""
    constants = constants or {}
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = fold(node.left, constants), fold(node.right, constants)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                if value.format_spec is not None:
                    return None
                part = fold(value.value, constants)
            else:
                part = fold(value, constants)
            if part is None:
                return None
            parts.append(part)
        return "".join(parts)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "join"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], (ast.List, ast.Tuple))
    ):
        separator = fold(node.func.value, constants)
        items = [fold(item, constants) for item in node.args[0].elts]
        if separator is None or any(item is None for item in items):
            return None
        return separator.join(item for item in items if item is not None)
    return None


def _target_name(target: ast.expr) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Subscript):
        return fold(target.slice)
    return None
