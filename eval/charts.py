"""Small inline-SVG charts and a self-contained HTML page for evaluation reports.

No JavaScript and nothing fetched: a report is one file that opens from disk or an e-mail.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deflect.eval.intent_eval import ReliabilityBin

COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bf8700"]

CSS = """
:root{--accent:#1f6feb;--fg:#1c2128;--muted:#636c76}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);max-width:1000px;
margin:2rem auto;padding:0 1rem}h1{font-size:1.5rem}
h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
.muted{color:var(--muted)}table{border-collapse:collapse;font-size:13px;margin:.5rem 0}
th,td{text-align:left;padding:.25rem .6rem;border-bottom:1px solid #eaeef2;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.best{font-weight:700}
ul.assume li{margin:.2rem 0}
"""


def e(s) -> str:
    return html.escape(str(s), quote=True)


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != v:  # nan
            return "n/a"
        return f"{v:.{digits}f}"
    return str(v)


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    x_label: str,
    y_label: str,
    title: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
    marks: Sequence[tuple[float, float, str]] = (),
) -> str:
    """Lines (one per series) on fixed axes, with a legend; ``marks`` are labeled points."""
    w, h, left, bottom, top, right = 640, 360, 55, 45, 20, 170
    pw, ph = w - left - right, h - top - bottom

    def X(x: float) -> float:
        return left + pw * (x - x_range[0]) / ((x_range[1] - x_range[0]) or 1)

    def Y(y: float) -> float:
        return top + ph * (1 - (y - y_range[0]) / ((y_range[1] - y_range[0]) or 1))

    parts = [f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='none' stroke='#d0d7de'/>"]
    for i in range(6):
        fx = x_range[0] + (x_range[1] - x_range[0]) * i / 5
        fy = y_range[0] + (y_range[1] - y_range[0]) * i / 5
        parts.append(f"<text x='{X(fx):.1f}' y='{h - bottom + 16}' text-anchor='middle'>{fx:.1f}</text>")
        parts.append(f"<text x='{left - 6}' y='{Y(fy) + 4:.1f}' text-anchor='end'>{fy:.1f}</text>")
        parts.append(
            f"<line x1='{left}' x2='{left + pw}' y1='{Y(fy):.1f}' y2='{Y(fy):.1f}' stroke='#eaeef2'/>"
            if 0 < i < 5
            else ""
        )
    parts.append(f"<text x='{left + pw / 2}' y='{h - 8}' text-anchor='middle'>{e(x_label)}</text>")
    parts.append(f"<text transform='translate(14 {top + ph / 2}) rotate(-90)' text-anchor='middle'>{e(y_label)}</text>")
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        clean = [(x, y) for x, y in pts if x == x and y == y]
        if clean:
            path = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in clean)
            parts.append(f"<polyline points='{path}' fill='none' stroke='{color}' stroke-width='2'/>")
        parts.append(
            f"<rect x='{w - right + 12}' y='{top + 6 + i * 20}' width='12' height='12' fill='{color}'/>"
            f"<text x='{w - right + 30}' y='{top + 16 + i * 20}'>{e(name)}</text>"
        )
    for x, y, label in marks:
        parts.append(
            f"<circle cx='{X(x):.1f}' cy='{Y(y):.1f}' r='4' fill='none' stroke='#1c2128' stroke-width='1.5'/>"
            f"<text x='{X(x) + 6:.1f}' y='{Y(y) - 6:.1f}'>{e(label)}</text>"
        )
    return (
        f"<svg role='img' aria-label='{e(title)}' viewBox='0 0 {w} {h}' width='{w}' height='{h}' "
        f"xmlns='http://www.w3.org/2000/svg' font-size='12'><title>{e(title)}</title>{''.join(parts)}</svg>"
    )


def reliability_chart(bins: Sequence[ReliabilityBin], *, title: str = "Reliability") -> str:
    """Accuracy per confidence bin (bars) against the diagonal of perfect calibration."""
    w, h, left, bottom, top = 420, 320, 50, 45, 15
    pw, ph = w - left - 20, h - top - bottom
    parts = [f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='none' stroke='#d0d7de'/>"]
    parts.append(
        f"<line x1='{left}' y1='{top + ph}' x2='{left + pw}' y2='{top}' stroke='#9aa5b1' stroke-dasharray='4 3'/>"
    )
    for b in bins:
        if not b.count:
            continue
        x0 = left + pw * b.lo
        bw = pw * (b.hi - b.lo)
        bh = ph * b.accuracy
        parts.append(
            f"<rect x='{x0 + 1:.1f}' y='{top + ph - bh:.1f}' width='{max(bw - 2, 1):.1f}' height='{bh:.1f}' "
            f"fill='#1f6feb' opacity='0.8'><title>{b.lo:.2f}-{b.hi:.2f}: accuracy {b.accuracy:.2f}, "
            f"{b.count} texts</title></rect>"
        )
    for i in range(6):
        f = i / 5
        parts.append(f"<text x='{left + pw * f:.1f}' y='{h - bottom + 16}' text-anchor='middle'>{f:.1f}</text>")
        parts.append(f"<text x='{left - 6}' y='{top + ph * (1 - f) + 4:.1f}' text-anchor='end'>{f:.1f}</text>")
    parts.append(f"<text x='{left + pw / 2}' y='{h - 8}' text-anchor='middle'>confidence</text>")
    parts.append(f"<text transform='translate(14 {top + ph / 2}) rotate(-90)' text-anchor='middle'>accuracy</text>")
    return (
        f"<svg role='img' aria-label='{e(title)}' viewBox='0 0 {w} {h}' width='{w}' height='{h}' "
        f"xmlns='http://www.w3.org/2000/svg' font-size='12'><title>{e(title)}</title>{''.join(parts)}</svg>"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence], *, numeric_from: int = 1) -> str:
    """An HTML table; cells from column ``numeric_from`` on are right-aligned numbers."""
    head = "".join(f"<th class='{'num' if i >= numeric_from else ''}'>{e(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f"<td class='{'num' if i >= numeric_from else ''}'>{e(fmt(c))}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """A whole HTML document: ``sections`` are ``(id, heading, inner html)``."""
    body = "".join(f"<section id='{e(sid)}'><h2>{e(head)}</h2>{inner}</section>" for sid, head, inner in sections)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{e(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{e(title)}</h1><p class='muted'>{e(subtitle)}</p>{body}</body></html>\n"
    )
