"""Assignment: the next items of a registered worker, each under a lease.

Items come from :mod:`~labeling.services.selection` (the same strategies and leases as
the widget) and control items from the rotating pool
(:mod:`~labeling.services.control_pool`). Callers never see an item id, a gold flag or
a label: only lease public ids.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Q

from labeling import bridge, clock
from labeling.bridge import wilson_interval
from labeling.models import Answer, Item, LabelClass, Lease, Prediction, Project, PseudoLabel, QualityRules, Worker
from labeling.services import control_pool, hot, selection
from labeling.services.accounts import worker_ensure_active
from labeling.services.rules import quality_rules_for

# Share of control items: raised for new or doubtful workers, lowered for trusted ones.
NEW_OR_DOUBTFUL_SHARE = 0.25
DOUBTFUL_BELOW = 0.75  # smoothed control accuracy
TRUSTED_MIN_CONTROLS = 30
TRUSTED_LOWER_BOUND = 0.8  # Wilson lower bound of control accuracy
MAX_CONTROL_SHARE = 0.5


def _now() -> datetime:
    return clock.now()


@dataclass
class Batch:
    leases: list[Lease]
    target: LabelClass | None = None  # the label of a "select all X" grid


def _control_record_key(worker_id: int, project_id: int) -> str:
    return f"crowdloop:control-record:{worker_id}:{project_id}"


def _control_counts(worker: Worker, project: Project) -> tuple[int, int]:
    """``(control answers, right ones)`` of ``worker`` in ``project``, kept in the cache
    for ``CROWDLOOP_HOT_CACHE_S`` at most and dropped by :func:`control_record_forget`
    when they answer a control item there."""
    key = _control_record_key(worker.pk, project.pk)
    hit = cache.get(key)
    if hit is not None:
        return hit
    counts = Answer.objects.filter(worker=worker, item__project=project, correct__isnull=False).aggregate(
        total=Count("id"), correct=Count("id", filter=Q(correct=True))
    )
    record = (counts["total"], counts["correct"])
    cache.set(key, record, timeout=settings.CROWDLOOP_HOT_CACHE_S)
    return record


def control_record_forget(worker_id: int, project_id: int) -> None:
    """Drop the cached control record of a worker in a project (after a control answer
    or an undo)."""
    cache.delete(_control_record_key(worker_id, project_id))


def control_share_for(worker: Worker, project: Project, rules: QualityRules | None = None) -> float:
    """The share of control items in this worker's next items: higher while they are new
    or doubtful (so the rules can judge them soon), lower once they are trusted."""
    rules = rules or quality_rules_for(project)
    base = project.gold_share
    total, correct = _control_counts(worker, project)
    if total < rules.min_control_answers or bridge.control_accuracy(correct, total) < DOUBTFUL_BELOW:
        share = max(2 * base, NEW_OR_DOUBTFUL_SHARE)
    elif total >= TRUSTED_MIN_CONTROLS and wilson_interval(correct, total)[0] >= TRUSTED_LOWER_BOUND:
        share = base / 2
    else:
        share = base
    return min(share, MAX_CONTROL_SHARE)


def tasks_next(
    *, worker: Worker, project: Project, n: int, exclude: Iterable[str] = (), grid: bool = False,
    status: str | None = None, now: datetime | None = None, rng: random.Random | None = None,
) -> Batch:
    """Up to ``n`` items for ``worker``, each under a lease.

    First the worker's still-open leases in this project that the client does not hold
    (``exclude``: lease public ids it already has), so a reloaded page gets its items
    back; then new ones: control items at :func:`control_share_for`, randomly placed,
    and unknown items in the order of the project's selection strategy. Unknown items
    are picked with their rows locked and leased in the same transaction. No controls
    are handed out when no unknown item is left. With ``grid`` the batch carries the
    target label of a "select all X" grid. ``status``: the worker's status in the
    project, when the caller read it (:func:`~labeling.services.accounts.project_admit`).
    """
    now = now or _now()
    rng = rng or random.SystemRandom()
    worker_ensure_active(worker, project, status=status)
    held = list(
        Lease.objects.filter(worker=worker, item__project=project, expires_at__gt=now)
        .exclude(public_id__in=list(exclude))
        .select_related("item")
        .order_by("id")[:n]
    )
    fresh: list[Lease] = []
    need = n - len(held)
    if need > 0:
        share = control_share_for(worker, project)
        n_controls = min(need, int(need * share + rng.random()))
        with transaction.atomic():
            controls: list[Item] = []
            if n_controls:
                controls = selection.control_items_pick(
                    project, worker=worker, n=n_controls, rng=rng
                )
            # At least one unknown item is asked for, to know that some are left.
            unknown = selection.unknown_items_pick(
                project, worker=worker, n=max(need - len(controls), 1), exclude_ids={c.pk for c in controls},
                now=now, for_update=True,
            )
            items = controls + unknown[: need - len(controls)] if unknown else []
            rng.shuffle(items)
            leases = selection.leases_grant(
                worker=worker, items=items, ttl_seconds=settings.CROWDLOOP_LEASE_TTL_S,
                control_ids=[c.pk for c in controls], now=now,
            )
            control_pool.exposures_record(worker=worker, item_ids=[c.pk for c in controls if c in items], now=now)
        order = {item.pk: i for i, item in enumerate(items)}
        fresh = sorted(leases, key=lambda lease: order[lease.item_id])
    leases = held + fresh
    return Batch(leases=leases, target=_grid_target(project, leases, rng) if grid else None)


def _grid_target(project: Project, leases: list[Lease], rng: random.Random) -> LabelClass | None:
    """The label most of these items are expected to have (pseudo-labels, else the
    active model's predictions), else a random one."""
    labels = hot.project_labels(project)
    if not labels:
        return None
    ids = [lease.item_id for lease in leases]
    counts = Counter(PseudoLabel.objects.filter(item_id__in=ids).values_list("label_id", flat=True))
    if not counts and project.active_run_id:
        counts = Counter(
            Prediction.objects.filter(run_id=project.active_run_id, item_id__in=ids).values_list("label_id", flat=True)
        )
    if counts:
        best = counts.most_common(1)[0][0]
        return next(label for label in labels if label.pk == best)
    return rng.choice(labels)

