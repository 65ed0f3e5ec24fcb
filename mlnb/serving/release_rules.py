"""The rules a release promotes or rolls back by: ``agreement>=0.98,p99<=1.2x``.

A rule compares one figure of the candidate with a number, or with the primary's same
figure times a factor (``1.2x``). The figures are what a release worker measures of each
version (:class:`mlnb.serving.release.ReleaseStats`): ``agreement`` (the share of shadowed
rows where the candidate's prediction equals the primary's; for regressors, within
``MLNB_AGREEMENT_TOLERANCE`` relative), ``error_rate`` (answers and shadow calls that
failed), ``p50`` and ``p99`` (the handler's milliseconds), ``accuracy`` and ``mae`` (from
labels fed back to ``/feedback``). Parsing is pure and strict: a rule that does not parse is
refused with its text and what would.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mlnb.errors import ReleaseRuleError as ReleaseRuleError  # re-exported: it lived here

FIGURES = ("agreement", "error_rate", "p50", "p99", "accuracy", "mae")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_RULE = re.compile(r"^\s*([a-z_0-9]+)\s*(>=|<=|>|<)\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(x?)\s*$")
MAX_RULES = 16
MAX_RULES_TEXT = 1000


@dataclass(frozen=True)
class Rule:
    figure: str
    op: str
    value: float
    relative: bool  # value is a factor of the primary's figure

    def __str__(self) -> str:
        return f"{self.figure}{self.op}{self.value:g}{'x' if self.relative else ''}"

    def bound(self, primary: Mapping[str, float | None]) -> float | None:
        """The number the candidate's figure is compared with; None when not known yet."""
        if not self.relative:
            return self.value
        base = primary.get(self.figure)
        return None if base is None or not math.isfinite(base) else base * self.value

    def holds(
        self, candidate: Mapping[str, float | None], primary: Mapping[str, float | None]
    ) -> bool | None:
        """Whether the rule holds; None while a figure it needs is unknown."""
        mine = candidate.get(self.figure)
        bound = self.bound(primary)
        if mine is None or bound is None or not math.isfinite(mine):
            return None
        return _OPERATORS[self.op](mine, bound)


def parse_rules(text: str | None, option: str = "--promote-if") -> tuple[Rule, ...]:
    """``"agreement>=0.98,p99<=1.2x"`` as rules; raises ReleaseRuleError naming the part."""
    if not text or not text.strip():
        return ()
    if len(text) > MAX_RULES_TEXT:
        raise ReleaseRuleError(
            f"{option} has {len(text)} characters, more than {MAX_RULES_TEXT}",
            fix="give a few rules such as 'agreement>=0.98,p99<=1.2x'",
        )
    parts = [part for part in text.split(",") if part.strip()]
    if len(parts) > MAX_RULES:
        raise ReleaseRuleError(f"{option} has {len(parts)} rules, more than {MAX_RULES}")
    rules = []
    for part in parts:
        match = _RULE.match(part)
        if match is None:
            raise ReleaseRuleError(
                f"{option}: {part.strip()!r} is not a rule",
                fix="write FIGURE OP NUMBER[x], e.g. agreement>=0.98 or p99<=1.2x "
                f"(figures: {', '.join(FIGURES)}; x: times the primary's figure)",
            )
        figure, op, value, relative = match.groups()
        if figure not in FIGURES:
            raise ReleaseRuleError(
                f"{option}: {figure!r} is not a figure a release measures",
                fix=f"use one of {', '.join(FIGURES)}",
            )
        rules.append(Rule(figure, op, float(value), relative == "x"))
    return tuple(rules)


def rules_text(rules: Sequence[Rule]) -> list[str]:
    return [str(rule) for rule in rules]


@dataclass(frozen=True)
class Verdict:
    """What the rules say: all hold, one fails, or some figure is not known yet."""

    decided: bool
    holds: bool
    why: str


def all_hold(
    rules: Sequence[Rule],
    candidate: Mapping[str, float | None],
    primary: Mapping[str, float | None],
) -> Verdict:
    """Promotion: every rule must hold (undecided while a figure is unknown)."""
    shown = []
    for rule in rules:
        holds = rule.holds(candidate, primary)
        if holds is None:
            return Verdict(False, False, f"{rule}: {rule.figure} not measured yet")
        if not holds:
            return Verdict(
                True, False, f"{rule} does not hold ({_figures(rule, candidate, primary)})"
            )
        shown.append(f"{rule} ({_figures(rule, candidate, primary)})")
    return Verdict(True, True, "; ".join(shown))


def any_holds(
    rules: Sequence[Rule],
    candidate: Mapping[str, float | None],
    primary: Mapping[str, float | None],
) -> Verdict:
    """Rollback: the first rule that holds decides."""
    for rule in rules:
        if rule.holds(candidate, primary):
            return Verdict(True, True, f"{rule} ({_figures(rule, candidate, primary)})")
    return Verdict(False, False, "no rollback rule holds")


def _figures(
    rule: Rule, candidate: Mapping[str, float | None], primary: Mapping[str, float | None]
) -> str:
    mine = candidate.get(rule.figure)
    text = f"candidate {rule.figure} {_number(mine)}"
    if rule.relative:
        text += f", primary {_number(primary.get(rule.figure))}"
    return text


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
