"""Server-rendered SVG bar charts for the ops console (no JavaScript, no external assets)."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from paycore.money import format_money
from reconciliation.selectors import ChannelSeries

_W, _H, _PAD, _LEGEND = 620, 150, 28, 16
_OK, _BAD = "#3c8d40", "#c0392b"


def _bars(series: ChannelSeries, *, amounts: bool) -> str:
    points = series.days
    values = [(p.matched_amount, p.discrepant_amount) if amounts else (p.matched, p.discrepant) for p in points]
    top = max((m + d for m, d in values), default=0) or 1
    slot = (_W - 2 * _PAD) / max(len(points), 1)
    plot_h = _H - _PAD - _LEGEND
    out = []
    for i, (point, (good, bad)) in enumerate(zip(points, values, strict=True)):
        x = _PAD + i * slot + 1
        width = max(slot - 2, 1)
        good_h, bad_h = plot_h * good / top, plot_h * bad / top
        base = _LEGEND + plot_h
        if amounts:
            tip = (
                f"{point.day}: matched {format_money(good, series.currency or None)}, "
                f"discrepant {format_money(bad, series.currency or None)}"
            )
        else:
            tip = f"{point.day}: {good} matched, {bad} discrepant"
        out.append(f"<g><title>{escape(tip)}</title>")
        out.append(
            f'<rect x="{x:.1f}" y="{base - good_h:.1f}" width="{width:.1f}" height="{good_h:.1f}" fill="{_OK}"/>'
        )
        out.append(
            f'<rect x="{x:.1f}" y="{base - good_h - bad_h:.1f}" width="{width:.1f}" height="{bad_h:.1f}" '
            f'fill="{_BAD}"/></g>'
        )
        if i % 7 == 0 or i == len(points) - 1:
            out.append(f'<text x="{x:.1f}" y="{_H - 8}" font-size="9" fill="#555">{point.day.strftime("%m-%d")}</text>')
    peak = format_money(top, series.currency or None) if amounts else str(top)
    out.append(f'<text x="2" y="{_LEGEND + 8}" font-size="9" fill="#555">{escape(peak)}</text>')
    return "".join(out)


def series_svg(series: ChannelSeries, *, amounts: bool) -> SafeString:
    what = f"amounts ({series.currency})" if amounts else "counts"
    title = f"{series.channel}: matched vs discrepant {what}, last {len(series.days)} days"
    legend = (
        f'<rect x="{_PAD}" y="2" width="10" height="10" fill="{_OK}"/>'
        f'<text x="{_PAD + 14}" y="11" font-size="10">matched</text>'
        f'<rect x="{_PAD + 80}" y="2" width="10" height="10" fill="{_BAD}"/>'
        f'<text x="{_PAD + 94}" y="11" font-size="10">discrepant</text>'
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}"><title>{escape(title)}</title>{legend}{_bars(series, amounts=amounts)}</svg>'
    )
    return mark_safe(svg)  # noqa: S308 - every text inside is escaped above
