"""Parameter values as the arguments of a child ``mlnb run`` (:mod:`mlnb.run_arguments`), the
one function the REST API and the ``%mlnb`` panel both use: parsed back by ``mlnb run``'s own
parser and parameter reader, the arguments give exactly the values; papermill injects them as
literals of the same values; the panel's form and the REST API agree, None included."""

from __future__ import annotations

import ast
import keyword
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from papermill.translators import PythonTranslator

from mlnb.cli import build_parser
from mlnb.errors import BadRequestError, UnknownParameterError
from mlnb.notebook import parse_notebook
from mlnb.panel.state import cli_parameters, form_fields
from mlnb.parameters import read_parameters
from mlnb.pipeline import Pipeline, pipeline_from_notebook
from mlnb.run.params import given_with_sources, run_parameters, runner_pairs
from mlnb.run.params import resolve_type as p_rule
from mlnb.run_arguments import parameter_arguments, yaml_arguments

from .conftest import code_cell, notebook_json

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n)
)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
DEFAULTS = {
    "int": st.integers(-(10**6), 10**6),
    "float": FLOATS,
    "bool": st.booleans(),
    "str": st.text(max_size=10),
    "none": st.none(),
}
VALUES = {  # what each type of parameter takes
    "int": st.integers(),
    "float": FLOATS | st.integers(-(2**53), 2**53),
    "bool": st.booleans(),
    "str": st.text(),
    "none": st.none() | st.booleans() | st.integers() | FLOATS | st.text(),
}


def notebook(parameters: dict[str, Any]) -> Pipeline:
    """A notebook whose parameters cell sets these defaults."""
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items()) or "pass"
    cells = [code_cell(source, tags=("parameters",)), code_cell("x = 1", tags=("mlnb:data:d",))]
    return pipeline_from_notebook(parse_notebook(notebook_json(cells), "nb.ipynb"))


def what_mlnb_run_sets(pipeline: Pipeline, argv: list[str]) -> dict[str, Any]:
    """The values `mlnb run nb.ipynb ARGV` gives: its parser, then its parameter reader."""
    args = build_parser().parse_args(["run", "nb.ipynb", *argv])
    given, sources = given_with_sources(
        args.parameters_file, args.parameters_yaml, args.parameter, args.raw_parameter
    )
    typed, raw = runner_pairs(given)
    return run_parameters(pipeline, typed, raw, sources).given


@st.composite
def parameters_and_values(draw: st.DrawFn) -> tuple[Pipeline, dict[str, Any]]:
    names = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    kinds = {name: draw(st.sampled_from(sorted(DEFAULTS))) for name in names}
    pipeline = notebook({name: draw(DEFAULTS[kind]) for name, kind in kinds.items()})
    chosen = draw(st.lists(st.sampled_from(names), unique=True))
    return pipeline, {name: draw(VALUES[kinds[name]]) for name in chosen}


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a)))


@settings(max_examples=300, deadline=None)
@given(parameters_and_values())
def test_mlnb_run_reads_back_exactly_the_values(case: tuple[Pipeline, dict[str, Any]]) -> None:
    pipeline, values = case
    argv = parameter_arguments(pipeline.parameters, values, "nb.ipynb")
    assert (argv == []) == (values == {})
    back = what_mlnb_run_sets(pipeline, argv)
    kinds = {p.name: p.type_name for p in pipeline.parameters}
    expected = {n: float(v) if kinds[n] == "float" else v for n, v in values.items()}
    assert back.keys() == expected.keys()
    for name, value in expected.items():
        assert same(back[name], value), (name, back[name], value)
        injected = ast.literal_eval(PythonTranslator.translate(back[name]))
        assert same(injected, value), (name, injected, value)  # what papermill writes


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_the_text_of_a_none_field_is_typed_as_mlnb_run_p_types_it(text: str) -> None:
    pipeline = notebook({"x": None})
    typed = p_rule(text)
    if isinstance(typed, float) and not math.isfinite(typed):  # nan, inf: refused
        with pytest.raises(BadRequestError, match="None, a finite number, a boolean or a str"):
            cli_parameters(form_fields(pipeline.parameters), {"x": text})
        return
    argv = cli_parameters(form_fields(pipeline.parameters), {"x": text})
    if typed is None:
        assert argv == []  # the default, left out
    else:
        by_p = what_mlnb_run_sets(pipeline, ["-p", "x", text]) if text[:1] != "-" else None
        assert same(what_mlnb_run_sets(pipeline, argv)["x"], typed)
        assert by_p is None or same(by_p["x"], typed)


@settings(max_examples=200, deadline=None)
@given(parameters_and_values())
def test_the_panel_and_the_rest_api_send_the_same_arguments(
    case: tuple[Pipeline, dict[str, Any]],
) -> None:
    pipeline, values = case
    fields = {f.name: f for f in form_fields(pipeline.parameters)}
    kinds = {p.name: p.type_name for p in pipeline.parameters}
    defaults = pipeline.parameter_defaults
    form: dict[str, Any] = {}
    for name, value in values.items():
        if kinds[name] == "none":  # a text field: what -p reads as this value, when there is one
            if isinstance(value, float) or not same(p_rule(str(value)), value):
                continue
            form[name] = str(value)
        else:
            form[name] = float(value) if kinds[name] == "float" else value
    changed = {
        n: form[n] if kinds[n] != "none" else p_rule(form[n])
        for n in form
        if not same(form[n] if kinds[n] != "none" else p_rule(form[n]), defaults[n])
    }
    assert all(fields[n].kind != "fixed" for n in form)
    from_panel = cli_parameters(list(fields.values()), form)
    from_api = parameter_arguments(pipeline.parameters, changed)
    panel, api = what_mlnb_run_sets(pipeline, from_panel), what_mlnb_run_sets(pipeline, from_api)
    assert panel.keys() == api.keys() == changed.keys()
    assert all(same(panel[n], api[n]) and same(api[n], changed[n]) for n in changed)


@pytest.mark.parametrize("source", ["x = 0.5", "x = 1", "x = 'a'", "x = True"])
def test_none_is_refused_unless_the_default_is_none(source: str) -> None:
    (param,) = read_parameters(source)
    with pytest.raises(BadRequestError, match=r"expects .*, got null"):
        parameter_arguments([param], {"x": None}, "nb.ipynb")
    with pytest.raises(BadRequestError, match="got null"):
        cli_parameters(form_fields([param]), {"x": None})


def test_a_none_default_takes_none_and_the_text_none_is_none() -> None:
    (param,) = read_parameters("x = None")
    pipeline = notebook({"x": None, "s": "a"})
    assert what_mlnb_run_sets(pipeline, parameter_arguments([param], {"x": None})) == {"x": None}
    assert cli_parameters(form_fields([param]), {"x": "None"}) == []  # the default
    assert what_mlnb_run_sets(pipeline, ["-p", "x", "None"]) == {"x": None}
    # the text None in a field of a string is that string, as -r gives it
    (text,) = [p for p in pipeline.parameters if p.name == "s"]
    argv = cli_parameters(form_fields([text]), {"s": "None"})
    assert what_mlnb_run_sets(pipeline, argv) == {"s": "None"}
    assert what_mlnb_run_sets(pipeline, ["-r", "s", "None"]) == {"s": "None"}


@pytest.mark.parametrize(
    ("source", "value"),
    [("x = 0.5", math.inf), ("x = 0.5", math.nan), ("x = 0.5", 10**400), ("x = None", math.nan),
     ("x = 1", 1.5), ("x = 1", True), ("x = 'a'", 3), ("x = [1]", [2]), ("x = f(1)", "f(2)")],
)  # fmt: skip
def test_values_mlnb_run_would_not_give_back_are_refused(source: str, value: Any) -> None:
    params = read_parameters(source)
    with pytest.raises(BadRequestError):
        parameter_arguments(params, {"x": value}, "nb.ipynb")


def test_an_unknown_name_is_refused_naming_the_known_ones() -> None:
    params = read_parameters("C = 0.5\nseed = 1")
    with pytest.raises(UnknownParameterError, match="'gamma'") as caught:
        parameter_arguments(params, {"gamma": 1}, "nb.ipynb")
    assert caught.value.fix == "use one of: C, seed"
    with pytest.raises(UnknownParameterError):
        parameter_arguments(params, {1: 1}, "nb.ipynb")


def test_a_choice_of_a_number_goes_as_that_number() -> None:
    pipeline = notebook({"n": 3})
    params = read_parameters("n = 3  # choices: 1, 3")
    fields = form_fields(params)
    assert fields[0].kind == "choice"
    assert cli_parameters(fields, {"n": "3"}) == []  # the default, not the string "3"
    assert what_mlnb_run_sets(pipeline, cli_parameters(fields, {"n": "1"})) == {"n": 1}


def test_a_value_equal_to_its_default_is_passed_when_asked_for() -> None:
    (param,) = read_parameters("C = 0.5")
    assert parameter_arguments([param], {"C": 0.5}) == ["-y", "{C: 0.5}"]
    assert cli_parameters(form_fields([param]), {"C": 0.5}) == []  # the form drops it


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(NAMES, st.text() | st.integers() | FLOATS | st.booleans() | st.none()))
def test_yaml_arguments_give_any_values_back(values: dict[str, Any]) -> None:
    argv = yaml_arguments(values)
    back = what_mlnb_run_sets(notebook(dict.fromkeys(values, 0)), argv) if values else {}
    assert back.keys() == values.keys()
    assert all(same(back[n], v) for n, v in values.items())


def test_a_yaml_line_break_in_a_string_comes_back_as_it_was() -> None:
    # PyYAML writes U+0085 as it is when allowed unicode, and reads it back as a space
    assert what_mlnb_run_sets(notebook({"s": "a"}), yaml_arguments({"s": "a\x85b"})) == {
        "s": "a\x85b"
    }
