"""A release's comparison as a table of figures (text and HTML) and a self-contained HTML
report with inline SVG charts.

Every name in it (features, classes, request ids, who switched and why) comes from the logs,
so from the requests: the template is rendered with autoescape and the charts escape their
labels themselves (:mod:`mlnb.reporting.release_charts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup

from mlnb.reporting.release_charts import grouped_bars, switch_timeline
from mlnb.reporting.release_summary import ReleaseSummary, VersionSummary
from mlnb.reporting.release_traffic import VERSIONS, RoleTraffic
from mlnb.templating import render

TEMPLATE = "release_report.html.j2"
TOP_CLASSES = 4  # classes shown in the table (the chart shows every one)


def comparison_rows(summary: ReleaseSummary) -> list[tuple[str, str, str]]:
    """The side-by-side table: (what, primary, candidate), every figure as text."""
    p, c = (summary.versions[role] for role in VERSIONS)
    shares = answering_shares(summary.routing)
    metric = p.live.metric if p.live else "accuracy"

    def both(cell: Any) -> tuple[str, str]:
        return cell(p), cell(c)

    rows = [
        ("Bento", *both(lambda v: v.tag or "?")),
        ("training run", *both(lambda v: v.run_id or "?")),
        ("answering now", *both(lambda v: _share(shares.get(v.role)))),
        ("requests answered", *both(lambda v: str(v.answered))),
        ("requests shadowed", *both(lambda v: str(v.shadowed))),
        ("rows answered", *both(lambda v: str(v.traffic["answer"].rows))),
        ("rows shadowed", *both(lambda v: str(v.traffic["shadow"].rows))),
        ("rejected", *both(_rejected)),
        ("errors", *both(_errors)),
        ("answer p50 / p99 (ms)", *both(lambda v: _latency(v.traffic["answer"]))),
        ("shadow p50 / p99 (ms)", *both(lambda v: _latency(v.traffic["shadow"]))),
        (f"training {metric}", *both(lambda v: _figure(v.training_metric))),
        (f"live {metric}", *both(_live)),
        ("predictions", *both(_predictions)),
        ("drifted features", *both(_drifted)),
    ]
    return rows


def answering_shares(routing: dict[str, Any] | None) -> dict[str, float]:
    """The share of requests each version answers now, from ``routing.json``."""
    if not routing or routing.get("answering") not in VERSIONS:
        return {}
    percent = routing.get("percent")
    if not isinstance(percent, (int, float)) or percent in (0, 100):
        return {role: float(role == routing["answering"]) for role in VERSIONS}
    share = min(max(float(percent) / 100, 0.0), 1.0)  # a canary
    return {"primary": 1 - share, "candidate": share}


def answering_now(routing: dict[str, Any] | None) -> str | None:
    """``primary``, ``candidate`` or ``canary`` (both, by the canary share)."""
    shares = answering_shares(routing)
    whole = [role for role, share in shares.items() if share == 1.0]
    return whole[0] if whole else ("canary" if shares else None)


def _share(share: float | None) -> str:
    if share is None:
        return "?"
    return "yes" if share == 1.0 else "no" if share == 0.0 else f"{share:.0%} of requests"


def _rejected(v: VersionSummary) -> str:
    reasons = ", ".join(f"{k} {n}" for k, n in v.rejection_reasons.items())
    return f"{v.rejected}" + (f" ({reasons})" if reasons else "")


def _errors(v: VersionSummary) -> str:
    calls = sum(t.calls for t in v.traffic.values())
    return f"{v.errors} ({v.errors / calls:.1%} of calls)" if calls else str(v.errors)


def _latency(traffic: RoleTraffic) -> str:
    sample = traffic.latency
    if not sample.count:
        return "-"
    return f"{_figure(sample.quantile(0.5))} / {_figure(sample.quantile(0.99))}"


def _live(v: VersionSummary) -> str:
    live = v.live
    if live is None or live.recent is None:
        return "no labels"
    newest = f"the newest {live.recent_labels} of " if live.labelled > live.recent_labels else ""
    text = f"{_figure(live.recent)} ({newest}{live.labelled} labels)"
    return text + (" ALERT" if v.alerting else "")


def alert_lines(summary: ReleaseSummary) -> list[str]:
    """One line per version whose live figure is past its training figure by the margin."""
    lines = []
    for v in summary.versions.values():
        live = v.live
        if not v.alerting or live is None or live.recent is None:
            continue
        training = v.training_metric or 0.0
        side, bound = (
            ("below", f"{training:.4g} - {v.margin:g}")
            if live.metric == "accuracy"
            else ("above", f"{training:.4g} x (1 + {v.margin:g})")
        )
        lines.append(
            f"{v.role}: live {live.metric} {live.recent:.4g} over its newest "
            f"{live.recent_labels} labels is {side} training {bound}"
        )
    return lines


def _predictions(v: VersionSummary) -> str:
    data = v.predictions
    if not data.get("rows"):
        return "none"
    if data["kind"] == "classes":
        shares = list(data["shares"].items())
        text = ", ".join(f"{label} {share:.2f}" for label, share in shares[:TOP_CLASSES])
        more = len(shares) - TOP_CLASSES
        return text + (f", {more} more" if more > 0 else "")
    q = data["quantiles"]
    return f"p50 {_figure(q['p50'])} (p5 {_figure(q['p5'])}, p95 {_figure(q['p95'])})"


def _drifted(v: VersionSummary) -> str:
    scored = [d for d in v.drift if d.psi is not None]
    if not scored:
        return "not scored" if v.drift else "no profile"
    return ", ".join(v.drifted_features) or f"none of {len(scored)}"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def render_release_report(summary: ReleaseSummary, templates: str | Path | None = None) -> str:
    return render(
        TEMPLATE,
        templates,
        summary=summary,
        rows=comparison_rows(summary),
        alerts=alert_lines(summary),
        answering=answering_now(summary.routing),
        agreement=summary.agreement.to_json() if summary.agreement else None,
        latency_chart=_latency_chart(summary),
        prediction_chart=_prediction_chart(summary),
        agreement_chart=_agreement_chart(summary),
        live_chart=_live_chart(summary),
        drift_chart=_drift_chart(summary),
        drift_rows=_drift_rows(summary),
        timeline=switch_timeline(
            summary.first,
            summary.last,
            summary.switches,
            number_from=summary.switches_total - len(summary.switches) + 1,
            answering=answering_now(summary.routing),
        ),
    )


def _latency_chart(summary: ReleaseSummary) -> Markup | None:
    categories: list[str] = []
    series: dict[str, list[float | None]] = {role: [] for role in VERSIONS}
    for role in ("answer", "shadow"):
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            values = [summary.versions[v].traffic[role].latency.quantile(q) for v in VERSIONS]
            if any(value is not None for value in values):
                categories.append(f"{role} {name}")
                for v, value in zip(VERSIONS, values, strict=True):
                    series[v].append(value)
    if not categories:
        return None
    return grouped_bars(categories, series, title="latency (ms)", unit=" ms")


def _prediction_chart(summary: ReleaseSummary) -> Markup | None:
    if summary.task == "classification":
        shares = {role: summary.versions[role].predictions["shares"] for role in VERSIONS}
        labels = list(dict.fromkeys(label for s in shares.values() for label in s))
        if not labels:
            return None
        series = {role: [shares[role].get(label, 0.0) for label in labels] for role in VERSIONS}
        return grouped_bars(labels, series, title="predicted classes (share of rows)")
    histogram = summary.prediction_histogram
    if not histogram:
        return None
    edges = histogram["edges"]
    bins = [f"{edges[i]:.4g} to {edges[i + 1]:.4g}" for i in range(len(edges) - 1)]
    series = {role: histogram[role] for role in VERSIONS}
    return grouped_bars(bins, series, title="predicted values (share of rows per bin)")


def _agreement_chart(summary: ReleaseSummary) -> Markup | None:
    agreement = summary.agreement
    if agreement is None or agreement.kind != "values" or not agreement.differences.count:
        return None
    d = agreement.differences
    figures = {
        "p5": d.quantile(0.05),
        "median": d.quantile(0.5),
        "p95": d.quantile(0.95),
        "mean": d.mean,
        "mean absolute": agreement.mean_abs,
    }
    return grouped_bars(
        list(figures),
        {"candidate - primary": list(figures.values())},
        title="difference of the predictions on the same rows",
    )


def _live_chart(summary: ReleaseSummary) -> Markup | None:
    versions = [summary.versions[role] for role in VERSIONS]
    if not any(v.live and v.live.recent is not None for v in versions):
        return None
    metric = versions[0].live.metric if versions[0].live else "accuracy"
    return grouped_bars(
        [f"training {metric}", f"live {metric}"],
        {v.role: [v.training_metric, v.live.recent if v.live else None] for v in versions},
        title=f"{metric}: training against live",
    )


def _drift_rows(summary: ReleaseSummary) -> list[dict[str, Any]]:
    """One row per feature: each version's drift (None where it has no such feature)."""
    by_role = {role: {d.feature: d for d in summary.versions[role].drift} for role in VERSIONS}
    features = list(dict.fromkeys(name for drift in by_role.values() for name in drift))
    return [{"feature": name, **{r: by_role[r].get(name) for r in VERSIONS}} for name in features]


def _drift_chart(summary: ReleaseSummary) -> Markup | None:
    rows = _drift_rows(summary)
    scored = [r for r in rows if any(r[v] is not None and r[v].psi is not None for v in VERSIONS)]
    if not scored:
        return None
    threshold = next(r[v].threshold for r in scored for v in VERSIONS if r[v] is not None)
    series = {v: [r[v].psi if r[v] is not None else None for r in scored] for v in VERSIONS}
    return grouped_bars(
        [r["feature"] for r in scored],
        series,
        title="drift (PSI) against each version's own training data",
        threshold=threshold,
    )
