"""The monitor report's charts as people read them: a 30-feature log over two days, drifting
features of different strength; the table sorted by PSI, the top drifted features over a real
time axis with their full names in distinct colours, and no two tick labels overlapping."""

from __future__ import annotations

import datetime
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from markupsafe import Markup

from mlnb.reporting.charts import (
    CHAR_WIDTH_EM,
    LINE_PALETTE,
    lines_over_time,
    paired_bars,
    spaced_labels,
    text_width,
    time_ticks,
    top_series,
)
from mlnb.run.profile import column_profile

SVG = "{http://www.w3.org/2000/svg}"
LONG_NAME = "customer lifetime value, trailing twelve months (EUR, net of refunds)"
NAMES = [
    "mean radius",
    "mean texture",
    "mean perimeter",
    "mean area",
    "mean smoothness",
    "mean compactness",
    "mean concavity",
    "mean concave points",
    "mean symmetry",
    "mean fractal dimension",
    "radius error",
    "texture error",
    "perimeter error",
    "area error",
    "smoothness error",
    "compactness error",
    "concavity error",
    "concave points error",
    "symmetry error",
    "fractal dimension error",
    "worst radius",
    "worst texture",
    "worst perimeter",
    "worst area",
    "worst smoothness",
    "worst compactness",
    "worst concavity",
    "worst concave points",
    "worst symmetry",
    LONG_NAME,
]
# feature -> how far it moves by the end of the log, in training standard deviations
SHIFTS = {NAMES[29]: 3.0, NAMES[3]: 2.5, NAMES[27]: 2.0, NAMES[0]: 1.7, NAMES[22]: 1.4}
SHIFTS |= {NAMES[7]: 1.2, NAMES[20]: 1.0, NAMES[13]: 0.8, NAMES[1]: 0.6, NAMES[9]: 0.45}
START = datetime.datetime(2026, 11, 24, 22, 0, tzinfo=datetime.timezone.utc)
HOURS = 50  # the log spans two days and a bit: ticks must say dates or times, not "newest"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A monitoring folder as an older mlnb wrote it (JSON lines), 3,000 rows over 50 hours."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("report") / "logs"
    train = {name: rng.normal(0, 1, 4000) for name in NAMES}
    reference = {
        "bento": "cancer:v1",
        "run_id": "r1",
        "task": "classification",
        "features": {name: column_profile(_series(values)) for name, values in train.items()},
        "prediction": {"kind": "categorical", "frequencies": {"0": 0.5, "1": 0.5}},
        "default_threshold": 0.2,
        "window": 1000,
    }
    root.mkdir(parents=True)
    (root / "reference.json").write_text(json.dumps(reference))
    rows = 3000
    lines = []
    for i in range(rows):
        progress = i / rows
        moment = START + datetime.timedelta(hours=HOURS * progress)
        row = {name: float(rng.normal(SHIFTS.get(name, 0.0) * progress, 1)) for name in NAMES}
        row |= {"prediction": str(i % 2), "request_id": str(i // 5)}
        row["timestamp"] = moment.isoformat()
        lines.append(json.dumps(row))
    for log, text in (("predictions", "\n".join(lines) + "\n"), ("rejections", "")):
        (root / log / "data").mkdir(parents=True)
        (root / log / "data" / "data.0.log").write_text(text)
    return root


def _series(values: np.ndarray):
    import pandas as pd

    return pd.Series(values)


@pytest.fixture(scope="module")
def report(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("out") / "report.html"
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", "monitor", str(folder), "-o", str(output)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return output.read_text()


@pytest.fixture(scope="module")
def summary_json(folder: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", "monitor", str(folder), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", html, re.S)]


def drift_chart(html: str) -> ET.Element:
    return next(s for s in svgs(html) if "PSI per feature over time" in ET.tostring(s, "unicode"))


def table_features(html: str) -> list[str]:
    table = re.search(r'<table class="drift">(.*?)</table>', html, re.S)
    assert table is not None
    return re.findall(r"<tr[^>]*>\s*<td>([^<]*)</td>", table.group(1))


def label_boxes(svg: ET.Element, css_class: str = "tick") -> list[tuple[float, float, float]]:
    """(left, right, y) of each labelled tick, from its x, anchor, font size and text."""
    boxes = []
    for text in svg.iter(f"{SVG}text"):
        if text.get("class") != css_class:
            continue
        label = "".join(text.itertext()).strip()
        tip = text.find(f"{SVG}title")
        if tip is not None and tip.text:
            label = label.removesuffix(tip.text)
        width = text_width(label, float(text.get("font-size", "10")))
        x = float(text.get("x", "0"))
        anchor = text.get("text-anchor", "start")
        left = {"middle": x - width / 2, "end": x - width}.get(anchor, x)
        boxes.append((left, left + width, float(text.get("y", "0"))))
    return boxes


def assert_no_overlap(boxes: list[tuple[float, float, float]], width: float) -> None:
    rows: dict[float, list[tuple[float, float]]] = {}
    for left, right, y in boxes:
        rows.setdefault(y, []).append((left, right))
    for spans in rows.values():
        spans.sort()
        for (_, right), (left, _) in itertools.pairwise(spans):
            assert left >= right, spans
        assert spans[0][0] >= 0 and spans[-1][1] <= width, spans


def test_the_drift_table_is_sorted_by_psi_highest_first(report: str, summary_json: dict) -> None:
    psi = {name: f["psi"] for name, f in summary_json["features"].items()}
    listed = table_features(report)
    assert sorted(listed) == sorted(NAMES)
    assert [psi[name] for name in listed] == sorted(psi.values(), reverse=True)
    assert listed[0] == LONG_NAME  # the strongest shift
    # the feature charts follow the same order, each titled with the whole name
    features = report.split("Features: training against live", 1)[1]
    titles = [
        " ".join("".join(t.itertext()) for t in svg.iter(f"{SVG}text") if t.get("font-weight"))
        for svg in svgs(features)
    ]
    assert titles == listed


def test_the_chart_shows_the_top_eight_features_in_full_in_distinct_colours(
    report: str, summary_json: dict
) -> None:
    chart = drift_chart(report)
    lines = [e for e in chart.iter() if e.get("class") == "series"]
    names = {"".join(e.find(f"{SVG}title").itertext()) for e in lines}  # type: ignore[union-attr]
    peak = {
        name: max(p["psi"][name] for p in summary_json["drift_over_time"] if name in p["psi"])
        for name in NAMES
    }
    expected = sorted(NAMES, key=lambda n: -peak[n])[:8]
    assert names == set(expected)
    legend = ["".join(t.itertext()) for t in chart.iter(f"{SVG}text") if t.get("class") == "legend"]
    assert legend == expected  # full names, highest first, LONG_NAME uncut
    colours = [e.get("stroke") or e.get("fill") for e in lines]
    by_name = {}
    for element, colour in zip(lines, colours, strict=True):
        by_name.setdefault("".join(element.find(f"{SVG}title").itertext()), set()).add(colour)  # type: ignore[union-attr]
    assert all(len(c) == 1 for c in by_name.values())
    assert len({next(iter(c)) for c in by_name.values()}) == 8  # no colour shared
    swatches = [r.get("fill") for r in chart.iter(f"{SVG}rect") if r.get("class") == "legend"]
    assert swatches == [next(iter(by_name[name])) for name in expected]
    assert "The 8 features with the highest PSI over time, of 30 scored" in report
    assert_no_overlap(label_boxes(chart, "legend"), float(chart.get("width", "0")) + 1e9)
    for left, right, _ in label_boxes(chart, "legend"):  # every name inside the SVG
        assert left >= 0 and right <= float(chart.get("width", "0")), (left, right)


def test_the_time_axis_has_times_spaced_by_the_width(report: str) -> None:
    chart = drift_chart(report)
    ticks = ["".join(t.itertext()) for t in chart.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert len(ticks) >= 4
    for tick in ticks:  # a time of day or a date, nothing else
        assert re.fullmatch(r"\d\d:\d\d|[A-Z][a-z]{2} \d\d", tick), tick
    assert any(re.fullmatch(r"[A-Z][a-z]{2} \d\d", t) for t in ticks)  # the axis spans days
    assert "oldest" not in ET.tostring(chart, "unicode")
    assert "2026-11-24" in ET.tostring(chart, "unicode")  # the caption dates the axis
    assert_no_overlap(label_boxes(chart), float(chart.get("width", "0")))
    # ticks are placed by time: x grows with the moment they name
    xs = [float(t.get("x", "0")) for t in chart.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)


def test_no_chart_of_the_report_has_overlapping_tick_labels(report: str) -> None:
    charts = svgs(report)
    assert len(charts) >= 32  # the drift chart, predictions, 30 features
    for chart in charts:
        assert_no_overlap(label_boxes(chart), float(chart.get("width", "0")))


@pytest.mark.parametrize(
    ("span", "pattern"),
    [
        (datetime.timedelta(seconds=40), r"\d\d:\d\d:\d\d"),
        (datetime.timedelta(minutes=45), r"\d\d:\d\d"),
        (datetime.timedelta(hours=7), r"\d\d:\d\d|Nov 25"),  # the date at midnight
        (datetime.timedelta(days=20), r"[A-Z][a-z]{2} \d\d"),
        (datetime.timedelta(days=900), r"\d{4}-\d\d"),
    ],
)
def test_time_ticks_of_any_span_are_times_that_do_not_touch(
    span: datetime.timedelta, pattern: str
) -> None:
    first = START.timestamp()
    last = (START + span).timestamp()
    for width in (240, 720, 1400):

        def x_of(moment: float, width: int = width) -> float:
            return 40 + (width - 60) * (moment - first) / (last - first)

        ticks = time_ticks(first, last, x_of, 2, width - 2)
        assert len(ticks) >= 2, (span, width, ticks)
        assert all(re.fullmatch(pattern, label) for _, label in ticks), ticks
        boxes = [
            (x_of(m) - text_width(t, 10) / 2, x_of(m) + text_width(t, 10) / 2, 0.0)
            for m, t in ticks
        ]
        assert_no_overlap(boxes, width)
        assert all(first <= m <= last for m, _ in ticks)
    wide = time_ticks(first, last, lambda m: 40 + 1340 * (m - first) / (last - first), 2, 1398)
    narrow = time_ticks(first, last, lambda m: 40 + 180 * (m - first) / (last - first), 2, 238)
    assert len(wide) > len(narrow)  # thinned by the width, not by a fixed count


def test_labels_are_thinned_by_width_never_cut_to_overlap() -> None:
    labels = [f"{v:.3g}" for v in np.linspace(-123.4, 987.6, 20)]
    chart = paired_bars(labels, [0.05] * 20, [0.05] * 20, width=360)
    tree = ET.fromstring(str(chart))
    boxes = label_boxes(tree)
    assert 2 <= len(boxes) < 20
    assert_no_overlap(boxes, 360)
    shown = ["".join(t.itertext()) for t in tree.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert set(shown) <= set(labels)  # whole labels, every k-th
    positions = [10.0 * i for i in range(10)]
    assert spaced_labels(positions, ["ab"] * 10, font_size=10) == list(range(0, 10, 2))
    assert CHAR_WIDTH_EM >= 0.55


def test_top_series_takes_the_highest_peaks_and_every_value_is_escaped() -> None:
    series = {f"f{i}": [0.01 * i, None, 0.02 * i] for i in range(12)} | {"empty": [None, None]}
    chosen = top_series(series)
    assert list(chosen) == [f"f{i}" for i in range(11, 3, -1)] and len(chosen) == 8
    hostile = {'<script>alert("x")</script>': [0.1, 0.3], "a&b": [0.2, None]}
    times = [START, START + datetime.timedelta(minutes=5)]
    chart = lines_over_time(hostile, times, threshold=0.2, title="<b>t</b>")
    assert isinstance(chart, Markup)
    assert "<script>" not in chart and "<b>" not in chart
    assert "&lt;script&gt;" in chart and "a&amp;b" in chart
    ET.fromstring(str(chart))  # well-formed
    with pytest.raises(ValueError, match="at most 8 lines"):
        lines_over_time(series, [START, START, START])
    assert len(LINE_PALETTE) == len(set(LINE_PALETTE)) == 8


def test_the_text_summary_lists_drift_by_psi_too(folder: Path, summary_json: dict) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlnb", "monitor", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    table = result.stdout.split("drift over the last", 1)[1].split("drifted features:", 1)[0]
    rows = [line.strip() for line in table.splitlines()[2:] if line.strip()]
    # a name may hold spaces: the row's name is the longest feature name it starts with
    listed = [max((n for n in NAMES if row.startswith(n + " ")), key=len) for row in rows]
    psi = {name: f["psi"] for name, f in summary_json["features"].items()}
    assert sorted(listed) == sorted(NAMES)
    assert [psi[name] for name in listed] == sorted(psi.values(), reverse=True)
