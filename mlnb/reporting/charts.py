"""Small inline SVG charts for self-contained HTML reports: paired bars, lines over time and
horizontal bars (feature importance).

A chart is :class:`markupsafe.Markup`, the type a template with autoescape writes as it is:
every label, name and title in it (feature names, categories, predictions come from the
training data and the requests) is escaped here, by the escaper the templates use.
"""

from __future__ import annotations

import datetime
import itertools
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence

from markupsafe import Markup, escape

TRAINING_COLOUR = "#7f8c8d"
LIVE_COLOUR = "#2e86de"
ALERT_COLOUR = "#e74c3c"
PALETTE = ("#2e86de", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#d35400", "#2c3e50")
# Lines drawn together: eight hues far apart (Tableau 10 without its red, which the threshold
# line has, and its grey, which training has), so each shown line has its own.
LINE_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#9c755f",
    "#ff9da7",
)
# Labels are placed by an estimate of their width: characters times this many ems (a
# sans-serif's digits and lower case average about 0.55 em; 0.6 leaves room).
CHAR_WIDTH_EM = 0.6
TICK_FONT = 10
LEGEND_FONT = 11
LEGEND_ROW = 16
LABEL_GAP = 6.0  # px between two tick labels at least
MAX_TICKS = 40
LEGEND_WIDTH = 120  # the training/live legend in a bar chart's top right corner
BOLD_WIDTH = 1.1  # bold glyphs are about a tenth wider
# Steps between time ticks, in seconds: 1 s to 12 h, days, weeks, months (28 d: one month)
TIME_STEPS = (
    *(1, 2, 5, 10, 15, 30),
    *(60, 120, 300, 600, 900, 1800),
    *(3600, 7200, 10800, 21600, 43200),
    *(86400, 2 * 86400, 7 * 86400, 14 * 86400),
    *(28 * 86400, 3 * 28 * 86400, 6 * 28 * 86400, 12 * 28 * 86400),
)


def paired_bars(
    labels: Sequence[str],
    training: Sequence[float],
    live: Sequence[float],
    *,
    width: int = 360,
    height: int = 150,
    title: str = "",
) -> Markup:
    """Training against live fractions, one pair of bars per bin or category; the title whole
    (wrapped, the legend below it when they would not share a line), bin labels thinned by
    the width."""
    n = max(len(labels), 1)
    top = max([*training, *live, 1e-9])
    heading, header = _heading(title, width, reserve=LEGEND_WIDTH)
    plot_h = height - 34
    slot = (width - 20) / n
    bar = max(slot / 2 - 1, 1)
    total = height + header - 16
    parts = [_open(width, total, ""), heading]
    for i, (label, t, v) in enumerate(zip(labels, training, live, strict=True)):
        x = 10 + i * slot
        for offset, value, colour, who in (
            (0, t, TRAINING_COLOUR, "training"),
            (bar, v, LIVE_COLOUR, "live"),
        ):
            h = plot_h * value / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{header + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {who} '
                f"{value:.3f}</title></rect>"
            )
    texts = [_short(label, 16) for label in labels]
    centres = [10 + (i + 0.5) * slot for i in range(len(texts))]
    for i in spaced_labels(centres, texts, font_size=9):
        tip = f"<title>{escape(labels[i])}</title>" if texts[i] != labels[i] else ""
        parts.append(
            f'<text class="tick" x="{centres[i]:.1f}" y="{total - 4}" font-size="9" '
            f'text-anchor="middle">{escape(texts[i])}{tip}</text>'
        )
    legend_y = 11 if header == 16 else header - 4
    parts.append(_legend(width, [("training", TRAINING_COLOUR), ("live", LIVE_COLOUR)], legend_y))
    parts.append("</svg>")
    return Markup("".join(parts))


def lines_over_time(
    series: Mapping[str, Sequence[float | None]],
    times: Sequence[datetime.datetime] | None = None,
    *,
    threshold: float | None = None,
    span: tuple[datetime.datetime, datetime.datetime] | None = None,
    width: int = 720,
    plot_height: int = 180,
    title: str = "",
) -> Markup:
    """One line per series over a time axis (``times``: one moment per value, UTC; ``span``
    the axis' first and last moment, default the first and last of ``times``; without
    ``times`` the values are numbered periods, oldest first), with an
    optional dashed threshold line, time ticks spaced so their labels never touch and a
    legend of full names below, wrapped onto as many rows as it needs.

    At most :data:`LINE_PALETTE`'s number of series, so no two lines share a colour: pick
    the ones to show before (:func:`top_series`).
    """
    if len(series) > len(LINE_PALETTE):
        raise ValueError(f"at most {len(LINE_PALETTE)} lines, one colour each")
    values = [v for s in series.values() for v in s if v is not None]
    levels = _nice_levels(max([*values, threshold or 0.0, 1e-9]))
    top = levels[-1]
    left, right = 44, 16
    plot_w = width - left - right
    plot_top = 22 if title else 8
    axis_y = plot_top + plot_height
    length = max((len(v) for v in series.values()), default=0)
    instants = [_utc(t).timestamp() for t in times] if times is not None else []
    instants = instants or [float(k) for k in range(length)]
    ends = [_utc(t).timestamp() for t in span] if span and times is not None else instants
    first, last = (min(ends), max(ends)) if ends else (0.0, 0.0)

    def x_of(moment: float) -> float:
        if last == first:
            return left + plot_w / 2
        return left + plot_w * (moment - first) / (last - first)

    def y_of(value: float) -> float:
        return axis_y - plot_height * value / top

    body = []
    for level in levels:
        y = y_of(level)
        grid = "#999" if level == 0 else "#eee"
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{grid}"/>'
            f'<text class="ylabel" x="{left - 4}" y="{y + 3.5:.1f}" font-size="{TICK_FONT}" '
            f'text-anchor="end">{level:g}</text>'
        )
    if threshold is not None:
        y = y_of(threshold)
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="{ALERT_COLOUR}" stroke-dasharray="4 3"><title>threshold {threshold:g}'
            "</title></line>"
            f'<text x="{left + plot_w}" y="{y - 3:.1f}" font-size="{TICK_FONT}" '
            f'text-anchor="end" fill="{ALERT_COLOUR}">threshold {threshold:g}</text>'
        )
    ticks = (
        time_ticks(first, last, x_of, 2, width - 2)
        if times is not None
        else [
            (instants[i], str(i + 1))
            for i in spaced_labels(
                [x_of(t) for t in instants], [str(i + 1) for i in range(len(instants))]
            )
        ]
    )
    for moment, label in ticks:
        x = x_of(moment)
        body.append(
            f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#999"/>'
            f'<text class="tick" x="{x:.1f}" y="{axis_y + 15}" font-size="{TICK_FONT}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    caption = _axis_caption(first, last) if times is not None else "period, oldest first"
    body.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{axis_y + 29}" font-size="{TICK_FONT}" '
        f'text-anchor="middle" fill="#555">{escape(caption)}</text>'
    )
    for k, (name, points) in enumerate(series.items()):
        colour = LINE_PALETTE[k]
        for run in _runs(list(zip(instants, points, strict=True))):
            coords = " ".join(f"{x_of(t):.1f},{y_of(v):.1f}" for t, v in run)
            tip = escape(name)
            body.append(
                f'<polyline class="series" points="{coords}" fill="none" stroke="{colour}" '
                f'stroke-width="1.6"><title>{tip}</title></polyline>'
                if len(run) > 1
                else f'<circle class="series" cx="{x_of(run[0][0]):.1f}" '
                f'cy="{y_of(run[0][1]):.1f}" r="2.5" fill="{colour}"><title>{tip}</title></circle>'
            )
    legend, legend_w, legend_h = _legend_rows(
        [(name, LINE_PALETTE[k]) for k, name in enumerate(series)], width, axis_y + 44
    )
    total_w = max(width, legend_w)
    return Markup(_open(total_w, axis_y + 44 + legend_h, title) + "".join(body) + legend + "</svg>")


def _nice_levels(highest: float) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 times a power of ten) up to at least ``highest``,
    four or five of them."""
    raw = highest / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    count = math.ceil(highest / step - 1e-9)
    return [round(step * k, 12) for k in range(count + 1)]


def top_series(
    series: Mapping[str, Sequence[float | None]], count: int | None = None
) -> dict[str, Sequence[float | None]]:
    """The ``count`` series (default: one per colour) with the highest maximum, highest first;
    ties by name. Series with no value at all are left out."""
    count = len(LINE_PALETTE) if count is None else count
    peaks = {
        name: max(v for v in values if v is not None)
        for name, values in series.items()
        if any(v is not None for v in values)
    }
    chosen = sorted(peaks, key=lambda name: (-peaks[name], name))[:count]
    return {name: series[name] for name in chosen}


def text_width(text: str, font_size: float) -> float:
    """The width a label takes, estimated from its characters (``CHAR_WIDTH_EM`` each)."""
    return len(text) * font_size * CHAR_WIDTH_EM


def spaced_labels(
    positions: Sequence[float],
    labels: Sequence[str],
    *,
    font_size: float = TICK_FONT,
    gap: float = LABEL_GAP,
) -> list[int]:
    """The indexes of the labels to draw, centred at ``positions`` (ascending): every k-th,
    for the smallest k at which no two drawn labels come closer than ``gap``."""
    n = len(labels)
    for stride in range(1, n + 1):
        chosen = list(range(0, n, stride))
        if all(
            positions[b] - positions[a]
            >= (text_width(labels[a], font_size) + text_width(labels[b], font_size)) / 2 + gap
            for a, b in itertools.pairwise(chosen)
        ):
            return chosen
    return []


def time_ticks(
    first: float, last: float, x_of: Callable[[float], float], low: float, high: float
) -> list[tuple[float, str]]:
    """Ticks at round moments (every 1 s ... 1 year, UTC) between ``first`` and ``last``
    (seconds since the epoch), labelled as times or dates: the finest step whose labels,
    centred at ``x_of(moment)``, keep ``LABEL_GAP`` apart and inside ``[low, high]``."""
    if last <= first:
        return [(first, _tick_label(first, 1, first, last))]
    for step in TIME_STEPS:
        if (last - first) / step > MAX_TICKS:
            continue
        moments = _round_moments(first, last, step)
        labels = [_tick_label(m, step, first, last) for m in moments]
        inside = [
            (m, label)
            for m, label in zip(moments, labels, strict=True)
            if x_of(m) - text_width(label, TICK_FONT) / 2 >= low
            and x_of(m) + text_width(label, TICK_FONT) / 2 <= high
        ]
        if not inside:
            continue
        if len(spaced_labels([x_of(m) for m, _ in inside], [t for _, t in inside])) == len(inside):
            return inside
    return [(first, _tick_label(first, 86400, first, last))]


def _round_moments(first: float, last: float, step: int) -> list[float]:
    """Multiples of ``step`` seconds (days and longer: UTC midnights, month starts) within
    ``[first, last]``."""
    if step < 86400 * 28:
        start = math.ceil(first / step) * step
        return [float(m) for m in range(int(start), int(last) + 1, step)]
    months = step // (86400 * 28)
    moment = datetime.datetime.fromtimestamp(first, datetime.timezone.utc)
    month = datetime.datetime(moment.year, moment.month, 1, tzinfo=datetime.timezone.utc)
    found = []
    while month.timestamp() <= last:
        if month.timestamp() >= first and (month.month - 1) % months == 0:
            found.append(month.timestamp())
        year, index = divmod(month.month, 12)
        month = month.replace(year=month.year + year, month=index + 1)
    return found


def _tick_label(moment: float, step: int, first: float, last: float) -> str:
    """``HH:MM:SS`` under a minute's step, ``HH:MM`` under a day's (with the date when the
    axis spans days and the tick is a midnight), else the date."""
    at = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    if step >= 86400 * 28:
        return at.strftime("%Y-%m")
    if step >= 86400:
        return at.strftime("%b %d")
    spans_days = _day(first) != _day(last)
    if spans_days and at.hour == at.minute == at.second == 0:
        return at.strftime("%b %d")
    return at.strftime("%H:%M:%S" if step < 60 else "%H:%M")


def _axis_caption(first: float, last: float) -> str:
    if not first and not last:
        return "time (UTC)"
    start = datetime.datetime.fromtimestamp(first, datetime.timezone.utc)
    end = datetime.datetime.fromtimestamp(last, datetime.timezone.utc)
    return f"time (UTC), {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S}"


def _day(moment: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).date()


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _runs(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The stretches of consecutive points with a value (a line breaks where one is missing)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for moment, value in points:
        if value is None:
            runs.append([])
        else:
            runs[-1].append((moment, value))
    return [run for run in runs if run]


def _legend_rows(
    entries: Sequence[tuple[str, str]], width: int, top: float
) -> tuple[str, int, int]:
    """Swatch and full name per entry, left to right, wrapping onto new rows; the SVG parts,
    the width they need (more than ``width`` only for a name longer than a row) and height."""
    parts, x, y, widest = [], 10.0, top, float(width)
    for name, colour in entries:
        need = 14 + text_width(name, LEGEND_FONT) + 16
        if x > 10 and x + need > width - 6:
            x, y = 10.0, y + LEGEND_ROW
        parts.append(
            f'<rect class="legend" x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" '
            f'fill="{colour}"/><text class="legend" x="{x + 14:.1f}" y="{y:.1f}" '
            f'font-size="{LEGEND_FONT}">{escape(name)}</text>'
        )
        widest = max(widest, x + need)
        x += need
    height = (y - top + LEGEND_ROW + 4) if entries else 0.0
    return "".join(parts), math.ceil(widest), math.ceil(height)


def horizontal_bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    errors: Sequence[float] | None = None,
    colour: str = LIVE_COLOUR,
    width: int = 360,
    title: str = "",
) -> Markup:
    """One bar per label, largest first as given, its value written at its end; ``errors``
    draw a whisker of plus or minus that much (a standard deviation)."""
    row, left, right = 16, 130, 56
    height = 22 + row * max(len(labels), 1)
    plot_w = width - left - right
    top = max([*(abs(v) + (errors[i] if errors else 0.0) for i, v in enumerate(values)), 1e-12])
    parts = [_open(width, height, title)]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 18 + i * row
        w = plot_w * max(value, 0.0) / top
        parts.append(
            f'<text x="{left - 4}" y="{y + 10}" font-size="10" text-anchor="end">'
            f"{escape(_short(label, 22))}<title>{escape(label)}</title></text>"
            f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="{colour}">'
            f"<title>{escape(label)}: {value:.4g}</title></rect>"
        )
        end = left + w
        if errors:
            lo = left + plot_w * max(value - errors[i], 0.0) / top
            hi = left + plot_w * (value + errors[i]) / top
            parts.append(
                f'<line x1="{lo:.1f}" y1="{y + 7.5}" x2="{hi:.1f}" y2="{y + 7.5}" stroke="#333"/>'
            )
            end = max(end, hi)
        parts.append(f'<text x="{end + 4:.1f}" y="{y + 10}" font-size="9">{value:.3g}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _open(width: int, height: int, title: str) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif">'
    )
    if title:
        head += f'<text x="10" y="11" font-size="11" font-weight="bold">{escape(title)}</text>'
    return head


def _legend(width: int, entries: list[tuple[str, str]], baseline: float = 11) -> str:
    parts = []
    for k, (name, colour) in enumerate(entries):
        x = width - LEGEND_WIDTH + k * 60
        parts.append(
            f'<rect x="{x}" y="{baseline - 8}" width="9" height="9" fill="{colour}"/>'
            f'<text x="{x + 12}" y="{baseline}" font-size="9">{escape(name)}</text>'
        )
    return "".join(parts)


def _heading(title: str, width: int, reserve: int) -> tuple[str, int]:
    """The title whole, in bold, wrapped to the width; beside ``reserve`` px on its right
    (a legend) when it fits in one line. The SVG parts and where the plot may start."""
    if not title:
        return "", 16
    size = 11
    one_line = text_width(title, size) * BOLD_WIDTH <= width - 20 - reserve
    chars = max(int((width - 20) / (size * CHAR_WIDTH_EM * BOLD_WIDTH)), 8)
    lines = [title] if one_line else textwrap.wrap(title, chars, break_long_words=True)
    parts = "".join(
        f'<text x="10" y="{11 + 13 * k}" font-size="{size}" font-weight="bold">'
        f"{escape(line)}</text>"
        for k, line in enumerate(lines)
    )
    return parts, 16 if one_line else 16 + 13 * len(lines)


def _short(text: str, size: int = 8) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
