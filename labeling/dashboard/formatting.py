"""How the dashboard writes numbers and label colours; shared by its selectors, charts
and template tags."""

import math

PALETTE_SIZE = 10


def class_css(position):
    """The colour class of the label class at ``position``."""
    return f"c{int(position) % PALETTE_SIZE}"


def fmt_number(value, percent=False):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if percent:
        pct = round(100 * value, 0 if abs(value) >= 0.1 else 1)
        return f"{pct:.0f}%" if float(pct).is_integer() else f"{pct:.1f}%"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}"
