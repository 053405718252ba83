"""A report a person can read: Markdown and a self-contained HTML page with one chart per metric
(metric against K, ALS and the baselines). The charts are inline SVG drawn here, so reports need
no plotting library on the cluster."""

from __future__ import annotations

import html
import json
from typing import Any

from sparkals.vocabulary import METRIC_NAMES

__all__ = ["html_page", "markdown"]

# Every ranking metric but recall_capped (close to recall at these K), and catalogue coverage.
METRICS = tuple(name for name in METRIC_NAMES if name != "recall_capped") + ("coverage",)
COLOURS = {"als": "#d62728", "popular": "#1f77b4", "recent_popular": "#2ca02c"}


def _ks(report: dict[str, Any]) -> list[int]:
    return sorted(int(k) for k in report["systems"]["als"])


def markdown(report: dict[str, Any]) -> str:
    """Tables of every metric at every K per system, the lift over the baselines, data and parameters."""
    ks = _ks(report)
    lines = [f"# sparkals evaluation, run date {report.get('run_date', '')}", ""]
    split = report["split"]
    lines.append(f"Split: {split['method']}" + (f", test from {split['cutoff']}" if split.get("cutoff") else ""))
    holdout_model = report.get("holdout_model")
    if holdout_model:
        lines.append(
            f"Holdout model: the night of {holdout_model['run_date']}'s {holdout_model['model_version']}"
            if holdout_model["source"] == "reused" else f"Holdout model: trained here ({holdout_model['reason']})"
        )
    lines.append(f"Headline: ALS {report['metric']} = {report['headline']:.4f}")
    for name, lift in (report.get("lift") or {}).items():
        if lift is not None:
            lines.append(f"- ALS vs {name}: {lift:+.0%} on {report['metric']}")
    lines += ["", "| system | metric | " + " | ".join(f"@{k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    for system, by_k in report["systems"].items():
        for metric in METRICS:
            values = " | ".join(f"{by_k[str(k)][metric]:.4f}" for k in ks)
            lines.append(f"| {system} | {metric} | {values} |")
    first = report["systems"]["als"][str(ks[0])]
    lines += [
        "", f"Users evaluated: {first['users_evaluated']:,}; share ALS could score: {first['users_with_recs']:.1%}",
        "", "## Data", "", "```json", json.dumps(report["data"], indent=2), "```",
        "", "## Parameters", "", "```json", json.dumps(report["parameters"], indent=2, default=str), "```", "",
    ]
    return "\n".join(lines)


def _chart(report: dict[str, Any], metric: str, width: int = 320, height: int = 200) -> str:
    """One SVG line chart: `metric` against K, a line per system."""
    ks = _ks(report)
    pad = 36
    values = [by_k[str(k)][metric] for by_k in report["systems"].values() for k in ks]
    top = max([v for v in values if v == v] + [1e-9]) * 1.1

    def x(i: int) -> float:
        return pad + (width - 2 * pad) * (i / max(len(ks) - 1, 1))

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * (v / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{metric}@K</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
             f'<text x="4" y="{pad + 4}" font-size="10">{top:.3f}</text>']
    for i, k in enumerate(ks):
        parts.append(f'<text x="{x(i)}" y="{height - pad + 14}" text-anchor="middle" font-size="10">{k}</text>')
    for row, (system, by_k) in enumerate(report["systems"].items()):
        colour = COLOURS.get(system, "#555")
        points = " ".join(f"{x(i):.1f},{y(by_k[str(k)][metric]):.1f}" for i, k in enumerate(ks))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{width - pad}" y="{pad + 12 * row}" font-size="10" fill="{colour}" '
                     f'text-anchor="end">{html.escape(system)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_page(report: dict[str, Any]) -> str:
    """The Markdown report as preformatted text under one chart per metric, in one file."""
    charts = "\n".join(_chart(report, metric) for metric in METRICS)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sparkals evaluation</title></head><body>"
        f"<h1>sparkals evaluation {html.escape(str(report.get('run_date', '')))}</h1>"
        f"<div>{charts}</div><pre>{html.escape(markdown(report))}</pre></body></html>\n"
    )
