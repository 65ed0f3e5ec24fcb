"""WCAG contrast of text as the browser paints it: colours from computed styles, layers composed.

``TEXT_COLOURS_JS`` runs in the page over a list of elements and returns, for each, its text
colour and the background colours under it (its own first, then its ancestors'; for SVG text,
the shape it sits on first); :func:`contrast_of` composes them and returns the WCAG 2 ratio.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

RGBA = tuple[float, float, float, float]
MIN_RATIO = 4.5  # WCAG 2 AA for normal text

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?%?"


def parse_colour(css: str) -> RGBA:
    """``rgb(...)``, ``rgba(...)``, ``color(srgb r g b / a)`` or ``transparent`` as 0..1 floats."""
    text = css.strip().lower()
    if text in ("transparent", "none", ""):
        return (0.0, 0.0, 0.0, 0.0)
    numbers = [_value(n) for n in re.findall(_NUMBER, text)]
    if text.startswith("rgb") and len(numbers) in (3, 4):
        r, g, b = (v / 255 for v in numbers[:3])
        return (r, g, b, numbers[3] if len(numbers) == 4 else 1.0)
    if text.startswith("color(srgb") and len(numbers) in (3, 4):
        return (numbers[0], numbers[1], numbers[2], numbers[3] if len(numbers) == 4 else 1.0)
    raise ValueError(f"cannot read the colour {css!r}")


def _value(number: str) -> float:
    return float(number[:-1]) / 100 if number.endswith("%") else float(number)


def over(top: RGBA, bottom: RGBA) -> RGBA:
    """``top`` painted over ``bottom`` (source-over)."""
    alpha = top[3] + bottom[3] * (1 - top[3])
    if alpha == 0:
        return (0.0, 0.0, 0.0, 0.0)
    under = bottom[3] * (1 - top[3])
    r, g, b = ((t * top[3] + u * under) / alpha for t, u in zip(top[:3], bottom[:3], strict=True))
    return (r, g, b, alpha)


def luminance(colour: RGBA) -> float:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in colour[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ratio(a: RGBA, b: RGBA) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def contrast_of(text: str, layers: Sequence[str]) -> float:
    """The ratio of ``text`` over the background ``layers`` (innermost first) on white."""
    ground: RGBA = (1.0, 1.0, 1.0, 1.0)
    for layer in reversed(layers):
        ground = over(parse_colour(layer), ground)
    return ratio(over(parse_colour(text), ground), ground)


# In the page: elements -> [{label, text, layers}]. A `::before` pseudo-element is measured
# when the element has the class `mlnb-badged` (the stage badges on cells).
TEXT_COLOURS_JS = """
elements => elements.map(el => {
  const layers = [];
  let text;
  let label;
  if (el.classList.contains('mlnb-badged')) {
    const before = getComputedStyle(el, '::before');
    text = before.color;
    layers.push(before.backgroundColor);
    label = 'badge ' + el.getAttribute('data-mlnb-badge');
  } else if (el instanceof SVGTextElement) {
    text = getComputedStyle(el).fill;
    const shape = el.parentElement.querySelector('rect');
    if (shape) layers.push(getComputedStyle(shape).fill);
    label = 'DAG node ' + el.textContent;
  } else {
    text = getComputedStyle(el).color;
    label = (el.className.baseVal ?? el.className) + ' ' + el.textContent;
  }
  const start = el instanceof SVGTextElement ? el.ownerSVGElement : el;
  for (let node = start; node; node = node.parentElement) {
    layers.push(getComputedStyle(node).backgroundColor);
  }
  return { label, text, layers };
})
"""


def poor_contrast(page_or_locator: Any, selector: str) -> list[str]:
    """Every element matching ``selector`` whose text falls below :data:`MIN_RATIO`."""
    found = page_or_locator.locator(selector).evaluate_all(TEXT_COLOURS_JS)
    assert found, f"nothing matches {selector!r}"
    poor = []
    for item in found:
        value = contrast_of(item["text"], item["layers"])
        if value < MIN_RATIO:
            where = f"{item['text']} on {item['layers']}"
            poor.append(f"{item['label'].strip()}: {value:.2f} ({where})")
    return poor
