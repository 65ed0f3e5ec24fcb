"""The run record's three descriptions agree with what mlnb writes, and with each other.

``mlnb/run_record.schema.json`` (the JSON Schema), ``mlnb/record_types.py`` (the TypedDicts)
and the sidebar's ``labextension/src/types.ts`` describe ``runs/<id>/run.json``. Real records
(a fresh run of the example notebook, a cached run, a failing run, a build, a run whose
process died) validate against the schema; the TypedDicts have the schema's keys and required
keys; each field the sidebar declares exists in the schema with a compatible type and
optionality, and each field the sidebar reads is declared. The checkers are tested too: a
field renamed on one side is found.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mlnb import record_types
from mlnb.record_types import RECORD_VERSION, SCHEMA_FILE, record_version
from mlnb.run.record import with_index_keys
from mlnb.store import Store

from .conftest import EXAMPLES, ROOT, mlnb

TYPES_TS = ROOT / "labextension" / "src" / "types.ts"
SIDEBAR_SOURCES = ROOT / "labextension" / "src"

# The sidebar's interfaces that mirror the record, and the schema definition each mirrors.
TS_MIRRORS = {
    "IRun": "RunRecord",
    "IStageRun": "StageEntry",
    "IStageContract": "StageContract",
    "IContractViolation": "Violation",
    "IRunError": "ErrorInfo",
    "IBuild": "BuildEntry",
}
# Fields the sidebar declares that run.json does not hold, and why.
NOT_IN_RUN_JSON = {
    ("IRun", "executed_notebook_path"): "the server adds it (RunService._with_lab_paths)",
    ("IRunError", "message"): "a fallback the sidebar reads when evalue is absent",
}


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


# --- real records ---


@dataclass
class Runs:
    """A store holding real runs, and their records as run.json holds them, by kind."""

    store: str
    records: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Runs of breast_cancer.ipynb in a new store: fresh, then cached, then failed."""
    folder = tmp_path_factory.mktemp("schema")
    for name in ("breast_cancer.ipynb", "breast_cancer.contract.yaml"):
        shutil.copy(EXAMPLES / name, folder / name)
    notebook, store = str(folder / "breast_cancer.ipynb"), str(folder / "store")
    found = {}
    for kind, extra in (("fresh", []), ("cached", []), ("failed", ["-p", "test_size", "2.0"])):
        done = mlnb("run", notebook, "--store", store, "--json", *extra)
        assert (done.returncode == 0) == (kind != "failed"), done.stderr
        run_id = json.loads(done.stdout)["run_id"]
        found[kind] = json.loads((Path(store) / "runs" / run_id / "run.json").read_text())
    return Runs(store, found)


def validate(record: Mapping[str, Any]) -> None:
    jsonschema.validate(record, schema(), cls=jsonschema.Draft7Validator)


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(schema())


@pytest.mark.parametrize("kind", ["fresh", "cached", "failed"])
def test_real_records_validate(runs: Runs, kind: str) -> None:
    record = runs.records[kind]
    validate(record)
    assert record["record_version"] == RECORD_VERSION == record_version(record)
    assert record["status"] == ("failed" if kind == "failed" else "succeeded")
    if kind == "cached":
        assert {s["status"] for s in record["stages"]} == {"cached"}
    if kind == "failed":
        assert record["error"]["stage"] == "load" and record["error"]["first_line"]


def test_a_build_and_a_reaped_run_validate(runs: Runs) -> None:
    """The store's own writes: a build appended (as the builder writes it), and a run whose
    process is gone recorded failed."""
    records = runs.records
    with Store(runs.store) as store:
        build: record_types.BuildEntry = {
            "bento": "breast_cancer:abc123",
            "model": "breast_cancer_model:abc123",
            "format": "onnx",
            "built_at": "2026-01-01T00:00:00+00:00",
            "reused_from_run": records["fresh"]["run_id"],
        }
        validate(store.add_build(records["fresh"]["run_id"], build))
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                              capture_output=True, text=True)  # fmt: skip
        running = {**records["failed"], "run_id": "aborted-run", "status": "running"}
        running["stages"] = [{**s, "status": "running"} for s in running["stages"][:1]]
        running.update(error=None, finished_at=None, pid=int(dead.stdout))
        store.create_run(running)
        reaped = store.get_run("aborted-run")
    assert reaped["status"] == "failed" and reaped["error"]["ename"] == "RunAborted"
    validate(reaped)


def test_a_record_without_a_version_is_version_1_and_still_read(runs: Runs) -> None:
    """Records written before ``record_version`` existed (and, older, before the 0-based
    keys) are read as they were written."""
    old = {k: v for k, v in runs.records["fresh"].items() if k != "record_version"}
    old["run_id"] = "old-run"
    old["stages"] = [{k: v for k, v in s.items() if k != "cell_indexes"} for s in old["stages"]]
    with Store(runs.store) as store:
        store.create_run(old)  # type: ignore[arg-type]
        read = store.get_run("old-run")
    assert record_version(read) == 1 and "record_version" not in read
    filled = with_index_keys(read)
    assert [s["cell_indexes"] for s in filled["stages"]] == [s["cells"] for s in read["stages"]]
    shown = mlnb("runs", "show", "old-run", "--store", runs.store, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run_id"] == "old-run"


def test_the_schema_refuses_what_the_record_does_not_hold(runs: Runs) -> None:
    fresh = runs.records["fresh"]
    with pytest.raises(jsonschema.ValidationError):
        validate({**fresh, "stages": [{**fresh["stages"][0], "status": "ok"}]})
    with pytest.raises(jsonschema.ValidationError):
        validate({**fresh, "run_started": "a key the record does not have"})
    with pytest.raises(jsonschema.ValidationError):
        validate({k: v for k, v in fresh.items() if k != "host"})


# --- the TypedDicts and the schema ---


def typeddicts() -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(record_types).items()
        if typing.is_typeddict(value) and not name.startswith("_")
    }


def allows_none(hint: Any) -> bool:
    return type(None) in typing.get_args(hint) or hint is Any


def schema_allows_null(prop: Mapping[str, Any]) -> bool:
    kinds = prop.get("type", [])
    return (
        not prop
        or "null" in (kinds if isinstance(kinds, list) else [kinds])
        or any(schema_allows_null(p) for p in prop.get("anyOf", []))
    )


def typeddict_problems(definitions: Mapping[str, Any]) -> list[str]:
    """Where the TypedDicts and the schema's definitions disagree."""
    problems = []
    classes = typeddicts()
    for name in sorted(set(classes) ^ set(definitions)):
        problems.append(f"{name} is only in {'the schema' if name in definitions else 'Python'}")
    for name in sorted(set(classes) & set(definitions)):
        cls, definition = classes[name], definitions[name]
        hints = typing.get_type_hints(cls)
        properties = definition["properties"]
        for key in sorted(set(hints) ^ set(properties)):
            problems.append(f"{name}.{key} is only in {'Python' if key in hints else 'the schema'}")
        if set(cls.__required_keys__) != set(definition.get("required", [])):
            problems.append(f"{name}: required keys differ")
        for key in sorted(set(hints) & set(properties)):
            if allows_none(hints[key]) != schema_allows_null(properties[key]):
                problems.append(f"{name}.{key}: None allowed on one side only")
        if definition.get("additionalProperties") is not False:
            problems.append(f"{name}: the schema allows keys the TypedDict does not name")
    return problems


def test_the_typeddicts_and_the_schema_agree() -> None:
    definitions = schema()["definitions"]
    assert typeddict_problems(definitions) == []
    assert definitions["RunRecord"]["properties"]["record_version"] == {"const": RECORD_VERSION}


def test_a_key_renamed_in_the_schema_is_found() -> None:
    definitions = schema()["definitions"]
    stage = definitions["StageEntry"]
    stage["properties"]["cache"] = stage["properties"].pop("cache_key")
    stage["required"] = [("cache" if k == "cache_key" else k) for k in stage["required"]]
    assert typeddict_problems(definitions) == [
        "StageEntry.cache is only in the schema",
        "StageEntry.cache_key is only in Python",
        "StageEntry: required keys differ",
    ]


# --- the sidebar's types.ts and the schema ---


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def split_top(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside brackets and quotes."""
    parts, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "{[(<":
            depth += 1
        elif char in "}])>":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    return [p.strip() for p in [*parts, current] if p.strip()]


def parse_fields(body: str) -> dict[str, tuple[bool, str]]:
    """``name -> (optional, type)`` of an interface or inline object type's body."""
    fields = {}
    for part in split_top(body, ";"):
        match = re.fullmatch(r"(\w+)(\?)?\s*:\s*(.+)", part, flags=re.S)
        if match:  # an index signature ([name: string]: ...) has no name
            fields[match[1]] = (bool(match[2]), " ".join(match[3].split()))
    return fields


def parse_ts(text: str) -> tuple[dict[str, dict[str, tuple[bool, str]]], dict[str, str]]:
    """The interfaces (name -> fields) and type aliases (name -> type) of a .ts file."""
    text = strip_comments(text)
    interfaces, aliases = {}, {}
    for match in re.finditer(r"export interface (\w+)\s*\{", text):
        start = end = match.end()
        depth = 1
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        interfaces[match[1]] = parse_fields(text[start : end - 1])
    for match in re.finditer(r"export type (\w+)\s*=\s*(.+?);", text, flags=re.S):
        aliases[match[1]] = " ".join(match[2].split())
    return interfaces, aliases


class TsTypes:
    """What a TypeScript type accepts, in JSON kinds (string, number, ...)."""

    def __init__(self, text: str) -> None:
        self.interfaces, self.aliases = parse_ts(text)

    def alternatives(self, ts: str) -> list[str]:
        found = []
        for alternative in split_top(ts, "|"):
            if alternative in self.aliases:
                found += self.alternatives(self.aliases[alternative])
            else:
                found.append(alternative)
        return found

    def kinds(self, ts: str) -> set[str]:
        kinds = set()
        for alternative in self.alternatives(ts):
            if alternative in ("string", "number", "boolean", "null"):
                kinds.add(alternative)
            elif alternative == "JSONValue":
                kinds |= {"string", "number", "boolean", "null", "array", "object"}
            elif re.fullmatch(r"'[^']*'", alternative):
                kinds.add("string")
            elif alternative.endswith("[]"):
                kinds.add("array")
            elif alternative.startswith("{") or alternative in self.interfaces:
                kinds.add("object")
            else:
                kinds.add(f"unknown {alternative}")
        return kinds

    def objects(self, ts: str) -> list[tuple[str | None, dict[str, tuple[bool, str]]]]:
        """(interface name or None when inline, its fields) of each object type ``ts`` (or
        its arrays' items) can be; index signatures (``{ [name: string]: T }``) left out."""
        found = []
        for alternative in self.alternatives(ts):
            alternative = alternative.removesuffix("[]")
            if alternative in self.interfaces:
                found.append((alternative, self.interfaces[alternative]))
            elif alternative.startswith("{") and not alternative.startswith("{ ["):
                found.append((None, parse_fields(alternative[1:-1])))
        return found


def schema_kinds(prop: Mapping[str, Any], definitions: Mapping[str, Any]) -> set[str]:
    prop = resolve(prop, definitions)
    kinds: set[str] = set()
    for part in prop.get("anyOf", []):
        kinds |= schema_kinds(part, definitions)
    declared = prop.get("type", [])
    kinds |= set(declared if isinstance(declared, list) else [declared])
    if "enum" in prop:
        kinds |= {"null" if v is None else type(v).__name__.replace("str", "string")
                  for v in prop["enum"]}  # fmt: skip
    if "const" in prop:
        kinds.add("integer" if isinstance(prop["const"], int) else "string")
    if not prop:
        kinds |= {"string", "number", "boolean", "null", "array", "object"}
    return {"number" if k == "integer" else k for k in kinds}


def resolve(prop: Mapping[str, Any], definitions: Mapping[str, Any]) -> Mapping[str, Any]:
    if "$ref" in prop:
        return definitions[prop["$ref"].rsplit("/", 1)[1]]
    return prop


def schema_objects(
    prop: Mapping[str, Any], definitions: Mapping[str, Any]
) -> list[tuple[str | None, Any]]:
    """(definition name, definition) of each object with ``properties`` that ``prop`` (or
    its items) can be."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[1]
        return [(name, definitions[name])]
    found = [d for part in prop.get("anyOf", []) for d in schema_objects(part, definitions)]
    if "items" in prop:
        found += schema_objects(prop["items"], definitions)
    if "properties" in prop:
        found.append((None, prop))
    return found


def ts_problems(ts_text: str, definitions: Mapping[str, Any]) -> list[str]:
    """Where the sidebar's interfaces disagree with the schema's definitions they mirror."""
    ts = TsTypes(ts_text)
    problems: list[str] = []

    def compare(where: str, fields: Mapping[str, tuple[bool, str]], definition: Any) -> None:
        properties, required = definition["properties"], set(definition.get("required", []))
        for name, (optional, ts_type) in fields.items():
            if (where, name) in NOT_IN_RUN_JSON:
                continue
            if name not in properties:
                problems.append(f"{where}.{name} is not in the schema")
                continue
            prop = properties[name]
            missing = schema_kinds(prop, definitions) - ts.kinds(ts_type)
            if missing:
                problems.append(f"{where}.{name}: {ts_type} cannot hold {sorted(missing)}")
            if not optional and name not in required:
                problems.append(f"{where}.{name} is required in TS, optional in run.json")
            ts_objects, schema_objects_ = ts.objects(ts_type), schema_objects(prop, definitions)
            if len(ts_objects) != len(schema_objects_):
                problems.append(f"{where}.{name}: {ts_type} is not the record's object shape")
            for (interface, ts_fields), (mirrored, sub) in zip(
                ts_objects, schema_objects_, strict=False
            ):
                if interface is None:
                    compare(f"{where}.{name}", ts_fields, sub)
                elif TS_MIRRORS.get(interface) != mirrored:
                    problems.append(f"{where}.{name}: {interface} does not mirror {mirrored}")

    for interface, definition in TS_MIRRORS.items():
        if interface not in ts.interfaces:
            problems.append(f"{interface} is not in types.ts")
            continue
        compare(interface, ts.interfaces[interface], definitions[definition])
    return problems


def test_the_sidebar_types_agree_with_the_schema() -> None:
    assert ts_problems(TYPES_TS.read_text(encoding="utf-8"), schema()["definitions"]) == []


def sidebar_reads(variable: str) -> set[str]:
    """The fields the sidebar's code reads off a variable (``run.status`` -> status)."""
    found: set[str] = set()
    for path in SIDEBAR_SOURCES.glob("*.ts*"):
        if path.name != "types.ts":
            code = strip_comments(path.read_text(encoding="utf-8"))
            found |= set(re.findall(rf"\b{variable}\??\.(\w+)", code))
    return found


# (variable name in the sidebar's code, the interface it holds, whether the name holds other
# things too: `s` is also a string or a pipeline stage, so only the record's names count).
READERS = [("run", "IRun", False), ("b", "IBuild", False), ("s", "IStageRun", True)]


@pytest.mark.parametrize(("variable", "interface", "shared"), READERS)
def test_what_the_sidebar_reads_is_declared_and_in_the_schema(
    variable: str, interface: str, shared: bool
) -> None:
    interfaces, _ = parse_ts(TYPES_TS.read_text(encoding="utf-8"))
    properties = schema()["definitions"][TS_MIRRORS[interface]]["properties"]
    read = sidebar_reads(variable)
    if shared:
        read &= set(properties) | set(interfaces[interface])
    assert len(read) >= 2, f"the sidebar reads nothing off {variable}"
    assert read <= set(interfaces[interface])
    assert read <= set(properties) | {n for i, n in NOT_IN_RUN_JSON if i == interface}


def renamed(text: str, interface: str, old: str, new: str) -> str:
    start = text.index(f"export interface {interface} ")
    end = text.index("\n}", start)
    body = re.sub(rf"\b{old}(\??):", rf"{new}\1:", text[start:end])
    return text[:start] + body + text[end:]


@pytest.mark.parametrize(
    ("interface", "old", "new"),
    [("IRun", "started_at", "started"), ("IStageRun", "reason", "why"), ("IBuild", "bento", "tag")],
)
def test_a_field_renamed_in_types_ts_is_found(interface: str, old: str, new: str) -> None:
    text = renamed(TYPES_TS.read_text(encoding="utf-8"), interface, old, new)
    assert f"{interface}.{new} is not in the schema" in ts_problems(text, schema()["definitions"])


def test_a_field_renamed_in_the_schema_is_found() -> None:
    definitions = schema()["definitions"]
    run = definitions["RunRecord"]["properties"]
    run["finished"] = run.pop("finished_at")
    problems = ts_problems(TYPES_TS.read_text(encoding="utf-8"), definitions)
    assert problems == ["IRun.finished_at is not in the schema"]


def test_a_type_changed_in_the_schema_is_found() -> None:
    definitions = schema()["definitions"]
    definitions["StageEntry"]["properties"]["seconds"] = {"type": ["string", "null"]}
    problems = ts_problems(TYPES_TS.read_text(encoding="utf-8"), definitions)
    assert problems == ["IStageRun.seconds: number | null cannot hold ['string']"]


def test_the_types_parser_reads_nested_objects() -> None:
    interfaces, aliases = parse_ts(TYPES_TS.read_text(encoding="utf-8"))
    assert interfaces["IRun"]["model"] == (True, "{ class?: string; path?: string } | null")
    assert "running" in aliases["RunStatus"]
    assert TsTypes("export type X = 'a' | 'b';").kinds("X | null") == {"string", "null"}
