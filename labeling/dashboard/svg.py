"""SVG building blocks of the dashboard's charts (:mod:`labeling.dashboard.charts`):
elements with escaped text and attributes, round ticks, axes, legends and markers."""

import math

from django.utils.html import escape
from django.utils.safestring import mark_safe

CHAR_W = 7.2  # average glyph width at the chart font size (12 px), for layout only
TICK_SPACING = 48  # the least room one x tick label needs, in px


def num(value):
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _attrs(attrs):
    parts = []
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(f'{name}="{escape(num(value) if isinstance(value, (int, float)) else value)}"')
    return " ".join(parts)


def el(tag, content="", **attrs):
    """An element; ``attrs`` are escaped, a trailing ``_`` dropped and ``_`` read as
    ``-`` (``class_`` -> ``class``); ``None`` or ``False`` leaves one out."""
    body = f"<{tag} {_attrs(attrs)}".rstrip()
    return f"{body}>{content}</{tag}>" if content else f"{body}/>"


def tooltip(text):
    """A ``<title>`` child: the tooltip (and accessible name) of its parent."""
    return f"<title>{escape(text)}</title>"


def text_at(x, y, text, **attrs):
    """A ``<text>`` at ``(x, y)``, escaped."""
    return el("text", escape(text), x=x, y=y, **attrs)


def truncate(text, n):
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def nice_ticks(low, high, count=5):
    """About ``count`` round tick values covering ``[low, high]``."""
    if high < low:
        low, high = high, low
    if high == low:
        high = low + 1
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks, value = [], start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def document(width, height, label, body, css="chart", role="img"):
    """One ``<svg>`` element around ``body``, titled and labelled ``label`` (safe to
    insert in a page). ``role="img"`` for a picture; a chart with links in it is a ``group`` (an image
    may hold nothing interactive)."""
    return mark_safe(
        f'<svg class="{escape(css)}" viewBox="0 0 {num(width)} {num(height)}" width="{num(width)}" '
        f'height="{num(height)}" role="{role}" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"{tooltip(label)}{body}</svg>"
    )


def legend(entries, x, y, width):
    """``entries``: ``[(name, css, shape)]`` laid out left to right, wrapping."""
    out, cx, cy = [], x, y
    for name, css, shape in entries:
        label = truncate(name, max(8, min(40, int((width - 20) / CHAR_W))))
        w = 18 + CHAR_W * len(label) + 14
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 16
        out.append(marker(cx + 5, cy - 4, css, shape or "box", legend=True))
        out.append(text_at(cx + 14, cy, label, class_="legend-text"))
        cx += w
    return "".join(out), cy


def marker(x, y, css, shape, legend=False, title=None):
    """A point (or legend key) at ``(x, y)``: ``line``, ``square``, ``ring``, ``small``,
    ``dot``, else a box; ``title`` is its tooltip."""
    inner = tooltip(title) if title else ""
    if shape == "line":
        return el("line", inner, x1=x - 5, y1=y, x2=x + 5, y2=y, class_=f"line {css}")
    if shape == "square":
        return el("rect", inner, x=x - 3.5, y=y - 3.5, width=7, height=7, class_=f"pt {css}")
    if shape == "ring":
        return el("circle", inner, cx=x, cy=y, r=4, class_=f"ring {css}")
    if shape == "small":
        return el("circle", inner, cx=x, cy=y, r=2.5, class_=f"pt faint {css}")
    if shape == "dot":
        return el("circle", inner, cx=x, cy=y, r=4, class_=f"pt {css}")
    return el("rect", inner, x=x - 5, y=y - 5, width=10, height=10, rx=2, class_=f"bar {css}")


class Axes:
    """A plot area with linear scales, grid, ticks and axis labels."""

    def __init__(self, width, height, x_domain, y_domain, *, left=58, right=18, top=34, bottom=48):
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.x0, self.x1 = x_domain
        self.y0, self.y1 = y_domain
        if self.x1 == self.x0:
            self.x1 = self.x0 + 1
        if self.y1 == self.y0:
            self.y1 = self.y0 + 1

    def px(self, x):
        return self.left + (x - self.x0) / (self.x1 - self.x0) * (self.width - self.left - self.right)

    def py(self, y):
        return self.height - self.bottom - (y - self.y0) / (self.y1 - self.y0) * (self.height - self.top - self.bottom)

    def frame(self, x_ticks, y_ticks, x_label, y_label, x_fmt, y_fmt):
        out = []
        for tick in y_ticks:
            y = self.py(tick)
            out.append(el("line", x1=self.left, x2=self.width - self.right, y1=y, y2=y, class_="grid"))
            out.append(text_at(self.left - 6, y + 4, y_fmt(tick), class_="tick", text_anchor="end"))
        for tick, label in x_ticks:
            x = self.px(tick)
            out.append(
                el("line", x1=x, x2=x, y1=self.height - self.bottom, y2=self.height - self.bottom + 4, class_="axis")
            )
            out.append(text_at(x, self.height - self.bottom + 17, label, class_="tick", text_anchor="middle"))
        base = self.height - self.bottom
        out.append(el("line", x1=self.left, x2=self.width - self.right, y1=base, y2=base, class_="axis"))
        out.append(el("line", x1=self.left, x2=self.left, y1=self.top, y2=base, class_="axis"))
        out.append(
            text_at(
                (self.left + self.width - self.right) / 2,
                self.height - 8,
                truncate(x_label, int((self.width - 10) / CHAR_W)),
                class_="axis-label",
                text_anchor="middle",
            )
        )
        mid = (self.top + base) / 2
        out.append(
            text_at(14, mid, y_label, class_="axis-label", text_anchor="middle", transform=f"rotate(-90 14 {num(mid)})")
        )
        return "".join(out)


def empty(width, height, label, message):
    return document(width, height, label, text_at(width / 2, height / 2, message, class_="empty", text_anchor="middle"))
