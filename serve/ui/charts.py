"""Small SVG charts rendered on the server (no JavaScript, no CDN): lines, bars, stacked bars."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from serve.ui.i18n import _

#: Best to worst: green to red (grades); other series use the first and the last colours.
RAMP = ("#2e7d32", "#7cb342", "#f9a825", "#ef6c00", "#c62828")
PAIR = ("#1565c0", "#9e9e9e")
#: Unordered categories (reasons): distinct hues, none implying better or worse.
HUES = ("#1565c0", "#6a1b9a", "#00838f", "#ef6c00", "#ad1457", "#5d4037", "#9e9e9e")
W, H = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 40, 16, 48


def ramp(n: int) -> list[str]:
    """``n`` colours from green to red."""
    if n <= 1:
        return [RAMP[0]]
    return [RAMP[round(i * (len(RAMP) - 1) / (n - 1))] for i in range(n)]


def hues(n: int) -> list[str]:
    """``n`` distinct colours for unordered categories (repeating after seven)."""
    return [HUES[i % len(HUES)] for i in range(n)]


def _svg(body: str, title: str, height: int = H, width: int = W) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
                  f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
                  f"<title>{escape(title)}</title>{body}</svg>")


def _empty(title: str) -> Markup:
    return _svg(f'<text x="{W / 2}" y="60" text-anchor="middle" class="muted">'
                + escape(_("no data in this window")) + "</text>", title, 100)


def _axis(top: float, fmt: str, plot_h: float) -> str:
    """Horizontal grid lines with labels, 0 to ``top``."""
    out = []
    for k in range(5):
        v = top * k / 4
        y = TOP + plot_h - plot_h * k / 4
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'class="grid"/><text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'class="tick">{fmt.format(v)}</text>')
    return "".join(out)


def _nice_count(value: float) -> int:
    """An axis top for counts: ticks at quarters are whole numbers."""
    return max(4, -(-int(value) // 4) * 4)


def _nice(value: float) -> float:
    for step in (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if value <= step:
            return step
    return value


def legend(names: list[str], colors: list[str]) -> Markup:
    items = "".join(f'<span class="key"><svg class="swatch" viewBox="0 0 10 10" '
                    f'aria-hidden="true"><rect width="10" height="10" rx="2" fill="{c}"/></svg>'
                    f"{escape(n)}</span>" for n, c in zip(names, colors, strict=True))
    return Markup(f'<div class="legend">{items}</div>')


def bar(percent: float | None, market: float | None = None) -> Markup:
    """A horizontal bar ``percent`` (0 to 100) of its cell long, with a tick at ``market``
    percent if given: SVG attributes, as the Content-Security-Policy refuses inline styles."""
    def clamp(v: float | None) -> float:
        return min(100.0, max(0.0, v or 0.0))
    tick = ("" if market is None else
            f'<rect class="mark" x="{min(clamp(market), 99.0):.1f}" width="1" height="18"/>')
    return Markup(f'<svg class="hbar" viewBox="0 0 100 18" preserveAspectRatio="none" '
                  f'aria-hidden="true"><rect class="fill" y="3" width="{clamp(percent):.1f}" '
                  f'height="12"/>{tick}</svg>')


def line_chart(labels: list[str], series: dict[str, list[float | None]], title: str,
               percent: bool = True, counts: list[tuple[int, int]] | None = None) -> Markup:
    """One line per series over ``labels`` (None: no point); values are rates if ``percent``.
    ``counts``: per label, the first series' (events, n), written under the label ("n=25") and
    beside its points ("12% (3 of 25)"), so a rate from a handful of cases reads as such."""
    values = [v for vs in series.values() for v in vs if v is not None]
    if not labels or not values:
        return _empty(title)
    top = _nice(max(values) or (0.05 if percent else 1))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    step = plot_w / max(1, len(labels) - 1)
    fmt = "{:.0%}" if percent else "{:g}"
    parts = [_axis(top, fmt, plot_h)]
    for i, label in enumerate(labels):
        x = LEFT + i * step if len(labels) > 1 else LEFT + plot_w / 2
        parts.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 18}" text-anchor="middle" '
                     f'class="tick">{escape(label)}</text>')
        if counts:
            parts.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 34}" text-anchor="middle" '
                         f'class="tick n">n={counts[i][1]}</text>')
    colors = list(PAIR) if len(series) <= 2 else ramp(len(series))
    for k, ((name, vs), color) in enumerate(zip(series.items(), colors, strict=False)):
        points = []
        for i, v in enumerate(vs):
            if v is None:
                continue
            x = LEFT + i * step if len(labels) > 1 else LEFT + plot_w / 2
            y = TOP + plot_h - plot_h * v / top
            note = (" " + _("(%(k)s of %(n)s)") % {"k": counts[i][0], "n": counts[i][1]}
                    if counts and k == 0 else "")
            points.append((x, y, fmt.format(v) + note))
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                         f'stroke-width="2.5"/>')
        for x, y, shown in points:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}">'
                         f"<title>{escape(name)}: {escape(shown)}</title></circle>")
    return _svg("".join(parts), title) + legend(list(series), colors[:len(series)])


def bar_chart(items: list[tuple[str, float]], title: str, percent: bool = False,
              color: str = PAIR[0], width: int = 420) -> Markup:
    """Horizontal bars, one per (label, value), for a half-width card."""
    if not items or not any(v for _, v in items):
        return _empty(title)
    row, label_w = 28, 210
    height = TOP + row * len(items) + 8
    top = max(v for _, v in items) or 1
    plot_w = width - label_w - 40
    parts = []
    for i, (label, v) in enumerate(items):
        y = TOP + i * row
        w = plot_w * v / top
        text = f"{v:.0%}" if percent else f"{v:g}"
        label = label if len(label) <= 32 else label[:31] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end" class="tick">'
                     f'{escape(label)}</text><rect x="{label_w}" y="{y + 4}" width="{w:.1f}" '
                     f'height="{row - 8}" rx="3" fill="{color}"/><text x="{label_w + w + 6:.1f}" '
                     f'y="{y + 17}" class="tick">{text}</text>')
    return _svg("".join(parts), title, height, width)


def stacked_bars(labels: list[str], stacks: list[dict[str, int]], keys: list[str],
                 title: str, colors: list[str] | None = None) -> Markup:
    """Vertical bars per label, each stacked by ``keys`` (counts)."""
    totals = [sum(s.get(k, 0) for k in keys) for s in stacks]
    if not labels or not any(totals):
        return _empty(title)
    top = _nice_count(max(totals))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / len(labels)
    bar = min(56.0, slot * 0.7)
    colors = colors or ramp(len(keys))
    names = dict(zip(keys, [_(k.replace("_", " ")) for k in keys], strict=True))  # shown
    parts = [_axis(top, "{:g}", plot_h)]
    for i, (label, stack) in enumerate(zip(labels, stacks, strict=True)):
        x = LEFT + i * slot + (slot - bar) / 2
        y = float(TOP + plot_h)
        for key, color in zip(keys, colors, strict=True):
            n = stack.get(key, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{color}"><title>{escape(label)} {escape(names[key])}: {n}</title>'
                         "</rect>")
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{H - BOTTOM + 18}" text-anchor="middle" '
                     f'class="tick">{escape(label)}</text>')
    return _svg("".join(parts), title) + legend(list(names.values()), colors)
