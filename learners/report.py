"""Self-contained HTML report for `switchboard evaluate`: numbers plus an inline SVG learning curve.

No plotting dependency on purpose: the report must open anywhere (attached to a ticket, offline).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

W, H, PAD = 720, 320, 44


def _polyline(points: Sequence[tuple[int, float]], n_max: int, colour: str) -> str:
    if not points:
        return ""
    coords = " ".join(
        f"{PAD + (W - 2 * PAD) * n / max(1, n_max):.1f},{H - PAD - (H - 2 * PAD) * acc:.1f}" for n, acc in points
    )
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>'


def learning_curve_svg(
    cumulative: Sequence[tuple[int, float]], recent: Sequence[tuple[int, float]], holdout: float | None
) -> str:
    n_max = max((n for n, _ in cumulative), default=1)
    grid = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = H - PAD - (H - 2 * PAD) * tick
        grid.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - PAD}" y2="{y:.1f}" stroke="#ddd"/>')
        grid.append(f'<text x="{PAD - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{tick:.2f}</text>')
    for i in range(5):
        n = round(n_max * i / 4)
        x = PAD + (W - 2 * PAD) * i / 4
        grid.append(f'<text x="{x:.1f}" y="{H - PAD + 16}" font-size="11" text-anchor="middle">{n}</text>')
    extra = ""
    if holdout is not None:
        y = H - PAD - (H - 2 * PAD) * holdout
        extra = (
            f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - PAD}" y2="{y:.1f}" stroke="#c33" stroke-dasharray="6 4"/>'
            f'<text x="{W - PAD}" y="{y - 6:.1f}" font-size="11" text-anchor="end" fill="#c33">'
            f"holdout {holdout:.3f}</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'role="img" aria-label="learning curve">'
        + "".join(grid)
        + _polyline(cumulative, n_max, "#2a6fdb")
        + _polyline(recent, n_max, "#999")
        + extra
        + f'<text x="{W / 2}" y="{H - 8}" font-size="12" text-anchor="middle">messages seen (test-then-train)</text>'
        + "</svg>"
    )


def render(
    title: str,
    summary: Mapping[str, object],
    cumulative: Sequence[tuple[int, float]],
    recent: Sequence[tuple[int, float]],
    holdout: float | None,
) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}"
        ".key span{display:inline-block;width:14px;height:3px;margin:0 6px 3px 14px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"{learning_curve_svg(cumulative, recent, holdout)}"
        "<p class='key'><span style='background:#2a6fdb'></span>cumulative accuracy"
        "<span style='background:#999'></span>accuracy over the last window"
        "<span style='background:#c33'></span>holdout</p>"
        f"<table>{rows}</table></body></html>"
    )
