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
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from labeling.models import Answer, Consensus, Item, ItemStatus, KnownLabel, Lease, Skip, Split
from labeling.services import control_pool

SERVABLE = (ItemStatus.UNLABELED, ItemStatus.PSEUDO_LABELED)
WINDOW = 64


def _now():
    return timezone.now()


# --- Strategies: the order in which unknown items are served --------------------------------


@dataclass(frozen=True)
class Strategy:
    """An order over servable items, as ``order_by`` fields. Each status is read on its
    own, so that the database walks an index (``status IN (...)`` would sort every
    servable item per request), and the per-status streams are merged by :meth:`key`."""

    name: str
    order: tuple
    description: str

    def key(self, item):
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


def strategy_get(name):
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown selection strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}") from None


def _servable(project, status):
    """Pool items of one servable status. Items at the answer cap leave these statuses
    (review or labeled); :func:`_with_room` checks the cap again in Python, so that the
    query needs only equality filters and walks the strategy's index in order."""
    return Item.objects.filter(project=project, status=status, split=Split.POOL)


def _window(project, strategy, offset, size, fields):
    """Rows ``offset`` to ``offset + size`` of the servable items in ``strategy`` order."""
    rows = []
    for status in SERVABLE:
        rows += _servable(project, status).order_by(*strategy.order).only(*fields)[: offset + size]
    rows.sort(key=strategy.key)
    return rows[offset : offset + size]


def items_queue(project, n):
    """The next ``n`` servable items in the project's order, for anyone (no leases, no
    worker): what the dashboard shows as "served next"."""
    window = _window(project, strategy_get(project.selection_strategy), 0, n, ("id", "answer_count", "priority"))
    return [item.pk for item in window]


# --- Picking ----------------------------------------------------------------------------------


def unknown_items_pick(project, *, worker, n, exclude_ids=(), now=None, for_update=False):
    """Up to ``n`` unknown items this worker has neither answered, skipped nor leased,
    whose open leases leave room for one more answer. Call inside a transaction when
    ``for_update`` is set: only the rows about to be picked are locked, with
    ``skip_locked`` (a concurrent picker takes the next ones instead of waiting, or of
    finding a whole window locked), and their room is checked again once locked."""
    now = now or _now()
    strategy = strategy_get(project.selection_strategy)
    lock = for_update and settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    fields = ("id", "answer_count", "status", "project_id", "priority")
    picked: list[tuple] = []
    seen, offset = set(exclude_ids), 0
    while len(picked) < n and offset < 50 * WINDOW:
        window = _window(project, strategy, offset, WINDOW, fields)
        if not window:
            break
        offset += WINDOW
        fresh = [item for item in window if item.pk not in seen]
        taken = _taken_or_known(worker, [item.pk for item in fresh])
        candidates = _with_room(project, [item for item in fresh if item.pk not in taken], now)
        start = 0
        while start < len(candidates) and len(picked) < n:
            chunk = candidates[start : start + n - len(picked)]
            start += len(chunk)
            if lock:
                rows = Item.objects.select_for_update(skip_locked=True, of=("self",)).only(*fields)
                locked = {item.pk: item for item in rows.filter(pk__in=[item.pk for item in chunk])}
                chunk = _with_room(project, [locked[item.pk] for item in chunk if item.pk in locked], now)
            for item in chunk:
                picked.append(item)
                seen.add(item.pk)
    return picked


def _with_room(project, items, now):
    """The servable ``items`` whose open leases leave room for one more answer: up to the
    minimum answers several at once, past it one at a time."""
    items = [i for i in items if i.status in SERVABLE and i.answer_count < project.max_answers_per_item]
    leased = dict(
        Lease.objects.filter(item_id__in=[item.pk for item in items], expires_at__gt=now)
        .values_list("item_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [i for i in items if leased.get(i.pk, 0) < max(project.answers_per_item - i.answer_count, 1)]


def _taken_or_known(worker, ids):
    """Items among ``ids`` that ``worker`` answered, skipped or was handed before, or
    whose label is known (normally already ``labeled``): one query."""
    if not ids:
        return set()
    known = KnownLabel.objects.filter(item_id__in=ids).order_by().values_list("item_id", flat=True)
    if worker is None:
        return set(known)
    answered = Answer.objects.filter(worker=worker, item_id__in=ids).order_by().values_list("item_id", flat=True)
    skipped = Skip.objects.filter(worker=worker, item_id__in=ids).order_by().values_list("item_id", flat=True)
    leased = Lease.objects.filter(worker=worker, item_id__in=ids).order_by().values_list("item_id", flat=True)
    return set(known.union(answered, skipped, leased, all=True))


def control_items_pick(project, *, worker, n, exclude_ids=(), rng=None, now=None):
    """Up to ``n`` control items (gold, or items whose consensus is certain) from the
    rotating pool of :mod:`~labeling.services.control_pool`: random, within their
    exposure budget, never one the worker was shown as control before. The caller
    counts the serve with :func:`~labeling.services.control_pool.exposures_record`."""
    pairs = control_pool.pool_pick(project, worker=worker, n=n, exclude_ids=exclude_ids, rng=rng, now=now)
    chosen = [item_id for item_id, _ in pairs[:n]]
    items = Item.objects.in_bulk(chosen)
    return [items[item_id] for item_id in chosen if item_id in items]


def control_label_of(items):
    """The known (gold) or certain-consensus label id of each control item."""
    ids = [item.pk for item in items]
    labels = dict(
        Consensus.objects.filter(item_id__in=ids, label__isnull=False).values_list("item_id", "label_id")
    )
    labels.update(KnownLabel.objects.filter(item_id__in=ids).values_list("item_id", "label_id"))
    return labels


# --- Leases -----------------------------------------------------------------------------------


def public_id_new():
    """An opaque id for an item in one challenge or lease: reveals nothing."""
    return secrets.token_urlsafe(12)


def leases_grant(*, worker, items, ttl_seconds, control_ids=(), now=None, confirm=True):
    """Lease ``items`` to ``worker`` and return the leases with their opaque public ids.

    Call inside the transaction that picked the items. A worker holds at most one lease
    per item, ever: an item they were handed once is not handed to them again. With
    ``confirm`` the leases are read back (those that a concurrent grant of the same item
    to the same worker did not win are left out); without, the new objects are returned
    as they were inserted (a challenge needs only their public ids).
    """
    now = now or _now()
    expires = now + timedelta(seconds=ttl_seconds)
    control_ids = set(control_ids)
    leases = [
        Lease(item=item, worker=worker, public_id=public_id_new(), is_control=item.pk in control_ids, expires_at=expires)
        for item in items
    ]
    Lease.objects.bulk_create(leases, ignore_conflicts=True)
    if not confirm:
        return leases
    return list(Lease.objects.filter(public_id__in=[lease.public_id for lease in leases]).select_related("item"))
