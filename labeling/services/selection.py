"""Which items a person sees next: one service for both front doors.

Unknown items come from a named strategy (like Django's password validators, chosen by
``Project.selection_strategy``); control items are gold or already certain consensus.
Items are handed out under a :class:`~labeling.models.Lease` with a TTL, so that two
people don't both take the last answer an item needs, and an abandoned lease returns
the item when it expires.

Dynamic overlap: an item is served while it is uncertain (status ``unlabeled`` or
``pseudo_labeled``) and below the project's answer cap. Up to the minimum answers it may
be out with several people at once; past it, with one at a time.
"""
from __future__ import annotations

import random
import secrets
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Greatest, Least

from labeling import clock
from labeling.models import Answer, Consensus, Item, ItemStatus, KnownLabel, Lease, Project, Skip, Split, Worker
from labeling.services import control_pool

SERVABLE = (ItemStatus.UNLABELED, ItemStatus.PSEUDO_LABELED)
WINDOW = 64


def _now() -> datetime:
    return clock.now()


# --- Strategies: the order in which unknown items are served --------------------------------


@dataclass(frozen=True)
class Strategy:
    """An order over servable items, as ``order_by`` fields. Each status is read on its
    own, so that the database walks an index (``status IN (...)`` would sort every
    servable item per request), and the per-status streams are merged by :meth:`key`."""

    name: str
    order: tuple[str, ...]
    description: str

    def key(self, item: Item) -> tuple[float, ...]:
        return tuple(-getattr(item, f[1:]) if f.startswith("-") else getattr(item, f) for f in self.order)


STRATEGIES = {
    strategy.name: strategy
    for strategy in (
        Strategy("least_answered", ("answer_count", "id"), "Items still needing answers, least answered first."),
        Strategy(
            "priority",
            ("-priority", "answer_count", "id"),
            "Highest selection score first (set by the semi-supervised pipeline: coverage, "
            "uncertainty, disagreement), then least answered.",
        ),
    )
}


def strategy_get(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown selection strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}") from None


def _servable(project: Project, status: str) -> QuerySet[Item]:
    """Pool items of one servable status. Items at the answer cap leave these statuses
    (review or labeled); :func:`_with_room` checks the cap again in Python, so that the
    query needs only equality filters and walks the strategy's index in order."""
    return Item.objects.filter(project=project, status=status, split=Split.POOL)


def _window(project: Project, strategy: Strategy, offset: int, size: int, fields: Sequence[str]) -> list[Item]:
    """Rows ``offset`` to ``offset + size`` of the servable items in ``strategy`` order."""
    rows: list[Item] = []
    for status in SERVABLE:
        rows += _servable(project, status).order_by(*strategy.order).only(*fields)[: offset + size]
    rows.sort(key=strategy.key)
    return rows[offset : offset + size]


def items_queue(project: Project, n: int) -> list[int]:
    """The next ``n`` servable items in the project's order, for anyone (no leases, no
    worker): what the dashboard shows as "served next"."""
    window = _window(project, strategy_get(project.selection_strategy), 0, n, ("id", "answer_count", "priority"))
    return [item.pk for item in window]


# --- Picking ----------------------------------------------------------------------------------


def unknown_items_pick(
    project: Project, *, worker: Worker | None, n: int, exclude_ids: Iterable[int] = (), now: datetime | None = None,
    for_update: bool = False, statuses: Sequence[str] = SERVABLE,
) -> list[Item]:
    """Up to ``n`` unknown items this worker has neither answered, skipped nor leased,
    whose open leases leave room for one more answer, in the strategy's order.

    One query per servable status (:func:`_candidates`), each walking the strategy's
    index with the exclusions as anti-joins, so the database stops after ``n`` rows.
    Call inside a transaction when ``for_update`` is set: on PostgreSQL the chosen rows
    are then locked with ``skip_locked`` (a concurrent picker takes the next ones
    instead of waiting) and their room is checked again once locked, in a statement
    that sees the leases the previous holder of the lock committed."""
    now = now or _now()
    strategy = strategy_get(project.selection_strategy)
    lock = for_update and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    picked: list[Item] = []
    seen = set(exclude_ids)
    for _ in range(8):
        want = n - len(picked)
        if want <= 0:
            break
        # With locks, read spares: rows a concurrent picker holds are skipped, not waited for.
        limit = 4 * want + 8 if lock else want
        rows: list[Item] = []
        for status in statuses:
            rows += _candidates(project, strategy, status, worker, seen, now, limit)
        rows = sorted(rows, key=strategy.key)[:limit]
        if not rows:
            break
        seen.update(item.pk for item in rows)
        if not lock:
            picked += rows
            break  # without locks, what the query chose is final
        start = 0
        while start < len(rows) and len(picked) < n:
            chunk = rows[start : start + n - len(picked)]
            start += len(chunk)
            locked = set(
                Item.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk__in=[item.pk for item in chunk])
                .values_list("pk", flat=True)
            )
            fresh = {item.pk for item in _with_room(project, [item for item in chunk if item.pk in locked], now)}
            picked += [item for item in chunk if item.pk in fresh]
    return picked


def _candidates(
    project: Project, strategy: Strategy, status: str, worker: Worker | None, exclude_ids: Collection[int],
    now: datetime, limit: int,
) -> list[Item]:
    """The first ``limit`` pool items of ``status`` in ``strategy`` order that are below
    the answer cap, not in ``exclude_ids``, without a known label, never answered,
    skipped or leased by ``worker``, and whose open leases leave room (up to the minimum
    answers several at once, past it one at a time): one query."""
    rows = _servable(project, status)
    if exclude_ids:
        rows = rows.exclude(pk__in=list(exclude_ids))
    rows = rows.filter(~Exists(KnownLabel.objects.filter(item_id=OuterRef("pk"))))
    if worker is not None:
        for model in (Answer, Skip, Lease):
            rows = rows.filter(~Exists(model.objects.filter(worker=worker, item_id=OuterRef("pk"))))
    open_leases = (
        Lease.objects.filter(item_id=OuterRef("pk"), expires_at__gt=now)
        .order_by().values("item_id").annotate(n=Count("id")).values("n")
    )
    # The cap is part of the room expression, not a range on ``answer_count``: a range
    # would make SQLite sort every servable item instead of walking the index in order.
    room = Least(
        Greatest(Value(project.answers_per_item) - F("answer_count"), Value(1)),
        Value(project.max_answers_per_item) - F("answer_count"),
    )
    rows = rows.annotate(open_leases=Coalesce(Subquery(open_leases), 0)).filter(open_leases__lt=room)
    return list(rows.order_by(*strategy.order)[:limit])


def _with_room(project: Project, items: list[Item], now: datetime) -> list[Item]:
    """The servable ``items`` whose open leases leave room for one more answer: up to the
    minimum answers several at once, past it one at a time."""
    items = [i for i in items if i.status in SERVABLE and i.answer_count < project.max_answers_per_item]
    if not items:
        return []
    leased = dict(
        Lease.objects.filter(item_id__in=[item.pk for item in items], expires_at__gt=now)
        .values_list("item_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [i for i in items if leased.get(i.pk, 0) < max(project.answers_per_item - i.answer_count, 1)]


def control_items_pick(
    project: Project, *, worker: Worker | None, n: int, exclude_ids: Iterable[int] = (),
    rng: random.Random | None = None, now: datetime | None = None,
) -> list[Item]:
    """Up to ``n`` control items (gold, or items whose consensus is certain) from the
    rotating pool of :mod:`~labeling.services.control_pool`: random, within their
    exposure budget, never one the worker was shown as control before. The caller
    counts the serve with :func:`~labeling.services.control_pool.exposures_record`."""
    pairs = control_pool.pool_pick(project, worker=worker, n=n, exclude_ids=exclude_ids, rng=rng, now=now)
    chosen = [item_id for item_id, _ in pairs[:n]]
    items = Item.objects.in_bulk(chosen)
    return [items[item_id] for item_id in chosen if item_id in items]


def control_label_of(items: Iterable[Item]) -> dict[int, int]:
    """The known (gold) or certain-consensus label id of each control item."""
    ids = [item.pk for item in items]
    labels = dict(
        Consensus.objects.filter(item_id__in=ids, label__isnull=False).values_list("item_id", "label_id")
    )
    labels.update(KnownLabel.objects.filter(item_id__in=ids).values_list("item_id", "label_id"))
    return labels


# --- Leases -----------------------------------------------------------------------------------


def public_id_new() -> str:
    """An opaque id for an item in one challenge or lease: reveals nothing."""
    return secrets.token_urlsafe(12)


def leases_grant(
    *, worker: Worker, items: Sequence[Item], ttl_seconds: float, control_ids: Iterable[int] = (),
    now: datetime | None = None,
) -> list[Lease]:
    """Lease ``items`` to ``worker`` and return the leases with their opaque public ids,
    each carrying its item.

    Call inside the transaction that picked the items. A worker holds at most one lease
    per item, ever: an item they were handed once is not handed to them again. One
    statement (``INSERT ... ON CONFLICT DO NOTHING RETURNING``): a lease that a
    concurrent grant of the same item to the same worker won is left out.
    """
    now = now or _now()
    if not items:
        return []
    expires = now + timedelta(seconds=ttl_seconds)
    control_ids = set(control_ids)
    leases = [
        Lease(item=item, worker=worker, public_id=public_id_new(), is_control=item.pk in control_ids, expires_at=expires,
              created_at=now)
        for item in items
    ]
    ops = connection.ops
    table = Lease._meta.db_table
    columns = ("item_id", "worker_id", "public_id", "is_control", "expires_at", "created_at")
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(leases))
    params: list[bool | int | str | None] = []
    for lease in leases:
        params += [
            lease.item_id, worker.pk, lease.public_id, lease.is_control,
            ops.adapt_datetimefield_value(expires), ops.adapt_datetimefield_value(now),
        ]
    sql = (
        f"INSERT INTO {ops.quote_name(table)} ({', '.join(ops.quote_name(c) for c in columns)}) VALUES {rows} "
        f"ON CONFLICT DO NOTHING RETURNING {ops.quote_name('id')}, {ops.quote_name('public_id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        won = dict((public_id, pk) for pk, public_id in cursor.fetchall())
    granted = []
    for lease in leases:
        if lease.public_id in won:
            lease.pk = won[lease.public_id]
            lease._state.adding, lease._state.db = False, "default"
            granted.append(lease)
    return granted
