"""Template filters every page uses, so a figure reads the same everywhere.

``num`` formats every count and ratio one way (``1,797``, ``0.85``), ``pct`` every share
(``85%``, as the charts), ``when``
shows a time relative to now with the absolute UTC time on hover, and ``manages_projects``
tells the navigation whether to offer the dashboard.
"""

import math
from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.timesince import timesince

from labeling import clock, selectors
from labeling.dashboard.formatting import fmt_number

register = template.Library()

DASH = "–"


@register.filter
def num(value, digits=None):
    """One way to write a number: thousands separated by commas, ``digits`` decimals for
    a ratio (``num:2``), a dash for ``None`` or NaN."""
    if value is None or value == "":
        return DASH
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    if math.isnan(number):
        return DASH
    if digits is None or digits == "":
        return f"{round(number):,}" if number.is_integer() or isinstance(value, int) else f"{number:,.2f}"
    return f"{number:,.{int(digits)}f}"


@register.filter
def pct(value):
    """A share in ``[0, 1]`` as a percentage (``0.853`` → ``85%``), as the charts write it."""
    if value is None or value == "":
        return DASH
    return fmt_number(float(value), percent=True)


def _as_datetime(value):
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return parse_datetime(value)
    return None


def relative(moment, now=None):
    """``3 minutes ago`` or ``in 2 hours``, to the largest unit."""
    now = now or clock.now()
    if moment <= now:
        span = timesince(moment, now, depth=1)
        return "just now" if span.startswith("0\xa0") else f"{span} ago"
    return f"in {timesince(now, moment, depth=1)}"


@register.filter
def when(value, empty=DASH):
    """A ``<time>`` element: relative text, the absolute UTC time on hover."""
    moment = _as_datetime(value)
    if moment is None:
        return empty
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, UTC)
    absolute = moment.astimezone(UTC)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        absolute.isoformat(timespec="seconds"),
        absolute.strftime("%Y-%m-%d %H:%M UTC"),
        relative(moment),
    )


@register.filter
def manages_projects(user):
    """Whether ``user`` owns a project or is staff: only they see the dashboard."""
    if not getattr(user, "is_authenticated", False):
        return False
    return user.is_staff or selectors.projects_managed_by(user).exists()
