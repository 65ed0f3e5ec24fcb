"""The contrast arithmetic the theme checks rely on, against WCAG's published figures."""

from __future__ import annotations

import pytest

from .contrast import contrast_of, over, parse_colour


def test_black_on_white_is_21_and_grey_777_just_fails_aa() -> None:
    assert contrast_of("rgb(0, 0, 0)", ["rgb(255, 255, 255)"]) == pytest.approx(21.0)
    assert contrast_of("rgb(119, 119, 119)", []) == pytest.approx(4.48, abs=0.01)


def test_the_formats_chromium_computes_are_read() -> None:
    assert parse_colour("rgba(0, 0, 0, 0.87)") == (0.0, 0.0, 0.0, 0.87)
    assert parse_colour("color(srgb 0.2 0.5 1)") == (0.2, 0.5, 1.0, 1.0)
    assert parse_colour("color(srgb 0.2 0.5 1 / 0.5)")[3] == 0.5
    assert parse_colour("transparent")[3] == 0.0
    with pytest.raises(ValueError, match="hsl"):
        parse_colour("hsl(0 0% 0%)")


def test_translucent_text_and_layers_are_composed() -> None:
    # Dark-theme text (white at 87%) on #212121 over the page: the blend, not pure white.
    half = over((1.0, 1.0, 1.0, 0.5), (0.0, 0.0, 0.0, 1.0))
    assert half == pytest.approx((0.5, 0.5, 0.5, 1.0))
    full = contrast_of("rgb(255, 255, 255)", ["rgb(33, 33, 33)"])
    faded = contrast_of("rgba(255, 255, 255, 0.87)", ["rgb(33, 33, 33)"])
    assert faded < full
    # A transparent chip shows what lies under it.
    assert contrast_of("rgb(0, 0, 0)", ["transparent", "rgb(0, 0, 0)"]) == pytest.approx(1.0)
