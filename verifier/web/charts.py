"""Charts as SVG, drawn on the server: bars (stacked, with an optional line), a day x hour
heatmap and a line. Pure functions from numbers to markup; no Flask, no JavaScript.

Why SVG from the server rather than a JavaScript library: the pages must work on networks
without internet and with nothing to install at run time; an SVG is drawn before the page
arrives (the data is aggregated on the server anyway), prints, scales to a phone's width,
and carries its own text for screen readers (a title, a description, and a <title> per
mark that browsers show on hover). Times in the markup are UTC; each carries its Unix time
in data-ts so that the page's small script shows them in the viewer's time zone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from verifier.wire import times

W, H = 720, 240  # the drawing's coordinates; the SVG scales to its container
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 28


def wh_text(wh: float | None) -> str:
    """Energy in the unit that fits: Wh, kWh, MWh, GWh (three significant digits at most)."""
    if wh is None:
        return "no data"
    for unit, scale in (("GWh", 1e9), ("MWh", 1e6), ("kWh", 1e3)):
        if abs(wh) >= scale:
            value = wh / scale
            return f"{value:,.{2 if abs(value) < 10 else 1 if abs(value) < 100 else 0}f} {unit}"
    return f"{int(wh):,} Wh"


def utc_text(ts: int, form: str = "%Y-%m-%d %H:%M") -> str:
    return times.strftime(ts, form) + " UTC"


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int | None]  # one per slot; None: no data
    css: str  # the class that colours it (web.css)


def _ident(prefix: str, *parts: object) -> str:
    """An id for the chart's title and description, the same for the same chart."""
    return prefix + hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


def _ticks(top: float) -> list[float]:
    """Round y-axis ticks from 0 to at least top."""
    if top <= 0:
        return [0.0, 1.0]
    step = 10 ** (len(str(int(top))) - 1) if top >= 1 else 1.0
    for k in (1, 2, 5, 10):
        if top / (step * k) <= 5:
            step *= k
            break
    n = int(-(-top // step))
    return [i * step for i in range(n + 1)]


def _frame(title: str, desc: str, body: list[str], ticks: list[float], label: str, unit_text: bool = True) -> str:
    top = ticks[-1] or 1
    plot_h = H - TOP - BOTTOM
    axis = []
    for t in ticks:
        y = TOP + plot_h - t / top * plot_h
        axis.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        text = wh_text(t) if unit_text else f"{t:g}"
        axis.append(f'<text class="ytick" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>')
    ident = _ident("c", title, desc, len(body))
    return (
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{ident}t {ident}d"'
        f' preserveAspectRatio="xMidYMid meet" data-label="{escape(label)}">'
        f'<title id="{ident}t">{escape(title)}</title><desc id="{ident}d">{escape(desc)}</desc>'
        + "".join(axis)
        + "".join(body)
        + "</svg>"
    )


def bars(
    title: str,
    starts: Sequence[int],
    step_s: int,
    series: Sequence[Series],
    line: Series | Sequence[Series] = (),
    desc: str = "",
    hatched: Sequence[bool] = (),
) -> str:
    """Stacked bars, one slot per start (a Unix time, step_s long), the series stacked in
    order; line (one series or several, optional) drawn over them. A slot whose every series
    is None is drawn as a gap ("no data"); hatched marks slots whose data is not fully
    measured."""
    lines = [line] if isinstance(line, Series) else list(line)
    n = max(1, len(starts))
    totals = [sum(v or 0 for v in (s.values[i] for s in series)) for i in range(len(starts))]
    peak = max([*totals, *(v or 0 for ln in lines for v in ln.values)], default=0)
    ticks = _ticks(peak)
    top = ticks[-1] or 1
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / n
    gap = 0.15 * slot if slot > 4 else 0
    body = []
    form = "%m-%d %H:%M" if step_s < 86400 else "%Y-%m-%d"
    for i, t in enumerate(starts):
        x = LEFT + i * slot
        values = [s.values[i] for s in series]
        when = utc_text(t, form)
        if all(v is None for v in values):
            body.append(f'<rect class="nodata" x="{x:.2f}" y="{TOP}" width="{slot:.2f}" height="{plot_h}">'
                        f'<title data-ts="{t}">{escape(when)}: no data</title></rect>')  # fmt: skip
            continue
        y: float = TOP + plot_h
        words = "; ".join(f"{s.name} {wh_text(v)}" for s, v in zip(series, values, strict=True) if v is not None)
        for s, v in zip(series, values, strict=True):
            if not v:
                continue
            h = v / top * plot_h
            y -= h
            css = s.css + (" partial" if i < len(hatched) and hatched[i] else "")
            body.append(
                f'<rect class="bar {css}" x="{x + gap / 2:.2f}" y="{y:.2f}" width="{slot - gap:.2f}" height="{h:.2f}">'
                f'<title data-ts="{t}">{escape(when)}: {escape(words)}</title></rect>'
            )
    for ln in lines:
        points = [
            f"{LEFT + (i + 0.5) * slot:.2f},{TOP + plot_h - (v / top) * plot_h:.2f}"
            for i, v in enumerate(ln.values)
            if v is not None
        ]
        if points:
            body.append(f'<polyline class="line {ln.css}" fill="none" points="{" ".join(points)}">'
                        f"<title>{escape(ln.name)}</title></polyline>")  # fmt: skip
    body += _x_labels(starts, slot, form)
    legend = [*series, *lines]
    body += _legend(legend)
    return _frame(title, desc or f"{len(starts)} bars: " + ", ".join(s.name for s in legend), body, ticks, title)


def _x_labels(starts: Sequence[int], slot: float, form: str) -> list[str]:
    if not starts:
        return []
    every = max(1, int(-(-120 // slot)))  # a label every ~120 units of width
    out = []
    for i in range(0, len(starts), every):
        x = LEFT + (i + 0.5) * slot
        out.append(f'<text class="xtick" x="{x:.1f}" y="{H - 10}" text-anchor="middle" data-ts="{starts[i]}"'
                   f' data-form="{"day" if "%H" not in form else "tick"}">'
                   f"{escape(utc_text(starts[i], form)[:-4])}</text>")  # fmt: skip
    return out


def _legend(series: Sequence[Series]) -> list[str]:
    out, x = [], LEFT + 4
    for s in series:
        out.append(f'<rect class="key {s.css}" x="{x}" y="{TOP}" width="10" height="10"/>'
                   f'<text class="legend" x="{x + 14}" y="{TOP + 9}">{escape(s.name)}</text>')  # fmt: skip
        x += 24 + 7 * len(s.name)
    return out


def heatmap(title: str, days: Sequence[int], match: Sequence[Sequence[float | None]], desc: str = "") -> str:
    """A day (rows) x hour of day UTC (columns) grid of match fractions 0..1 (None: no load);
    each cell's shade is its match, its <title> the figure."""
    rows = max(1, len(days))
    cell_w = (W - LEFT - RIGHT) / 24
    cell_h = min(18.0, (H * 2 - TOP - BOTTOM) / rows)
    height = TOP + rows * cell_h + BOTTOM
    body = []
    for r, day in enumerate(days):
        y = TOP + r * cell_h
        if rows <= 40 or r % max(1, rows // 20) == 0:
            body.append(f'<text class="ytick" x="{LEFT - 4}" y="{y + cell_h * 0.75:.1f}" text-anchor="end"'
                        f' data-ts="{day}" data-form="day">{escape(utc_text(day, "%m-%d")[:-4])}</text>')  # fmt: skip
        for hour in range(24):
            v = match[r][hour] if hour < len(match[r]) else None
            x = LEFT + hour * cell_w
            if v is None:
                shade, words = "none", "no load"
            else:
                shade, words = f"m{min(10, int(v * 10 + 1e-9))}", f"{v * 100:.0f} % matched"
            body.append(f'<rect class="cell {shade}" x="{x:.2f}" y="{y:.2f}" width="{cell_w - 1:.2f}"'
                        f' height="{cell_h - 1:.2f}"><title data-ts="{day + hour * 3600}">'
                        f"{escape(utc_text(day + hour * 3600))}: {words}</title></rect>")  # fmt: skip
    for hour in range(0, 24, 3):
        body.append(f'<text class="xtick" x="{LEFT + (hour + 0.5) * cell_w:.1f}" y="{height - 10:.1f}"'
                    f' text-anchor="middle">{hour:02d}h</text>')  # fmt: skip
    ident = _ident("h", title, desc, rows)
    return (
        f'<svg class="chart heatmap" viewBox="0 0 {W} {height:.0f}" role="img" aria-labelledby="{ident}t {ident}d"'
        f' data-label="{escape(title)}"><title id="{ident}t">{escape(title)}</title>'
        f'<desc id="{ident}d">{escape(desc or f"{rows} days by 24 hours (UTC), shaded by match")}</desc>'
        + "".join(body)
        + "</svg>"
    )


def curve(title: str, points: Sequence[tuple[int, float]], unit: str, desc: str = "") -> str:
    """A line through (Unix time, value) points, with a dot on each (its <title> the value)."""
    if not points:
        return ""
    t0, t1 = points[0][0], max(points[-1][0], points[0][0] + 1)
    ticks = _ticks(max(v for _, v in points))
    top = ticks[-1] or 1
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def xy(t: int, v: float) -> tuple[float, float]:
        return LEFT + (t - t0) / (t1 - t0) * plot_w, TOP + plot_h - v / top * plot_h

    coords = [xy(t, v) for t, v in points]
    body = [f'<polyline class="line power" fill="none" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in coords)}"/>']
    for (t, v), (x, y) in zip(points, coords, strict=True):
        body.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3"><title data-ts="{t}">'
                    f"{escape(utc_text(t, '%H:%M:%S'))}: {v:,.0f} {escape(unit)}</title></circle>")  # fmt: skip
    for t in (t0, (t0 + t1) // 2, t1):
        x, _ = xy(t, 0)
        body.append(f'<text class="xtick" x="{x:.1f}" y="{H - 10}" text-anchor="middle" data-ts="{t}"'
                    f' data-form="time">{escape(utc_text(t, "%H:%M")[:-4])}</text>')  # fmt: skip
    axis = []
    for tk in ticks:
        y = TOP + plot_h - tk / top * plot_h
        axis.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        label = f"{tk:,.0f} {escape(unit)}"
        axis.append(f'<text class="ytick" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    ident = _ident("p", title, desc, len(points))
    return (
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{ident}t {ident}d"'
        f' data-label="{escape(title)}"><title id="{ident}t">{escape(title)}</title>'
        f'<desc id="{ident}d">{escape(desc or f"{len(points)} points")}</desc>' + "".join(axis + body) + "</svg>"
    )
