"""Script and markup in any value mlnb writes into HTML come out as text, never as elements.

Every field that reaches a page gets a payload: parameter values and defaults, the notebook's
file name, a Kale step's name, metric names, training column names and categories, the model's
class, an error message; in the monitoring report the Bento, run, folder, feature names,
categories, predictions and rejections; in the notebook panel its tables and its error. An
HTML parser then finds no element or attribute the payloads would make, and finds each payload
in the page's text. Two real runs (``mlnb run`` in a kernel) are shared by the module.
"""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlnb.errors import RequestRejected
from mlnb.monitoring import live
from mlnb.monitoring.alerts import MonitorSettings
from mlnb.reporting.charts import lines_over_time, paired_bars
from mlnb.serving.info import ServiceInfo
from mlnb.serving.schema import RequestSchema

from .conftest import code_cell, mlnb, notebook_json


def script(where: str) -> str:
    return f"<script>alert('{where}')</script>"


def img(where: str) -> str:
    return f"<img src=x onerror=alert('{where}')>"


def svg(where: str) -> str:
    return f"<svg/onload=alert('{where}')>"


def bold(where: str) -> str:
    return f"<b>bold-{where}</b>"


NOTEBOOK_NAME = img("notebook") + ".ipynb"
GIVEN = img("given")  # `-r test_size GIVEN`: a string where the notebook has a number
DEFAULT = script("default")
NUMBER_COLUMN = script("column")
TEXT_COLUMN = img("column")
CATEGORIES = [bold("category"), script("category")]
MODEL_CLASS = script("model")
METRICS = [script("metric"), img("metric")]
STEP = svg("step")
ERROR = script("error")
OWN_OUTPUT = "<i id='notebook-output'>the notebook's own HTML</i>"


class Page(HTMLParser):
    """The elements, attributes, script contents and text of a page, as a browser parses it."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.bold: list[str] = []
        self.text: list[str] = []
        self._open: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag in ("script", "b"):
            (self.scripts if tag == "script" else self.bold).append("")
        self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        inside = self._open[-1] if self._open else ""
        if inside == "script":
            self.scripts[-1] += data
        elif inside != "style":
            self.text.append(data)
        if "b" in self._open and self.bold:
            self.bold[-1] += data

    @property
    def visible(self) -> str:
        return "".join(self.text)

    def injected(self) -> list[str]:
        """What a payload would have made of the page: handlers, scripts, images, bold text."""
        found = [
            f"<{tag} {name}=...>"
            for tag, attrs in self.elements
            for name in attrs
            if name.lower().startswith("on")
        ]
        found += [f"<script>{s}</script>" for s in self.scripts if "alert(" in s]
        found += [f"<img {a}>" for tag, a in self.elements if tag == "img" and a.get("src") == "x"]
        found += [f"<b>{b}</b>" for b in self.bold if "bold-" in b]
        return found


def assert_escaped(page: str, *payloads: str) -> Page:
    parsed = Page(page)
    assert parsed.injected() == []
    missing = [p for p in payloads if p not in parsed.visible]
    assert missing == [], "not shown as text"
    return parsed


def section(page: str, start: str, end: str) -> str:
    """The part of ``page`` from ``start`` to ``end``: text found there is not from elsewhere."""
    first = page.index(start)
    return page[first : page.index(end, first) + len(end)]


def with_ids(cells: list[dict]) -> dict:
    document = notebook_json(cells)
    for index, cell in enumerate(document["cells"]):
        cell["id"] = f"cell-{index}"
    return document


def hostile_notebook() -> dict:
    frame = (
        f"X_train = pd.DataFrame({{{NUMBER_COLUMN!r}: np.linspace(0, 1, 40), "
        f"{TEXT_COLUMN!r}: {CATEGORIES!r} * 20}})\n"
        f"y_train = (X_train[{NUMBER_COLUMN!r}] > 0.5).astype(int)\n"
        "print(test_size, label)\n"
        f"display(HTML({OWN_OUTPUT!r}))"
    )
    model = (
        "class Model:\n"
        "    def fit(self, X, y):\n"
        "        self.n_features_in_ = X.shape[1]\n"
        "        self.mean_ = float(y.mean())\n"
        "        return self\n\n"
        "    def predict(self, X):\n"
        "        return np.full(len(X), self.mean_)\n\n\n"
        f"Model.__qualname__ = {MODEL_CLASS!r}\n"
        "model = Model().fit(X_train, y_train)\n"
        f"metrics = {{{METRICS[0]!r}: 0.5, {METRICS[1]!r}: 1.0, 'text': {img('value')!r}}}"
    )
    return with_ids(
        [
            code_cell("import numpy as np\nimport pandas as pd\nfrom IPython.display import HTML"),
            code_cell(f"test_size = 0.25\nlabel = {DEFAULT!r}", tags=("parameters",)),
            code_cell(frame, tags=("mlnb:data",)),
            code_cell(model, tags=("mlnb:train",)),
        ]
    )


def failing_kale_notebook() -> dict:
    return with_ids(
        [
            code_cell("import numpy as np", tags=("imports",)),
            code_cell("rows = 10", tags=("pipeline-parameters",)),
            code_cell(
                f"values = np.arange(rows)\nraise ValueError({ERROR!r})", tags=(f"step:{STEP}",)
            ),
        ]
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("hostile")
    store = folder / ".mlnb"
    notebook = folder / NOTEBOOK_NAME
    notebook.write_text(json.dumps(hostile_notebook()))
    kale = folder / "kale.ipynb"
    kale.write_text(json.dumps(failing_kale_notebook()))
    args = ("--store", str(store), "--json")
    ran = mlnb("run", str(notebook), "-r", "test_size", GIVEN, *args)
    assert ran.returncode == 0, ran.stderr
    failed = mlnb("run", str(kale), *args)
    assert failed.returncode != 0
    return {
        "folder": folder,
        "store": store,
        "notebook": notebook,
        "kale": kale,
        "ok": json.loads(ran.stdout),
        "failed": json.loads(failed.stdout),
    }


def report(runs: dict[str, Any], which: str) -> str:
    output = runs["folder"] / f"{which}.html"
    run_id = runs[which]["run_id"]
    result = mlnb("report", run_id, "--store", str(runs["store"]), "-o", str(output))
    assert result.returncode == 0, result.stderr
    return output.read_text()


@pytest.mark.slow
def test_the_run_report_shows_every_value_of_the_run_as_text(runs: dict[str, Any]) -> None:
    record = runs["ok"]
    assert record["parameters"] == {"test_size": GIVEN, "label": DEFAULT}
    assert record["model"]["class"].endswith(MODEL_CLASS)
    assert record["training_data"]["columns"] == [NUMBER_COLUMN, TEXT_COLUMN]
    page = report(runs, "ok")
    parsed = assert_escaped(page)
    header = section(page, '<section class="mlnb-header">', "</section>")
    assert_escaped(
        header, GIVEN, DEFAULT, NOTEBOOK_NAME, MODEL_CLASS, *METRICS, NUMBER_COLUMN, TEXT_COLUMN
    )
    # the notebook's own outputs are as nbconvert renders them: its HTML is HTML
    assert ("i", {"id": "notebook-output"}) in parsed.elements


@pytest.mark.slow
def test_a_failed_run_shows_its_step_and_error_as_text(runs: dict[str, Any]) -> None:
    record = runs["failed"]
    assert record["error"]["stage"] == STEP and record["error"]["evalue"] == ERROR
    page = report(runs, "failed")
    assert_escaped(page)
    header = section(page, '<section class="mlnb-header">', "</section>")
    assert_escaped(header, STEP, f"ValueError: {ERROR}")
    heading = section(page, "<h2>Stage <code>", "</h2>")  # the stage's heading in the notebook
    assert_escaped(heading, f"Stage {STEP} · step")


@pytest.mark.slow
def test_the_notebook_panel_shows_names_and_messages_as_text(runs: dict[str, Any]) -> None:
    from mlnb.panel.widgets import MlnbPanel

    panel = MlnbPanel(runs["notebook"], str(runs["store"]))
    assert_escaped(panel.title.value, NOTEBOOK_NAME)
    assert_escaped(panel.history.value, *METRICS)
    kale = MlnbPanel(runs["kale"], str(runs["store"]))
    assert_escaped(kale.stages.value, STEP)
    assert_escaped(kale.history.value, f"{STEP}: failed")
    kale.show_error(f"ValueError: {ERROR}")
    assert_escaped(kale.error.value, f"ValueError: {ERROR}")


@pytest.mark.slow
def test_the_monitoring_report_shows_logged_names_and_values_as_text(
    runs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's monitor fed the hostile run's training data, requests and rejections."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    training = runs["ok"]["training_data"]
    classes = [script("class"), bold("class")]
    folder = tmp_path / img("folder")
    info = ServiceInfo(
        bento_name=script("bento"),
        bento_version="v1",
        run_id=script("run"),
        monitor_dir=folder,
        task="classification",
        classes=classes,
        features=[f.to_json() for f in RequestSchema.from_training_data(training).fields],
        profile=training["profile"],
        prediction_profile={"kind": "categorical", "frequencies": dict.fromkeys(classes, 0.5)},
    )
    monitor = live.LiveMonitor(info, MonitorSettings(rotate_seconds=0.0))
    live_category = svg("live")
    for period in range(3):  # three segments: drift over time has points
        values = [*CATEGORIES, live_category] if period else CATEGORIES
        frame = pd.DataFrame({NUMBER_COLUMN: [0.1 * period] * 30, TEXT_COLUMN: (values * 30)[:30]})
        answers = [{"label": classes[i % 2], "probability": 0.5} for i in range(30)]
        monitor.answer(frame, {"predictions": answers})
        monitor.reject(
            RequestRejected(script("message"), reason=img("reason"), field=script("field"), row=0)
        )
        monitor.flush()
        time.sleep(0.05)
    monitor.stop()
    output = tmp_path / "monitor.html"
    result = mlnb("monitor", str(folder), "-o", str(output))
    assert result.returncode == 0, result.stderr
    page = output.read_text()
    assert page.count("<svg") >= 3  # drift over time, predictions, features
    assert_escaped(
        page,
        script("bento"),
        script("run"),
        img("folder"),
        img("reason"),
        NUMBER_COLUMN,  # drift table, chart titles
        TEXT_COLUMN,
        *CATEGORIES,  # chart labels
        live_category,
        *classes,
    )
    drift = section(page, "<h2>Drift</h2>", "</table>")
    assert_escaped(drift, NUMBER_COLUMN, TEXT_COLUMN)


def test_charts_escape_every_label_and_title() -> None:
    bars = paired_bars([script("bar"), img("bar")], [0.5, 0.5], [0.2, 0.8], title=bold("title"))
    assert_escaped(bars, script("bar"), img("bar"), bold("title"))
    lines = lines_over_time({svg("series"): [0.1, 0.3]}, threshold=0.2, title=script("t"))
    assert_escaped(lines, svg("series"), script("t"))
