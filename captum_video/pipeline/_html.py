"""HTML building blocks of the report: escaping, number spans, table cells, media links and
inline SVG charts (no scripts, nothing fetched)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COLOURS", "CSS", "bar_chart", "cell", "esc", "finite", "line_chart", "media", "num"]

COLOURS = ("#1565c0", "#e65100", "#2e7d32", "#6a1b9a", "#c62828", "#00838f", "#9e9d24")

CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1b1b1b;
margin:0;background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid
#dde1e6;padding-bottom:4px}h3{font-size:16px;margin:20px 0 6px}
.sub{color:#5f6368;margin:0 0 16px}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:16px 20px;margin:12px 0}
.verdict{font-size:19px;font-weight:600}
.verdict.motion{color:#1565c0}.verdict.appearance{color:#e65100}.verdict.both{color:#2e7d32}
.num{font-weight:600;font-variant-numeric:tabular-nums}
.note{color:#5f6368;font-size:13px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:right}
th{background:#eef1f4}td.l,th.l{text-align:left}
.clips{display:flex;flex-wrap:wrap;gap:12px}
.clip{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:8px;font-size:13px}
.clip video,.clip img{display:block;max-width:300px;image-rendering:pixelated}
svg text{font:11px system-ui,sans-serif;fill:#333}
code{background:#eef1f4;padding:1px 4px;border-radius:3px}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def num(key: str, value: float | None, kind: str = "num") -> str:
    """A number of the summary, readable by people (text) and programs (data-value)."""
    if not finite(value):
        return f'<span class="num" data-key="{esc(key)}" data-value="">n/a</span>'
    assert value is not None
    text = {"num": f"{value:.2f}", "pct": f"{100 * value:.0f}%", "int": f"{value:.0f}"}[kind]
    return (
        f'<span class="num" data-key="{esc(key)}" data-fmt="{kind}" '
        f'data-value="{value!r}">{text}</span>'
    )


def cell(value: Any, kind: str = "num") -> str:
    if not finite(value):
        return "<td>n/a</td>"
    return f"<td>{value:.0%}</td>" if kind == "pct" else f"<td>{value:.3f}</td>"


def media(path: str) -> str:
    src = esc(path)
    if path.endswith(".gif"):
        return f'<a href="{src}"><img src="{src}" alt="{src}"></a>'
    return (
        f'<video src="{src}" controls loop muted playsinline preload="metadata"></video>'
        f'<a href="{src}">{src}</a>'
    )


def line_chart(series: Mapping[str, Sequence[float]], caption: str) -> str:
    """Lines over frames 1..T as inline SVG, with axes and a legend."""
    if not series:
        return ""
    w, h, left, right, top, bottom = 640, 220, 48, 150, 12, 32
    t = max(len(v) for v in series.values())
    peak = max(max(v) for v in series.values()) or 1.0
    pw, ph = w - left - right, h - top - bottom

    def xy(i: int, v: float) -> str:
        x = left + (pw * i / (t - 1) if t > 1 else pw / 2)
        return f"{x:.1f},{top + ph * (1 - v / peak):.1f}"

    out = [
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
        f'height="{h}" role="img"><title>{esc(caption)}</title>',
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#888"/>',
    ]
    for frac in (0, 0.5, 1):
        y = top + ph * (1 - frac)
        out.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{peak * frac:.2f}</text>'
        )
    for i in sorted({0, (t - 1) // 2, t - 1}):
        x = xy(i, 0).split(",")[0]
        out.append(f'<text x="{x}" y="{top + ph + 14}" text-anchor="middle">{i + 1}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 4}" text-anchor="middle">frame</text>')
    for k, (name, values) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = " ".join(xy(i, v) for i, v in enumerate(values))
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}" '
            f'data-series="{esc(name)}"/>'
        )
        y = top + 14 * k + 8
        out.append(
            f'<rect x="{left + pw + 12}" y="{y - 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + pw + 26}" y="{y + 1}">{esc(name)}</text>'
        )
    out.append(f'</svg><figcaption class="note">{esc(caption)}</figcaption></figure>')
    return "".join(out)


def bar_chart(
    groups: Mapping[str, Sequence[float | None]], keys: Sequence[str], caption: str
) -> str:
    """Grouped bars (one group per class, one bar per key) as inline SVG."""
    w, h, left, top, bottom = 640, 200, 48, 12, 36
    values = [float(v) for vs in groups.values() for v in vs if v is not None and finite(v)]
    peak = max([abs(v) for v in values] + [1e-9])
    lo = min([0.0, *values])
    ph, pw = h - top - bottom, w - left - 120
    gw = pw / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(keys))

    def y(v: float) -> float:
        return top + ph * (peak - v) / (peak - lo)

    out = [
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
        f'height="{h}" role="img"><title>{esc(caption)}</title>',
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{left + pw}" y2="{y(0):.1f}" stroke="#888"/>',
        f'<text x="{left - 4}" y="{y(peak) + 4:.1f}" text-anchor="end">{peak:.2f}</text>',
        f'<text x="{left - 4}" y="{y(0) + 4:.1f}" text-anchor="end">0</text>',
    ]
    for g, (name, vs) in enumerate(groups.items()):
        x0 = left + g * gw + gw * 0.1
        for k, v in enumerate(vs):
            if not finite(v):
                continue
            assert v is not None
            top_y, base = min(y(v), y(0)), max(y(v), y(0))
            out.append(
                f'<rect x="{x0 + k * bw:.1f}" y="{top_y:.1f}" width="{bw - 2:.1f}" '
                f'height="{base - top_y:.1f}" fill="{COLOURS[k % len(COLOURS)]}">'
                f"<title>{esc(name)} {esc(keys[k])}: {v:.3f}</title></rect>"
            )
        out.append(
            f'<text x="{x0 + gw * 0.4:.1f}" y="{top + ph + 14}" text-anchor="middle">'
            f"{esc(name)}</text>"
        )
    for k, key in enumerate(keys):
        out.append(
            f'<rect x="{left + pw + 12}" y="{top + 14 * k}" width="10" height="10" '
            f'fill="{COLOURS[k % len(COLOURS)]}"/><text x="{left + pw + 26}" '
            f'y="{top + 14 * k + 9}">{esc(key)}</text>'
        )
    out.append(f'</svg><figcaption class="note">{esc(caption)}</figcaption></figure>')
    return "".join(out)
