"""Inline SVG charts that compare a release's two versions: grouped horizontal bars and a
timeline of the switches between them.

Labels are written whole, on lines of their own above their bars (wrapped when long), so
feature names and classes are never cut and never overlap, and a chart scales down with its
``viewBox`` in a narrow window. Every label and title is escaped here, as in
:mod:`mlnb.reporting.charts`.
"""

from __future__ import annotations

import datetime
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from mlnb.reporting.charts import ALERT_COLOUR, PALETTE

VERSION_COLOURS = {"primary": PALETTE[0], "candidate": PALETTE[1]}
CANARY_COLOUR = "#8e44ad"  # both versions answer, by the canary share
CHAR_WIDTH = 6.8  # about the width of one character at font-size 12
LINE = 15
BAR = 12
MARKER_GAP = 22  # px between two switch numbers in one lane
MAX_LANES = 6


def grouped_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    width: int = 440,
    title: str = "",
    unit: str = "",
    threshold: float | None = None,
    digits: int = 3,
) -> Markup:
    """One group of bars per category, one bar per series (colour per version), the value
    written at the end of each; negative values go left of a zero line; ``threshold`` is a
    dashed line (a drift threshold)."""
    names = list(series)
    numbers = [v for values in series.values() for v in values if v is not None]
    low = min([0.0, *numbers])
    high = max([0.0, *numbers, threshold or 0.0])
    span = (high - low) or 1.0
    left, right = 10, 70
    plot_w = width - left - right
    chars = max(int((width - 20) / CHAR_WIDTH), 10)

    def x(value: float) -> float:
        return left + plot_w * (value - low) / span

    body: list[str] = []
    legend = "".join(
        f'<rect x="{10 + k * 130}" y="19" width="10" height="10" fill="{_colour(name, k)}"/>'
        f'<text x="{24 + k * 130}" y="28" font-size="11">{escape(name)}</text>'
        for k, name in enumerate(names)
    )
    y = 34
    top = y
    for i, category in enumerate(categories):
        for line in _wrap(category, chars):
            y += LINE
            body.append(f'<text x="{left}" y="{y - 3}" font-size="12">{escape(line)}</text>')
        for k, name in enumerate(names):
            values = series[name]
            value = values[i] if i < len(values) else None
            y += BAR + 2
            if value is None:
                body.append(
                    f'<text x="{x(0.0) + 3:.1f}" y="{y - 2}" font-size="10" fill="#777">'
                    f"{escape(name)}: n/a</text>"
                )
                continue
            start, end = sorted((x(0.0), x(value)))
            body.append(
                f'<rect x="{start:.1f}" y="{y - BAR:.1f}" width="{max(end - start, 0.5):.1f}" '
                f'height="{BAR - 1}" fill="{_colour(name, k)}"><title>{escape(category)}, '
                f"{escape(name)}: {value:.{digits}g}{escape(unit)}</title></rect>"
                f'<text x="{end + 3:.1f}" y="{y - 2}" font-size="10">'
                f"{value:.{digits}g}{escape(unit)}</text>"
            )
        y += 6
    height = y + 6
    lines = []
    if low < 0:
        lines.append(
            f'<line x1="{x(0.0):.1f}" y1="{top}" x2="{x(0.0):.1f}" y2="{y}" stroke="#999"/>'
        )
    if threshold is not None:
        lines.append(
            f'<line x1="{x(threshold):.1f}" y1="{top}" x2="{x(threshold):.1f}" y2="{y}" '
            f'stroke="{ALERT_COLOUR}" stroke-dasharray="4 3"><title>threshold {threshold:g}'
            "</title></line>"
        )
    return Markup(_open(width, height, title) + legend + "".join(lines + body) + "</svg>")


def switch_timeline(
    start: str | None,
    end: str | None,
    switches: Sequence[Mapping[str, Any]],
    *,
    width: int = 480,
    title: str = "who answered, and the switches",
    number_from: int = 1,
    answering: str | None = None,
) -> Markup:
    """The time the release ran as a band coloured by the answering version, a numbered
    marker at each switch (numbered from ``number_from``, stacked when they would touch), the
    first and last time at either end. ``answering``: who answers when there is no switch
    (``primary``, ``candidate``, or ``canary`` for both)."""
    times = [t for t in (_seconds(s.get("time")) for s in switches) if t is not None]
    bounds = [t for t in (_seconds(start), _seconds(end)) if t is not None] + times
    if not bounds:
        return Markup(_open(width, 40, title) + _note("no traffic or switches yet") + "</svg>")
    first, last = min(bounds), max(bounds)
    if last - first < 1:
        first, last = first - 1, last + 1
    left, plot_w = 10, width - 20

    def x(moment: float) -> float:
        return left + plot_w * (moment - first) / (last - first)

    lanes: list[float] = []  # the x of the newest marker in each lane
    markers = []
    for number, switch in enumerate(switches, number_from):
        moment = _seconds(switch.get("time"))
        if moment is None:
            continue
        at = x(moment)
        lane = next((k for k, used in enumerate(lanes) if at - used >= MARKER_GAP), None)
        if lane is None and len(lanes) < MAX_LANES:
            lane = len(lanes)
            lanes.append(at)
        elif lane is None:  # crowded: the lane whose newest marker is oldest
            lane = min(range(len(lanes)), key=lanes.__getitem__)
        lanes[lane] = at
        markers.append((number, at, lane, switch))
    rows = max(len(lanes), 1)
    band_y = 30 + rows * 12
    parts = [_open(width, band_y + 48, title)]
    if switches:
        answering = str(switches[0].get("from") or "primary")
    answering = answering or "primary"
    edge = first
    for switch in switches:
        moment = _seconds(switch.get("time"))
        if moment is None:
            continue
        parts.append(_band(x(edge), x(moment), band_y, answering))
        edge, answering = moment, str(switch.get("to") or answering)
    parts.append(_band(x(edge), x(last), band_y, answering))
    for number, at, lane, switch in markers:
        colour = ALERT_COLOUR if switch.get("action") == "rollback" else "#27ae60"
        label_y = band_y - 6 - lane * 12
        tip = " ".join(
            str(switch.get(k) or "") for k in ("time", "action", "from", "to", "by", "why")
        )
        parts.append(
            f'<line x1="{at:.1f}" y1="{label_y + 2}" x2="{at:.1f}" y2="{band_y + 14}" '
            f'stroke="{colour}"/><text x="{at:.1f}" y="{label_y}" font-size="11" '
            f'text-anchor="middle" fill="{colour}">{number}<title>{escape(tip)}</title></text>'
        )
    parts.append(
        f'<text x="{left}" y="{band_y + 28}" font-size="10">{escape(_short_time(first))}</text>'
        f'<text x="{left + plot_w}" y="{band_y + 28}" font-size="10" text-anchor="end">'
        f"{escape(_short_time(last))}</text>"
    )
    legend = dict(VERSION_COLOURS)
    if "canary" in (answering, *(str(s.get("from")) for s in switches)):
        legend["canary"] = CANARY_COLOUR
    for k, name in enumerate(legend):
        parts.append(
            f'<rect x="{left + k * 150}" y="{band_y + 35}" width="9" height="9" '
            f'fill="{legend[name]}"/><text x="{left + 12 + k * 150}" '
            f'y="{band_y + 43}" font-size="10">{_answering_text(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _band(x1: float, x2: float, y: int, role: str) -> str:
    colour = CANARY_COLOUR if role == "canary" else VERSION_COLOURS.get(role, "#999")
    return (
        f'<rect x="{x1:.1f}" y="{y}" width="{max(x2 - x1, 0.5):.1f}" height="12" '
        f'fill="{colour}" opacity="0.8"><title>{escape(_answering_text(role))}</title></rect>'
    )


def _answering_text(name: str) -> str:
    return "canary: both answer" if name == "canary" else f"{name} answering"


def _colour(name: str, k: int) -> str:
    return VERSION_COLOURS.get(name, PALETTE[(k + 2) % len(PALETTE)])


def _wrap(text: str, chars: int) -> list[str]:
    return textwrap.wrap(text, chars, break_long_words=True, drop_whitespace=True) or [""]


def _seconds(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _short_time(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _note(text: str) -> str:
    return f'<text x="10" y="30" font-size="10" fill="#777">{escape(text)}</text>'


def _open(width: int, height: int, title: str) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif">'
    )
    if title:
        head += f'<text x="10" y="12" font-size="12" font-weight="bold">{escape(title)}</text>'
    return head
