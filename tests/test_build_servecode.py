"""What of a notebook goes into the service, and what `mlnb build` refuses before any run."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlnb.bento.secrets import scan, secret_name
from mlnb.bento.servecode import extract_serve_code
from mlnb.cli import main
from mlnb.pipeline import load_pipeline

from .conftest import EXAMPLES, code_cell

SETUP = code_cell("%load_ext mlnb\nimport json\nimport numpy as np\nimport pandas as pd")
PARAMS = code_cell("threshold = 0.5\nseed = 1", tags=("parameters",))
DATA = code_cell(
    "X = pd.DataFrame({'a': [1.0, 2.0, 3.0, 4.0]})\ny = [0, 1, 0, 1]", tags=("mlnb:data",)
)
TRAIN = code_cell(
    "from sklearn.linear_model import LogisticRegression\nclf = LogisticRegression().fit(X, y)",
    tags=("mlnb:train",),
    mlnb={"version": 1, "model": "clf"},
)


def serve_code_of(write_notebook, *serve_sources: str):
    cells = [SETUP, PARAMS, DATA, TRAIN]
    cells += [
        code_cell(source, tags=("mlnb:serve",) if i == 0 else ())
        for i, source in enumerate(serve_sources)
    ]
    pipeline = load_pipeline(write_notebook(cells))
    return extract_serve_code(pipeline, "clf", {"threshold": 0.7, "seed": 1})


def build_error(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["build", str(path), "--store", str(tmp_path / "store")])
    assert code == 2
    assert not (tmp_path / "store" / "runs").exists()  # refused before running anything
    return capsys.readouterr().err


def test_the_examples_keep_their_definitions_and_leave_the_demo_call_out() -> None:
    pipeline = load_pipeline(EXAMPLES / "breast_cancer.ipynb")
    serve = extract_serve_code(pipeline, "model", pipeline.parameter_defaults)
    assert serve.setup_source == "import pandas as pd"
    assert serve.source.startswith('LABELS = ["malignant", "benign"]\n\n\ndef predict(')
    assert serve.left_out == ["cell 12, line 1: predict(X_test.head(3))"]
    assert serve.functions == {"predict": True, "preprocess": False, "postprocess": False}
    assert serve.model_members == {"predict_proba"}


def test_parameters_become_constants_and_unreachable_demo_assignments_go(write_notebook) -> None:
    serve = serve_code_of(
        write_notebook,
        "# the cut-off\nCUT = threshold\n\n"
        "def preprocess(frame):\n    return frame.fillna(0)\n\n"
        "def predict(frame):\n    return (clf.predict_proba(frame)[:, 1] > CUT).tolist()",
        "sample = X.head(2)\npredict(sample)\nprint(json.dumps({}))",
    )
    assert serve.parameters == {"threshold": 0.7}
    assert serve.source.startswith("# the cut-off\nCUT = threshold")
    assert serve.functions == {"predict": True, "preprocess": True, "postprocess": False}
    assert serve.setup_source == ""  # json is only used by the demo lines
    assert serve.left_out == [
        "cell 6, line 1: sample = X.head(2) (reads 'X')",
        "cell 6, line 2: predict(sample)",
        "cell 6, line 3: print(json.dumps({}))",
    ]


def test_a_name_from_another_stage_is_refused_naming_the_cell(
    write_notebook, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = "def predict(frame):\n    return clf.predict(frame[X.columns]).tolist()"
    with pytest.raises(Exception, match="stage 'data' defines"):
        serve_code_of(write_notebook, source)
    path = write_notebook(
        [SETUP, PARAMS, DATA, TRAIN, code_cell(source, tags=("mlnb:serve",))], "uses_x.ipynb"
    )
    err = build_error(path, tmp_path, capsys)
    assert "cell 5 ('def predict(frame):')" in err
    assert "reads 'X', which stage 'data' defines" in err
    assert "Fix: make 'X' part of the model" in err


def test_a_predict_without_its_argument_is_refused(write_notebook) -> None:
    with pytest.raises(Exception, match=r"predict must take one argument \(predict\(frame\)\)"):
        serve_code_of(write_notebook, "def predict():\n    return []")


def test_a_credential_in_the_serve_code_is_refused_with_cell_and_line(
    write_notebook, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve = code_cell(
        "import os\nLABELS = ['no', 'yes']\nAPI_TOKEN = 'tk_9f8e7d6c5b4a3f2e1d0c'\n\n"
        "def predict(frame):\n    return clf.predict(frame).tolist()",
        tags=("mlnb:serve",),
    )
    path = write_notebook([SETUP, PARAMS, DATA, TRAIN, serve], "secret.ipynb")
    err = build_error(path, tmp_path, capsys)
    assert "cell 5 ('import os')" in err and "line 3" in err
    assert "looks like a secret (API_TOKEN)" in err
    assert "9f8e7d6c5b4a3f2e1d0c" not in err  # the value is masked
    assert 'os.environ["API_KEY"]' in err


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("key = 'AKIAABCDEFGHIJKLMNOP'", "an AWS access key id"),
        ("client = make(api_key='sk-abcdefghijklmnopqrstuvwx')", "an API secret key"),
        ("URL = 'postgres://bob:s3cret@db:5432/sales'", "a password in a URL"),
        ("settings = {'password': 'hunter22'}", "a secret (password)"),
        ("PEM = '-----BEGIN RSA PRIVATE KEY-----'", "a private key"),
    ],
)
def test_credential_shapes_and_names_are_found(line: str, what: str) -> None:
    (finding,) = scan([(7, f"x = 1\n{line}")])
    assert (finding.cell, finding.line, finding.what) == (7, 2, what)


@pytest.mark.parametrize(
    "line",
    [
        "tokenizer = 'bert-base-uncased'",
        "password = os.environ['DB_PASSWORD']",
        "max_tokens = '512'",
        "API_KEY = ''",
        "token = '<your token here>'",
        "label = 'the password field'",
    ],
)
def test_ordinary_strings_are_not_credentials(line: str) -> None:
    assert scan([(0, line)]) == []


def test_secret_names_are_read_by_words() -> None:
    assert [secret_name(n) for n in ("dbPassword", "AUTH_TOKEN", "access_key_id")] == [True] * 3
    assert [secret_name(n) for n in ("tokenizer", "passenger", "bypass")] == [False] * 3
