"""Server-rendered SVG charts: no JavaScript, no dependency, themed by CSS.

Every function returns a :class:`~django.utils.safestring.SafeString` of one ``<svg>``
element. Every piece of text in it (class names, item names, titles) is escaped here,
so callers may pass untrusted strings. Colours come from CSS classes (``c0``..``c9``
for label classes, ``src-<source>`` for label sources, ``s-<name>`` for series) and
text uses ``currentColor``, so charts follow the page's light or dark theme; only
presentation attributes (``fill-opacity``, geometry) are set inline, never ``style``.
"""

import math

from django.utils.html import escape
from django.utils.safestring import mark_safe

from labeling.dashboard import svg
from labeling.dashboard.formatting import fmt_number

NARROW = 300  # the width of a chart drawn for a phone


def line_chart(series, *, title, x_label, y_label, y_domain=None, percent=False, integer_x=True, width=640, height=280):
    """Lines over a shared x axis.

    ``series``: ``[{"name", "css", "points": [(x, y), ...]}]``; ``y`` may be ``None``
    (a gap). ``y_domain`` fixes the y range (``(0, 1)`` for accuracies).
    """
    points = [(x, y) for s in series for x, y in s["points"] if y is not None]
    if not points:
        return svg.empty(width, height, title, "no data yet")
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    if y_domain is None:
        low = min(0.0, min(ys))
        y_ticks = svg.nice_ticks(low, max(ys))
    else:
        y_ticks = svg.nice_ticks(*y_domain)
    x_low, x_high = min(xs), max(xs)
    if x_low == x_high:
        x_low, x_high = (x_low - 1, x_high + 1) if x_low < 0 or x_low >= 1 else (0, 1)
    x_ticks = svg.nice_ticks(x_low, x_high, max(2, min(6, int((width - 76) // 55))))
    if integer_x:
        x_ticks = sorted({int(round(t)) for t in x_ticks if abs(t - round(t)) < 1e-9}) or [min(xs)]
    legend, legend_y = svg.legend([(s["name"], s["css"], "line") for s in series], 58, 16, width - 68)
    height += legend_y - 16
    axes = svg.Axes(
        width,
        height,
        (min(min(xs), x_ticks[0]), max(max(xs), x_ticks[-1])),
        (y_ticks[0], y_ticks[-1]),
        top=legend_y + 18,
    )

    def y_fmt(value):
        return fmt_number(value, percent)

    body = [axes.frame([(t, fmt_number(t)) for t in x_ticks], y_ticks, x_label, y_label, fmt_number, y_fmt)]
    for s in series:
        run, runs = [], []
        for x, y in s["points"]:
            if y is None:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append((x, y))
        if run:
            runs.append(run)
        for part in runs:
            if len(part) > 1:
                coords = " ".join(f"{svg.num(axes.px(x))},{svg.num(axes.py(y))}" for x, y in part)
                body.append(svg.el("polyline", points=coords, class_=f"line {s['css']}"))
        if len(points) <= 80:
            for x, y in s["points"]:
                if y is not None:
                    tip = f"{s['name']}: {fmt_number(x)} → {fmt_number(y, percent)}"
                    body.append(svg.marker(axes.px(x), axes.py(y), s["css"], "dot", title=tip))
    body.append(legend)
    return svg.document(width, height, title, "".join(body))


def column_chart(buckets, *, title, x_label, y_label, css="s-answers", width=640, height=240, label_every=None):
    """Vertical bars, one per bucket: ``[(tick_label, tooltip, value)]``."""
    if not buckets or not any(value for _, _, value in buckets):
        return svg.empty(width, height, title, "no answers in this period")
    values = [value for _, _, value in buckets]
    y_ticks = svg.nice_ticks(0, max(values), 4)
    axes = svg.Axes(width, height, (0, len(buckets)), (0, y_ticks[-1]), top=16)
    plot_w = width - axes.left - axes.right
    every = max(label_every or 1, math.ceil(len(buckets) * svg.TICK_SPACING / plot_w))
    x_ticks = [(i + 0.5, label) for i, (label, _, _) in enumerate(buckets) if i % every == 0]
    body = [axes.frame(x_ticks, y_ticks, x_label, y_label, fmt_number, fmt_number)]
    slot = (width - axes.left - axes.right) / len(buckets)
    for i, (_, tip, value) in enumerate(buckets):
        if not value:
            continue
        top = axes.py(value)
        body.append(
            svg.el(
                "rect",
                svg.tooltip(f"{tip}: {fmt_number(value)}"),
                x=axes.px(i) + slot * 0.12,
                y=top,
                width=max(slot * 0.76, 1),
                height=axes.py(0) - top,
                class_=f"bar {css}",
            )
        )
    return svg.document(width, height, title, "".join(body))


def hbar_chart(rows, *, title, x_label, legend=(), percent=False, x_max=None, marker=None, marker_label="", width=640):
    """Horizontal bars, stacked when a row has several segments.

    ``rows``: ``[(row_label, [(segment_name, value, css), ...])]``. ``legend``:
    ``[(name, css)]``. ``marker``: an x value drawn as a dashed vertical line
    (a threshold), with ``marker_label``.
    """
    if not rows:
        return svg.empty(width, 80, title, "no data yet")
    names = [svg.truncate(label, 22) for label, _ in rows]
    left = int(min(max(svg.CHAR_W * max(len(n) for n in names) + 16, 60), 190, width // 3))
    legend_svg, legend_y = svg.legend([(name, css, "box") for name, css in legend], left, 16, width - left - 10)
    top = legend_y + 16 if legend else 14
    bar_h = 22
    height = top + bar_h * len(rows) + 48
    totals = [sum(v for _, v, _ in segments) for _, segments in rows]
    high = x_max if x_max is not None else max(max(totals), 1)
    x_ticks = svg.nice_ticks(0, high, 5)
    if x_max is not None:
        x_ticks = [t for t in x_ticks if t <= x_max + 1e-9]
    axes = svg.Axes(
        width, height, (0, x_ticks[-1] if x_max is None else x_max), (0, len(rows)), left=left, top=top, right=48
    )
    out = []
    for tick in x_ticks:
        x = axes.px(tick)
        out.append(svg.el("line", x1=x, x2=x, y1=top, y2=height - axes.bottom, class_="grid"))
        out.append(
            svg.text_at(x, height - axes.bottom + 16, fmt_number(tick, percent), class_="tick", text_anchor="middle")
        )
    for i, ((label, segments), short) in enumerate(zip(rows, names)):
        out += _hbar_row(axes, label, short, segments, y=top + i * bar_h, bar_h=bar_h, percent=percent)
    base = height - axes.bottom
    out.append(svg.el("line", x1=left, x2=width - axes.right, y1=base, y2=base, class_="axis"))
    out.append(svg.el("line", x1=left, x2=left, y1=top, y2=base, class_="axis"))
    out.append(
        svg.text_at((left + width - axes.right) / 2, height - 8, x_label, class_="axis-label", text_anchor="middle")
    )
    if marker is not None:
        x = axes.px(marker)
        out.append(svg.el("line", svg.tooltip(marker_label), x1=x, x2=x, y1=top - 4, y2=base, class_="marker"))
    if legend:
        out.append(legend_svg)
    return svg.document(width, height, title, "".join(out))


def _hbar_row(axes, label, short, segments, *, y, bar_h, percent):
    """One row of :func:`hbar_chart` at ``y``: its label (``short``, the whole one as a
    tooltip when cut), its segments and, when stacked or a share, its total."""
    out = [svg.text_at(axes.left - 6, y + bar_h / 2 + 4, short, class_="tick", text_anchor="end")]
    if short != str(label):
        out[-1] = out[-1].replace("</text>", f"{svg.tooltip(label)}</text>")
    x = 0.0
    for name, value, css in segments:
        if value <= 0:
            continue
        w = axes.px(x + value) - axes.px(x)
        tip = f"{label} · {name}: {fmt_number(value, percent)}" if name else f"{label}: {fmt_number(value, percent)}"
        out.append(
            svg.el(
                "rect",
                svg.tooltip(tip),
                x=axes.px(x),
                y=y + 3,
                width=max(w, 0.8),
                height=bar_h - 6,
                class_=f"bar {css}",
            )
        )
        x += value
    if len(segments) > 1 or percent:
        out.append(svg.text_at(axes.px(x) + 4, y + bar_h / 2 + 4, fmt_number(x, percent), class_="tick value"))
    return out


def heatmap(matrix, labels, *, title, x_label="predicted", y_label="true", width=None):
    """A confusion matrix: counts (or probabilities) with each row shaded by its share."""
    k = len(labels)
    if not matrix or k == 0:
        return svg.empty(520, 80, title, "no confusion matrix yet")
    short = [svg.truncate(label, 14) for label in labels]
    cell = 44 if k <= 6 else 30 if k <= 12 else 20
    left = int(min(max(svg.CHAR_W * max(len(s) for s in short) + 30, 60), 130))
    top = int(min(max(svg.CHAR_W * max(len(s) for s in short) + 24, 50), 120))
    width = width or left + cell * k + 16
    height = top + cell * k + 16
    out = []
    for i, row in enumerate(matrix[:k]):
        out += _heatmap_row(i, row, labels, short[i], x_label=x_label, left=left, top=top, cell=cell)
    out += _heatmap_labels(short, x_label, y_label, left=left, top=top, cell=cell)
    return svg.document(width, height, title, "".join(out), css="chart heatmap")


def _heatmap_row(i, row, labels, short, *, x_label, left, top, cell):
    """Row ``i`` of :func:`heatmap` (true class ``labels[i]``): its label and its cells,
    each shaded by its share of the row, with the value when cells are big enough."""
    k = len(labels)
    total = sum(row) or 1
    y = top + i * cell
    out = [svg.text_at(left - 6, y + cell / 2 + 4, short, class_="tick", text_anchor="end")]
    for j, value in enumerate(row[:k]):
        share = value / total
        x = left + j * cell
        css = "heat diag" if i == j else "heat"
        tip = f"true {labels[i]}, {x_label} {labels[j]}: {fmt_number(value)} ({fmt_number(share, True)} of the row)"
        out.append(
            svg.el(
                "rect",
                svg.tooltip(tip),
                x=x,
                y=y,
                width=cell - 1,
                height=cell - 1,
                class_=css,
                fill_opacity=f"{0.06 + 0.94 * share:.3f}",
            )
        )
        if cell >= 30 and value:
            text_css = "cell-text on-dark" if share > 0.55 else "cell-text"
            out.append(
                svg.text_at(
                    x + cell / 2,
                    y + cell / 2 + 4,
                    fmt_number(value if value >= 1 or value == 0 else round(value, 2)),
                    class_=text_css,
                    text_anchor="middle",
                )
            )
    return out


def _heatmap_labels(short, x_label, y_label, *, left, top, cell):
    """The column labels of :func:`heatmap` (slanted) and its two axis labels."""
    k = len(short)
    out = []
    for j in range(k):
        x = left + j * cell + cell / 2
        out.append(
            svg.text_at(
                x,
                top - 6,
                short[j],
                class_="tick",
                text_anchor="start",
                transform=f"rotate(-50 {svg.num(x)} {top - 6})",
            )
        )
    out.append(svg.text_at(left + cell * k / 2, 12, f"{x_label} →", class_="axis-label", text_anchor="middle"))
    mid = top + cell * k / 2
    out.append(
        svg.text_at(
            12,
            mid,
            f"{y_label} →",
            class_="axis-label",
            text_anchor="middle",
            transform=f"rotate(-90 12 {svg.num(mid)})",
        )
    )
    return out


def stack_bar(segments, *, label):
    """A one-line progress bar of ``[(name, value, css)]`` stacked left to right."""
    total = sum(value for _, value, _ in segments)
    out, x = [], 0.0
    for name, value, css in segments:
        if value <= 0 or total <= 0:
            continue
        w = 100 * value / total
        out.append(
            svg.el(
                "rect",
                svg.tooltip(f"{name}: {fmt_number(value)} ({fmt_number(value / total, True)})"),
                x=x,
                y=0,
                width=w,
                height=10,
                class_=f"bar {css}",
            )
        )
        x += w
    if not out:
        out.append(svg.el("rect", svg.tooltip("no items"), x=0, y=0, width=100, height=10, class_="bar src-none"))
    return mark_safe(
        f'<svg class="stackbar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">{"".join(out)}</svg>'
    )


def scatter_map(points, *, title, legend, width=960, height=600):
    """A 2-D map of items: ``points`` ``[{"x", "y", "css", "shape", "href", "title"}]``.

    Each point links to its item. Coordinates are scaled to fit; the axes of a 2-D
    projection carry no unit, so only a frame is drawn.
    """
    if not points:
        return svg.empty(width, 120, title, "no map yet: run clustering first")
    pad = 14
    legend_svg, legend_y = svg.legend(legend, pad, 16, width - 2 * pad) if legend else ("", 6)
    top = legend_y + 18
    height += top - 40
    xs = [p["x"] for p in points]
    ys = [p["y"] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    sx = (width - 2 * pad) / ((x1 - x0) or 1)
    sy = (height - top - pad) / ((y1 - y0) or 1)
    out = [svg.el("rect", x=pad / 2, y=top - pad / 2, width=width - pad, height=height - top, class_="frame")]
    for p in points:
        x = pad + (p["x"] - x0) * sx
        y = height - pad - (p["y"] - y0) * sy
        out.append(
            svg.el(
                "a",
                svg.marker(x, y, p["css"], p["shape"], title=p["title"]),
                href=p["href"],
                class_="point",
                aria_label=p["title"],
            )
        )
    out.append(legend_svg)
    return svg.document(
        width, height, title, "".join(out), css="chart map" + ("" if legend else " scales"), role="group"
    )


def responsive(draw, **kwargs):
    """A chart drawn twice, for a wide screen and for a phone (CSS shows one), so that its
    text keeps its size instead of shrinking with the picture."""
    wide = draw(**kwargs)
    narrow = draw(**kwargs, width=NARROW)
    return mark_safe(f'<div class="chart-box wide">{wide}</div><div class="chart-box narrow">{narrow}</div>')
