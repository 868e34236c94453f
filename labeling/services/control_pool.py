"""The rotating pool of control items and their exposure budgets.

Control items are gold or items whose consensus is certain (:func:`pool_refresh` keeps
a table of them per project, with each item's label); gold that the label audit
suspended stays out until the owner checks it. A pick reads a few rows from a
random point of a random order (an index walk, not every id in Python), skips items
whose budget is spent (``CROWDLOOP_CONTROL_SERVES_PER_WINDOW`` serves per
``CROWDLOOP_CONTROL_WINDOW_S``, ``CROWDLOOP_CONTROL_MAX_SERVES`` in all, after which the
item retires) and items the worker was shown before: nobody sees a control item twice.
:func:`exposures_record` counts a serve; the budget is checked at the pick and counted
at the serve, so concurrent picks may overshoot it by a few.

A control item shown under a prompt that names a label (a grid's target, a verify
question's proposed label) retires at once: such a prompt names the item's own label
half of the time (positives and negatives are drawn at random, so that a blind guess
is a coin flip), so anyone who saw it there knows its label far better than by chance
from then on (the prompt-inference bot of the attack suite read labels this way).
Choice questions name no label, so they may show an item up to its budget.

Retiring spends the pool far faster than choice questions do (a grid or a yes/no
question spends its control items whole), so prompts that retire are asked only while
the pool holds more than ``CROWDLOOP_CONTROL_RESERVE`` available items
(:func:`pool_holds_reserve`); below that the widget asks choice questions, which a
small pool sustains, until consensus grows the pool again.

Whoever memorises control items (by their pixels, or by what prompts they came with)
meets each one a few times at most before it retires, while consensus brings new ones.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, QuerySet, Value, When

from labeling import clock
from labeling.models import (
    ChallengeItem,
    Consensus,
    ControlExposure,
    ControlPoolEntry,
    ItemStatus,
    KnownLabel,
    Lease,
    Project,
    Worker,
)

READ_ROUNDS = 6
#: Seconds a process trusts its last count of the available pool against the reserve.
RESERVE_CHECK_S = 5.0


def _now() -> datetime:
    return clock.now()


def certain_consensus(project: Project) -> QuerySet[Consensus]:
    """Items settled by consensus with a high posterior and enough answers (not gold),
    that no widget prompt ever named a label for: an item asked about in a verify
    question ("is this a 7?", the label its pseudo-label proposed) or shown in a grid
    (whose target is half of the time the pseudo-label of one of its unknown tiles) has
    had its likely label printed next to it, and whoever saw that would know it as a
    control item."""
    named = ChallengeItem.objects.filter(
        challenge__project=project, challenge__target_label__isnull=False
    ).values("item_id")
    return Consensus.objects.filter(
        item__project=project,
        item__status=ItemStatus.LABELED,
        label__isnull=False,
        confidence__gte=max(project.consensus_threshold, 0.99),
        n_answers__gte=project.answers_per_item,
        item__known_label__isnull=True,
    ).exclude(item_id__in=named)


def pool_refresh(project: Project, *, rng: random.Random | None = None) -> tuple[int, int]:
    """Bring the pool table of ``project`` in line with its gold and certain consensus:
    new items join with a random key, items no longer certain leave, labels follow.
    Returns ``(joined, left)``."""
    rng = rng or random.SystemRandom()
    wanted = dict(
        KnownLabel.objects.filter(item__project=project, suspended_at__isnull=True).values_list("item_id", "label_id")
    )
    for item_id, label_id in certain_consensus(project).values_list("item_id", "label_id"):
        wanted.setdefault(item_id, label_id)
    with transaction.atomic():
        have = dict(ControlPoolEntry.objects.filter(project=project).values_list("item_id", "label_id"))
        gone = [item_id for item_id in have if item_id not in wanted]
        ControlPoolEntry.objects.filter(project=project, item_id__in=gone).delete()
        for item_id, label_id in sorted(wanted.items()):  # in item id order, as every writer of pool rows
            if item_id in have and have[item_id] != label_id:
                ControlPoolEntry.objects.filter(item_id=item_id).update(label_id=label_id)
        # In item id order: two refreshes inserting the same new items wait for each
        # other on the unique index, and in different orders they deadlocked.
        ControlPoolEntry.objects.bulk_create(
            [
                ControlPoolEntry(item_id=item_id, project=project, label_id=label_id, shuffle_key=rng.random())
                for item_id, label_id in sorted(wanted.items())
                if item_id not in have
            ],
            ignore_conflicts=True,
        )
    return len(wanted.keys() - have.keys()), len(gone)


_refreshed: dict[tuple[int, datetime], float] = {}  # (project id, created) -> monotonic time of this process's last refresh


def _refresh_if_stale(project: Project, rng: random.Random) -> None:
    """Refresh at most once per ``CROWDLOOP_CONTROL_POOL_REFRESH_S`` per project and process."""
    key, clock = (project.pk, project.created_at), time.monotonic()
    if clock - _refreshed.get(key, -math.inf) >= settings.CROWDLOOP_CONTROL_POOL_REFRESH_S:
        pool_refresh(project, rng=rng)
        _refreshed[key] = clock


_reserve_seen: dict[tuple[int, datetime], tuple[float, bool]] = {}  # (project id, created) -> (monotonic time, held)


def pool_holds_reserve(
    project: Project, *, now: datetime | None = None, rng: random.Random | None = None
) -> bool:
    """Whether more than ``CROWDLOOP_CONTROL_RESERVE`` control items of ``project`` are
    available: prompts that retire their controls are asked only then. The pool is
    refreshed first when stale (a pool never read yet is not an empty one); then one
    bounded count (it reads at most reserve + 1 rows), at most once per
    ``RESERVE_CHECK_S`` (or the pool's refresh interval, when shorter) per project and
    process: concurrent processes may each spend a few seconds of grids below the
    reserve, never the pool."""
    reserve = settings.CROWDLOOP_CONTROL_RESERVE
    if reserve <= 0:
        return True
    key, clock = (project.pk, project.created_at), time.monotonic()
    seen = _reserve_seen.get(key)
    if seen is None or clock - seen[0] >= min(settings.CROWDLOOP_CONTROL_POOL_REFRESH_S, RESERVE_CHECK_S):
        _refresh_if_stale(project, rng or random.SystemRandom())
        available = _available(project, now or _now()).order_by()
        held = available.values("pk")[: reserve + 1].count() > reserve
        seen = _reserve_seen[key] = (clock, held)
    return seen[1]


def _available(project: Project, now: datetime) -> QuerySet[ControlPoolEntry]:
    """Pool rows whose budget is not spent at ``now``."""
    window_over = Q(window_start__isnull=True) | Q(window_start__lte=now - _window())
    return ControlPoolEntry.objects.filter(
        Q(window_over) | Q(window_served__lt=settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW),
        project=project,
        served_total__lt=settings.CROWDLOOP_CONTROL_MAX_SERVES,
        retired_at__isnull=True,
    )


def _window() -> timedelta:
    return timedelta(seconds=settings.CROWDLOOP_CONTROL_WINDOW_S)


def pool_pick(
    project: Project, *, worker: Worker | None, n: int, exclude_ids: Iterable[int] = (),
    rng: random.Random | None = None, now: datetime | None = None, label_id: int | None = None,
    other_than: int | None = None,
) -> list[tuple[int, int]]:
    """Up to ``4 n + 8`` candidate ``(item_id, label_id)`` pairs for ``n`` control items,
    in random order: within budget, not in ``exclude_ids``, never shown to ``worker``;
    only of ``label_id``, or of any label but ``other_than``, when given."""
    if n <= 0:
        return []
    rng = rng or random.SystemRandom()
    now = now or _now()
    _refresh_if_stale(project, rng)
    want, excluded, found = 4 * n + 8, set(exclude_ids), []
    available = _available(project, now)
    if label_id is not None:
        available = available.filter(label_id=label_id)
    if other_than is not None:
        available = available.exclude(label_id=other_than)
    if worker is not None:
        # Never one shown to this worker before, as control or as an item to label
        # (every item handed to anyone is leased to them): in the same query.
        available = available.exclude(
            item_id__in=ControlExposure.objects.filter(worker=worker).values("item_id")
        ).exclude(item_id__in=Lease.objects.filter(worker=worker).values("item_id"))
    keyed = available.order_by("shuffle_key").values_list("item_id", "label_id", "shuffle_key")
    start = rng.random()
    for rows in _key_order_from(keyed, start, want):
        found += [(item_id, label_id) for item_id, label_id, _ in rows if item_id not in excluded]
        if len(found) >= want:
            break
    rng.shuffle(found)
    return found[:want]


def _key_order_from(
    rows: QuerySet[ControlPoolEntry, tuple[int, int, float]], start: float, size: int
) -> Iterator[list[tuple[int, int, float]]]:
    """Batches of ``size`` rows in key order from ``start``, wrapping around to the keys
    below it; at most ``READ_ROUNDS`` batches."""
    rounds = 0
    for low, high in ((start, None), (0.0, start)):
        last = None
        while rounds < READ_ROUNDS:
            rounds += 1
            query = rows.filter(shuffle_key__gt=last) if last is not None else rows.filter(shuffle_key__gte=low)
            if high is not None:
                query = query.filter(shuffle_key__lt=high)
            batch = list(query[:size])
            if batch:
                yield batch
            if len(batch) < size:
                break
            last = batch[-1][2]


def exposures_record(
    *, worker: Worker | None, item_ids: Iterable[int], now: datetime | None = None,
    rng: random.Random | None = None, retire: bool = False,
) -> None:
    """Count one serve of each control item in ``item_ids`` to ``worker``: against the
    item's budget (a new window starts when the last one is over) and as the worker's
    exposure. Each served item gets a new random key. With ``retire`` (the prompt named
    a label) this serve is the items' last."""
    now = now or _now()
    rng = rng or random.SystemRandom()
    item_ids = sorted(set(item_ids))  # one lock order: concurrent serves never deadlock
    if not item_ids:
        return
    window_over = Q(window_start__isnull=True) | Q(window_start__lte=now - _window())
    # Locked in id order first (an UPDATE alone locks in whatever order it finds rows).
    list(ControlPoolEntry.objects.select_for_update().filter(item_id__in=item_ids).order_by("item_id").values_list("pk"))
    ControlPoolEntry.objects.filter(item_id__in=item_ids).update(
        served_total=F("served_total") + 1,
        window_served=Case(When(window_over, then=Value(1)), default=F("window_served") + 1),
        window_start=Case(When(window_over, then=Value(now)), default=F("window_start")),
        shuffle_key=Case(*(When(item_id=item_id, then=Value(rng.random())) for item_id in item_ids)),
        **({"retired_at": now} if retire else {}),
    )
    if worker is not None:
        ControlExposure.objects.bulk_create(
            [ControlExposure(worker=worker, item_id=item_id, served_at=now) for item_id in item_ids],
            ignore_conflicts=True,
        )
