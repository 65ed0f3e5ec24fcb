"""Small inline SVG charts for self-contained HTML reports: paired bars, lines over time and
horizontal bars (feature importance).

A chart is :class:`markupsafe.Markup`, the type a template with autoescape writes as it is:
every label, name and title in it (feature names, categories, predictions come from the
training data and the requests) is escaped here, by the escaper the templates use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

TRAINING_COLOUR = "#7f8c8d"
LIVE_COLOUR = "#2e86de"
ALERT_COLOUR = "#e74c3c"
PALETTE = ("#2e86de", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#d35400", "#2c3e50")


def paired_bars(
    labels: Sequence[str],
    training: Sequence[float],
    live: Sequence[float],
    *,
    width: int = 360,
    height: int = 150,
    title: str = "",
) -> Markup:
    """Training against live fractions, one pair of bars per bin or category."""
    n = max(len(labels), 1)
    top = max([*training, *live, 1e-9])
    plot_h = height - 34
    slot = (width - 20) / n
    bar = max(slot / 2 - 1, 1)
    parts = [_open(width, height, title)]
    for i, (label, t, v) in enumerate(zip(labels, training, live, strict=True)):
        x = 10 + i * slot
        for offset, value, colour, who in (
            (0, t, TRAINING_COLOUR, "training"),
            (bar, v, LIVE_COLOUR, "live"),
        ):
            h = plot_h * value / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{16 + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {who} '
                f"{value:.3f}</title></rect>"
            )
        if n <= 12:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height - 4}" font-size="9" '
                f'text-anchor="middle">{escape(_short(label))}</text>'
            )
    parts.append(_legend(width, [("training", TRAINING_COLOUR), ("live", LIVE_COLOUR)]))
    parts.append("</svg>")
    return Markup("".join(parts))


def lines_over_time(
    series: Mapping[str, Sequence[float | None]],
    *,
    threshold: float | None = None,
    width: int = 720,
    height: int = 220,
    title: str = "",
) -> Markup:
    """One line per series over equally spaced periods, with an optional threshold line."""
    length = max((len(v) for v in series.values()), default=0)
    values = [v for s in series.values() for v in s if v is not None]
    top = max([*values, threshold or 0.0, 1e-9]) * 1.1
    left, plot_w, plot_h = 40, width - 150, height - 40
    parts = [_open(width, height, title)]

    def point(i: int, value: float) -> tuple[float, float]:
        x = left + (plot_w * i / max(length - 1, 1))
        return x, 16 + plot_h - plot_h * value / top

    parts.append(
        f'<line x1="{left}" y1="{16 + plot_h}" x2="{left + plot_w}" y2="{16 + plot_h}" '
        'stroke="#999"/>'
    )
    parts.append(f'<text x="2" y="24" font-size="9">{top:.2f}</text>')
    parts.append(f'<text x="2" y="{16 + plot_h}" font-size="9">0</text>')
    if threshold is not None:
        _, y = point(0, threshold)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="{ALERT_COLOUR}" stroke-dasharray="4 3"><title>threshold {threshold:g}'
            "</title></line>"
        )
    legend = []
    for k, (name, points) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        coords = [point(i, v) for i, v in enumerate(points) if v is not None]
        if coords:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5">'
                f"<title>{escape(name)}</title></polyline>"
            )
        legend.append((name, colour))
    for k, (name, colour) in enumerate(legend[:14]):
        y = 24 + k * 13
        parts.append(
            f'<rect x="{left + plot_w + 10}" y="{y - 8}" width="9" height="9" fill="{colour}"/>'
            f'<text x="{left + plot_w + 22}" y="{y}" font-size="10">{escape(_short(name, 18))}'
            "</text>"
        )
    parts.append(
        f'<text x="{left}" y="{height - 6}" font-size="9">oldest</text>'
        f'<text x="{left + plot_w}" y="{height - 6}" font-size="9" text-anchor="end">newest</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


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


def _legend(width: int, entries: list[tuple[str, str]]) -> str:
    parts = []
    for k, (name, colour) in enumerate(entries):
        x = width - 120 + k * 60
        parts.append(
            f'<rect x="{x}" y="3" width="9" height="9" fill="{colour}"/>'
            f'<text x="{x + 12}" y="11" font-size="9">{escape(name)}</text>'
        )
    return "".join(parts)


def _short(text: str, size: int = 8) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
