"""A build ships nothing it should not: no credential, no side effect, no code run twice.

Static checks are tested on their own and through ``mlnb build``, which refuses before any
run. One project then runs a notebook whose serve code appends a line to a file each time it
is executed, edits it and builds it: the side effect is refused, then allowed with
``--allow-side-effects``, the lines count the executions of the build, and the run built is
one whose data and train stages came from the cache (the rebuild bug of issue 16).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlnb.bento.builder import precheck
from mlnb.bento.secrets import check_no_credentials, scan, scan_files, scan_values
from mlnb.bento.servecode import extract_serve_code
from mlnb.bento.sideeffects import find_side_effects
from mlnb.cli import main
from mlnb.errors import CredentialInServeCodeError
from mlnb.pipeline import load_pipeline

from .build_support import user_env
from .conftest import EXAMPLES, code_cell

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"  # pragma: allowlist secret (AWS's documented example)
SETUP = code_cell("import os\nimport subprocess\nimport pandas as pd")
PARAMS = code_cell("threshold = 0.5\nseed = 1", tags=("parameters",))
DATA = code_cell(
    "X = pd.DataFrame({'a': [1.0, 2.0, 3.0, 4.0]})\ny = [0, 1, 0, 1]", tags=("mlnb:data",)
)
TRAIN = code_cell(
    "from sklearn.linear_model import LogisticRegression\nclf = LogisticRegression().fit(X, y)",
    tags=("mlnb:train",),
    mlnb={"version": 1, "model": "clf"},
)
PREDICT = "def predict(frame):\n    return clf.predict(frame).tolist()"


def cells(serve: str, *, setup: str | None = None, params: str | None = None, data=None):
    return [
        code_cell(setup) if setup else SETUP,
        code_cell(params, tags=("parameters",)) if params else PARAMS,
        code_cell(data, tags=("mlnb:data",)) if data else DATA,
        TRAIN,
        code_cell(serve, tags=("mlnb:serve",)),
    ]


def refused(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """`mlnb build` refuses before running anything; its message."""
    code = main(["build", str(path), "--store", str(tmp_path / "store")])
    assert code == 2
    assert not (tmp_path / "store" / "runs").exists()
    return capsys.readouterr().err


# ---- credentials --------------------------------------------------------------------------

PLACES = {
    "serve code, folded": (
        cells(f'KEY = "{AWS_KEY[:4]}" + "{AWS_KEY[4:]}"\n\n{PREDICT}'),
        "cell 5 ('KEY = \"...')",
        "line 1 holds what looks like an AWS access key id",
    ),
    "a comment in the serve code": (
        cells(f"# the old key was {AWS_KEY}\n{PREDICT}"),
        "cell 5 ('#...')",  # the first line holds the key: cut
        "line 1 holds what looks like an AWS access key id",
    ),
    "setup cell": (
        cells(
            "def predict(frame):\n    assert DB\n    return clf.predict(frame).tolist()",
            setup="import pandas as pd\nDB = 'postgres://bob:s3cr3tpw@db:5432/x'",
        ),
        "cell 1 ('import pandas as pd')",
        "line 2 holds what looks like a password in a URL",
    ),
    "parameter default the serve code uses": (
        cells(
            "def predict(frame):\n    headers = {'auth': api_password}\n"
            "    return clf.predict(frame).tolist()",
            params="threshold = 0.5\napi_password = 'hunter2hunter'",
        ),
        "cell 2 ('threshold = 0.5')",
        "line 2 holds what looks like a secret (api_password)",
    ),
    "data cell, shown in the report": (
        cells(
            PREDICT,
            data="TOKEN = ''.join(['ghp_', 'abcdefghijklmnopqrstuvwxyz0123456789'])\n"
            "X = pd.DataFrame({'a': [1.0, 2.0, 3.0, 4.0]})\ny = [0, 1, 0, 1]",
        ),
        'cell 3 ("TOKEN = \'...")',
        "line 1 (shown in the Bento's report.html) holds what looks like a GitHub token",
    ),
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_credential_in_each_place_is_refused_before_any_run(
    place: str, write_notebook, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notebook, cell, message = PLACES[place]
    err = refused(write_notebook(notebook, "secret.ipynb"), tmp_path, capsys)
    assert cell in err and message in err
    assert "it would ship inside the Bento" in err
    for secret in ("IOSFODNN7EXAMPLE", "s3cr3tpw", "hunter2hunter", "abcdefghijklmnop"):
        assert secret not in err  # never the value, not even part of it
    assert 'os.environ["API_KEY"] inside predict' in err and "BentoML secrets" in err


@pytest.mark.parametrize(
    ("source", "line"),
    [
        (f'key = "{AWS_KEY[:4]}" + "{AWS_KEY[4:]}"', 1),
        (f'key = (\n    "{AWS_KEY[:4]}"\n    "{AWS_KEY[4:]}"\n)', 2),
        (f'P = "{AWS_KEY[:4]}"\nkey = f"{{P}}{AWS_KEY[4:]}"', 2),
        (f'key = "".join(["{AWS_KEY[:4]}", "{AWS_KEY[4:10]}", "{AWS_KEY[10:]}"])', 1),
        (f'connect(key="{AWS_KEY[:8]}" "{AWS_KEY[8:]}")', 1),
    ],
)
def test_constant_strings_are_folded_before_matching(source: str, line: int) -> None:
    (finding,) = scan([(3, source)])
    assert (finding.cell, finding.line, finding.what) == (3, line, "an AWS access key id")


def test_keyword_rules_cover_names_detect_secrets_misses() -> None:
    found = scan([(0, "API_TOKEN = 'tk_9f8e7d6c5b4a3f2e1d0c'\nconnect(token='tk_1a2b3c4d5e6f')")])
    assert [(f.line, f.what) for f in found] == [
        (1, "a secret (API_TOKEN)"),
        (2, "a secret (token)"),
    ]


def test_a_line_marked_the_detect_secrets_way_passes() -> None:
    digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert scan([(0, f'EXPECTED = "{digest}"')])[0].what.startswith("a random-looking key")
    assert scan([(0, f'EXPECTED = "{digest}"  # pragma: allowlist secret')]) == []


def test_the_runs_value_of_a_parameter_is_scanned_at_its_line() -> None:
    source = "seed = 1\napi_password = ''  # given with -r at run time"
    (finding,) = scan_values(1, source, {"seed": 1, "api_password": "s3cr3t-V4lue99"})
    assert (finding.cell, finding.line) == (1, 2)
    assert finding.where == "the run's value of parameter 'api_password'"


def test_generated_files_are_scanned_by_file_and_line() -> None:
    service = 'MODEL = BentoModel("nb_model:b08b005438f3")\nKEY = "' + AWS_KEY + '"\n'
    spec = json.dumps({"bento_version": "0ee3c1abcd19", "notebook_sha256": "c06c6cad6ceb3938"})
    findings = scan_files({"service.py": service, "mlnb_service.json": spec})
    assert [(f.where, f.line) for f in findings] == [("service.py", 2)]  # no digest matched
    with pytest.raises(CredentialInServeCodeError) as raised:
        check_no_credentials(findings, "nb.ipynb", None)
    assert "service.py, which the build generated, line 2" in str(raised.value)
    assert AWS_KEY not in str(raised.value)


# ---- side effects -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serve", "line", "call", "function"),
    [
        ("_rc = os.system('curl example.com')\n" + PREDICT, 1, "os.system", None),
        (
            "def predict(frame):\n    subprocess.run(['date'])\n    return clf.predict(frame)",
            2,
            "subprocess.run",
            "predict",
        ),
        (
            "from subprocess import check_output as go\nOUT = go(['id'])\n" + PREDICT,
            2,
            "subprocess.check_output",
            None,
        ),
        (
            "import urllib.request\nPAGE = urllib.request.urlopen('http://x')\n" + PREDICT,
            2,
            "urllib.request.urlopen",
            None,
        ),
        ("import requests\nR = requests.get('http://x')\n" + PREDICT, 2, "requests.get", None),
        (
            "from pathlib import Path\n# a marker\nN = Path('/tmp/x').write_text('1')\n" + PREDICT,
            3,
            ".write_text()",
            None,
        ),
        (
            "def predict(frame):\n    with open('/tmp/log', 'a') as f:\n        f.write('x')\n"
            "    return clf.predict(frame)",
            2,
            "open(..., 'a')",
            "predict",
        ),
        ("import shutil\nGONE = shutil.rmtree('/tmp/x')\n" + PREDICT, 2, "shutil.rmtree", None),
        ("_ = os.remove('/tmp/x')\n" + PREDICT, 1, "os.remove", None),
    ],
)
def test_side_effects_are_found_with_cell_line_and_call(
    serve: str, line: int, call: str, function: str | None, write_notebook
) -> None:
    pipeline = load_pipeline(write_notebook(cells(serve)))
    code = extract_serve_code(pipeline, "clf", pipeline.parameter_defaults)
    (effect,) = find_side_effects(code, {4: serve})
    assert (effect.cell, effect.line, effect.call, effect.function) == (4, line, call, function)


def test_harmless_calls_are_not_side_effects(write_notebook) -> None:
    serve = (
        "import shutil\nimport json\nWHERE = shutil.which('python')\n"
        "NAME = os.path.join('a', 'b')\nTEXT = open(os.devnull).read()\n"
        "def predict(frame):\n    frame = frame.rename(columns=str)\n"
        "    return json.loads(json.dumps(clf.predict(frame).tolist()))"
    )
    pipeline = load_pipeline(write_notebook(cells(serve)))
    code = extract_serve_code(pipeline, "clf", pipeline.parameter_defaults)
    assert find_side_effects(code, {4: serve}) == []


def test_a_side_effect_is_refused_before_any_run_unless_allowed(
    write_notebook, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve = "def predict(frame):\n    subprocess.run(['touch', '/tmp/x'])\n    return []"
    path = write_notebook(cells(serve), "effects.ipynb")
    err = refused(path, tmp_path, capsys)
    assert "cell 5 ('def predict(frame):'): line 2 calls subprocess.run" in err
    assert "which runs a command, in predict, which the service runs on requests" in err
    assert "Fix: " in err and "mlnb build --allow-side-effects" in err
    assert precheck(str(path), allow_side_effects=True).functions["predict"]


# ---- real builds: the execution count and the rebuild after an edit -----------------------


def mlnb(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlnb", *args],
        cwd=root,
        env=user_env(root),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def edit(path: Path, index: int, change: Any) -> None:
    document = json.loads(path.read_text())
    cell = document["cells"][index]
    cell["source"] = change("".join(cell["source"]))
    path.write_text(json.dumps(document))


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """breast_cancer.ipynb with serve code that counts its executions: run, serve cell
    edited, run again (data and train cached), a markdown edit, then built twice."""
    root = tmp_path_factory.mktemp("integrity")
    notebook = root / "counted.ipynb"
    count = root / "executions.txt"
    shutil.copy(EXAMPLES / "breast_cancer.ipynb", notebook)
    edit(notebook, 10, lambda s: f'_rc = open({str(count)!r}, "a").write("executed\\n")\n' + s)
    first = mlnb(root, "run", notebook.name, "--json")
    assert first.returncode == 0, first.stderr
    edit(notebook, 10, lambda s: s.replace('["malignant", "benign"]', '["M", "B"]'))
    second = mlnb(root, "run", notebook.name, "--json")
    assert second.returncode == 0, second.stderr
    record = json.loads(second.stdout)
    edit(notebook, 0, lambda s: s + "\n\nEdited after the last run.")
    after_runs = len(count.read_text().splitlines())
    refused = mlnb(root, "build", notebook.name)
    after_refusal = len(count.read_text().splitlines())
    built = mlnb(root, "build", notebook.name, "--allow-side-effects", "--json")
    assert built.returncode == 0, built.stderr
    return {
        "root": root,
        "run": record,
        "after_runs": after_runs,
        "refused": refused,
        "after_refusal": after_refusal,
        "built": built,
        "executions": len(count.read_text().splitlines()) - after_refusal,
        "result": json.loads(built.stdout),
    }


def test_the_side_effect_at_import_is_refused_then_allowed(edited: dict[str, Any]) -> None:
    refused = edited["refused"]
    assert refused.returncode == 2
    assert 'cell 11 ("_rc = open(' in refused.stderr
    assert "line 1 calls open(..., 'a'), which changes files, at import" in refused.stderr
    assert "--allow-side-effects" in refused.stderr
    assert edited["after_refusal"] == edited["after_runs"]  # refused before executing it
    assert "warning (--allow-side-effects): cell 11, line 1 calls open" in edited["built"].stderr


def test_the_build_executes_the_serve_code_once_per_check(edited: dict[str, Any]) -> None:
    # once around the original model (the serve-code check, the prediction profile and the
    # original's side of the agreement), once around the ONNX conversion; it was 4 before
    assert edited["result"]["format"] == "onnx"
    assert edited["executions"] == 2
    assert edited["after_runs"] == 2  # each run executed the serve cell once


def test_a_run_with_cached_stages_builds_after_a_notebook_edit(edited: dict[str, Any]) -> None:
    run = edited["run"]
    statuses = {stage["kind"]: stage["status"] for stage in run["stages"]}
    assert statuses == {"data": "cached", "train": "cached", "serve": "ran"}
    assert edited["result"]["run_id"] == run["run_id"]
    assert "changed since run" in edited["built"].stderr
    served = Path(edited["result"]["build_dir"]) / "mlnb_serve_code.py"
    assert 'LABELS = ["M", "B"]' in served.read_text()  # that run's serve code
