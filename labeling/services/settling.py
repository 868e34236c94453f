"""From stored answers to consensus, off the answer's transaction.

The answer path marks each unknown item it counts (``Item.consensus_stale_since``, in
the same statement that bumps its answer count) and, after its commit, calls
:func:`consensus_due`. Then either:

- ``CROWDLOOP_CONSENSUS_DEFER_S = 0`` (one machine, the embedded default): the request
  recomputes those items' consensus at once, holding no lock of the answer;
- ``> 0`` (production): the first answer of a project in each interval queues one
  :func:`~labeling.tasks.consensus_settle_task` that many seconds later, which settles
  every item marked by then. The task is idempotent (it settles what is marked, and a
  marked item stays marked until its consensus includes the answers that marked it), so
  a lost or doubled task changes nothing that the next one does not fix.

The lag (how long the oldest marked item has waited) is what the dashboard shows.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Min

from labeling import clock
from labeling.models import Item
from labeling.services.outbox import task_send

logger = logging.getLogger(__name__)

SETTLE_BATCH = 2000


def _due_key(project_id: int) -> str:
    return f"crowdloop:consensus-due:{project_id}"


def _lag_key(project_id: int) -> str:
    return f"crowdloop:consensus-lag:{project_id}"


def consensus_due(project_id: int, item_ids: Sequence[int], *, n_answers: int | None = None) -> None:
    """New answers on ``item_ids`` were committed: settle them now, or make sure a
    settling task is queued (at most one per project per interval)."""
    from labeling.services.consensus import aggregate_maybe_schedule

    aggregate_maybe_schedule(project_id, n_answers if n_answers is not None else len(item_ids))
    delay = settings.CROWDLOOP_CONSENSUS_DEFER_S
    if delay <= 0:
        consensus_settle(project_id, item_ids)
        return
    if cache.add(_due_key(project_id), 1, timeout=max(int(delay), 1)):
        _enqueue(project_id, delay)


def _enqueue(project_id: int, delay: float) -> None:
    from labeling.tasks import consensus_settle_task

    try:
        task_send(consensus_settle_task, project_id, countdown=delay)
    except Exception:  # database gone: the items stay marked; the next answer or the schedule settles them
        cache.delete(_due_key(project_id))
        logger.warning("could not queue consensus for project %s; it stays due", project_id, exc_info=True)


def consensus_settle(project_id: int, item_ids: Iterable[int] | None = None, *, now: datetime | None = None) -> int:
    """Recompute the consensus of ``item_ids`` (default: every marked item of the
    project, oldest first, in batches). Marks are cleared before the recomputation, so
    an answer arriving during it marks its item again. Returns the items settled."""
    from labeling.services.consensus import items_consensus_update

    now = now or clock.now()
    marked = Item.objects.filter(project_id=project_id, consensus_stale_since__isnull=False)
    settled = 0
    while True:
        if item_ids is None:
            ids = list(marked.order_by("consensus_stale_since", "id").values_list("id", flat=True)[:SETTLE_BATCH])
        else:
            ids, item_ids = sorted(set(item_ids)), []
        if not ids:
            break
        oldest = marked.filter(pk__in=ids).aggregate(at=Min("consensus_stale_since"))["at"]
        items_consensus_update(ids, clear_stale=True)
        settled += len(ids)
        if oldest is not None:
            cache.set(_lag_key(project_id), (now - oldest).total_seconds(), timeout=3600)
        if len(ids) < SETTLE_BATCH:
            break
    return settled


def site_counted(site_id: int, *, issued: int = 0, passed: int = 0) -> None:
    """Count a challenge issued or passed on a site, after the commit. One machine: an
    increment at once. Production: a debounced recount from the challenges themselves
    (idempotent), so that the site row, shared by all its visitors, is off the hot path."""
    from django.db.models import F

    from labeling.models import Site

    delay = settings.CROWDLOOP_CONSENSUS_DEFER_S
    if delay <= 0:
        transaction.on_commit(
            lambda: Site.objects.filter(pk=site_id).update(
                challenges_issued=F("challenges_issued") + issued, challenges_passed=F("challenges_passed") + passed
            )
        )
        return
    if cache.add(f"crowdloop:site-count-due:{site_id}", 1, timeout=max(int(5 * delay), 1)):
        _enqueue_site_count(site_id, 5 * delay)


def site_counters_recount(site_id: int) -> int:
    """Set a site's counters from its challenges (the production path of :func:`site_counted`)."""
    from django.db.models import Count, Q

    from labeling.models import Challenge, ChallengeStatus, Site

    counts = Challenge.objects.filter(site_id=site_id).aggregate(
        issued=Count("pk"), passed=Count("pk", filter=Q(status=ChallengeStatus.PASSED))
    )
    return Site.objects.filter(pk=site_id).update(
        challenges_issued=counts["issued"], challenges_passed=counts["passed"]
    )


def _enqueue_site_count(site_id: int, delay: float) -> None:
    from labeling.tasks import site_counters_task

    try:
        task_send(site_counters_task, site_id, countdown=delay)
    except Exception:
        cache.delete(f"crowdloop:site-count-due:{site_id}")
        logger.warning("could not queue the counters of site %s", site_id, exc_info=True)


def consensus_lag(project_id: int, *, now: datetime | None = None) -> tuple[float, float | None]:
    """Seconds the oldest answer not yet in consensus has waited (0 when none), and the
    lag of the last settling, for the dashboard."""
    now = now or clock.now()
    oldest = Item.objects.filter(project_id=project_id, consensus_stale_since__isnull=False).aggregate(
        at=Min("consensus_stale_since")
    )["at"]
    waiting = (now - oldest).total_seconds() if oldest else 0.0
    return max(waiting, 0.0), cache.get(_lag_key(project_id))
