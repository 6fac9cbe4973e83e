"""Bar charts as inline SVG, drawn on the server: no script and nothing fetched by the browser.

Each bar carries its bucket and value as ``data-`` attributes and a ``<title>``
(the tooltip), so a reader, a screen reader and a test all see the numbers
the API returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

from markupsafe import Markup

WIDTH: Final = 800
HEIGHT: Final = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 8, 12, 30


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket: ``bucket`` is its ISO start time, ``title`` the tooltip."""

    bucket: str
    value: float
    title: str


def bar_chart(bars: Sequence[Bar], caption: str) -> Markup:
    """An SVG bar chart of ``bars`` in time order, labelled ``caption``."""
    head = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(caption)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(caption)}</title>"
    )
    if not bars:
        middle = f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data</text>'
        return Markup(f"{head}{middle}</svg>")
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    top = max(bar.value for bar in bars) or 1.0
    step = plot_w / len(bars)
    parts = [head, _axes(top, plot_w, plot_h)]
    for i, bar in enumerate(bars):
        h = plot_h * bar.value / top
        parts.append(
            f'<rect class="bar" x="{_LEFT + i * step:.2f}" y="{_TOP + plot_h - h:.2f}" '
            f'width="{max(step - 1, 0.5):.2f}" height="{h:.2f}" '
            f'data-bucket="{escape(bar.bucket)}" data-value="{bar.value:g}">'
            f"<title>{escape(bar.title)}</title></rect>"
        )
    parts.append(_x_labels(bars[0].bucket, bars[-1].bucket, plot_h))
    parts.append("</svg>")
    return Markup("".join(parts))


def _axes(top: float, plot_w: float, plot_h: float) -> str:
    lines = []
    for share in (0.0, 0.5, 1.0):
        y = _TOP + plot_h * (1 - share)
        lines.append(
            f'<line class="gridline" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.2f}" y2="{y:.2f}"/>'
            f'<text class="axis" x="{_LEFT - 6}" y="{y + 4:.2f}" text-anchor="end">'
            f"{top * share:,.4g}</text>"
        )
    return "".join(lines)


def _x_labels(first: str, last: str, plot_h: float) -> str:
    y = _TOP + plot_h + 18
    return (
        f'<text class="axis" x="{_LEFT}" y="{y}">{escape(_short(first))}</text>'
        f'<text class="axis" x="{WIDTH - _RIGHT}" y="{y}" text-anchor="end">'
        f"{escape(_short(last))}</text>"
    )


def _short(bucket: str) -> str:
    """``2026-03-01T08:00:00Z`` → ``2026-03-01 08:00 UTC``."""
    return bucket[:16].replace("T", " ") + " UTC"
