"""The dashboard's few writes: fresh counters, gold by hand, and thin wrappers that call
the owning service and then drop the project's cached aggregates.

Settling an item, training, clustering, worker decisions and rotating a site secret are
done by their own services (``consensus``, ``training``, ``semisupervised``,
``workers``, ``sites``); only what no service provides lives here.
"""

import logging
from datetime import timedelta

from django.core.cache import cache

from labeling import clock
from labeling.dashboard.aggregates import cache_keys
from labeling.dashboard.selectors import project_stats
from labeling.models import Split, WorkerStatus
from labeling.services.outbox import task_send

logger = logging.getLogger(__name__)

STATS_MAX_AGE = timedelta(seconds=60)


def stats_refresh_if_stale(projects, now=None):
    """Queue a recount of each project whose :class:`ProjectStats` is missing or older
    than :data:`STATS_MAX_AGE`; at most one queued per project per period.

    ``projects`` must come with ``stats`` selected. Returns the ids queued.
    """
    from labeling.tasks import project_stats_refresh_task

    now = now or clock.now()
    queued = []
    for project in projects:
        stats = project_stats(project)
        if stats is not None and now - stats.refreshed_at < STATS_MAX_AGE:
            continue
        if not cache.add(f"crowdloop:dashboard:stats-queued:{project.pk}", 1, int(STATS_MAX_AGE.total_seconds())):
            continue
        queued.append(project.pk)
    for project_id in queued:
        _enqueue(project_stats_refresh_task, project_id)
    return queued


def _enqueue(task, *args):
    try:
        task_send(task, *args)
    except Exception:  # a database hiccup must not break a page; the next view retries
        logger.warning("could not queue %s%r", task.name, args, exc_info=True)


def project_changed(project):
    """After a dashboard action: drop the cached aggregates and recount soon."""
    from labeling.tasks import project_stats_refresh_task

    cache.delete_many(cache_keys(project.pk))
    cache.delete(f"crowdloop:dashboard:stats-queued:{project.pk}")
    _enqueue(project_stats_refresh_task, project.pk)


def worker_status_set(worker, status, *, reason, user=None, project=None, everywhere=False):
    """Pause, ban or re-activate ``worker`` by hand in ``project``, or with
    ``everywhere`` on the whole platform (staff only), with the reason on record.

    The worker-status service does the work (it logs the :class:`WorkerDecision`, frees
    the worker's leases there and, after a ban or its lifting, recounts the answers and
    consensus of the items the worker answered there); here the project's cached
    aggregates are dropped. Returns the decision, or ``None`` when the worker already
    had that status.
    """
    from labeling.services.workers import worker_status_change

    if status not in WorkerStatus.values:
        raise ValueError(f"unknown worker status {status!r}")
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("give a reason")
    scope = None if everywhere else project
    if scope is None and not (user is not None and user.is_staff):
        raise PermissionError("only staff change a worker's status on the whole platform")
    decision = worker_status_change(worker, status, reason=reason[:2000], project=scope, automatic=False, by=user)
    if project is not None:
        project_changed(project)
    return decision


def worker_decision_undo(decision, *, user=None, project=None):
    """Reverse ``decision`` (automatic or not): the worker gets the previous status back.

    Raises :class:`labeling.services.workers.DecisionError` when it was already
    reversed or the worker's status has changed since.
    """
    from labeling.services.workers import worker_decision_reverse

    reversal = worker_decision_reverse(decision, by=user)
    if project is not None:
        project_changed(project)
    return reversal


def item_label_set(item, label, *, source, user=None):
    """Settle ``item`` as ``label`` (``source=SETTLED``) or make it a gold item
    (``GOLD``), through :func:`labeling.services.consensus.item_label_known`.

    Held-out items are refused: they measure models, and a label set by someone who
    looked at them would leak into the measurement.
    """
    from labeling.services.consensus import item_label_known

    if item.split != Split.POOL:
        raise ValueError("held-out items cannot be labeled here: they are for measuring models")
    if label.project_id != item.project_id:
        raise ValueError("that label belongs to another project")
    item_label_known(item, label, source=source, user=user)
    project_changed(item.project)


def training_request(project, *, config=None, user=None):
    """Refuse at once what cannot train (:func:`training_run_check`, reads only), else
    queue :func:`~labeling.tasks.training_request_task` after commit. Takes no lock."""
    from labeling.services.training import training_run_check
    from labeling.tasks import training_request_task

    training_run_check(project, config)
    user_id = user.pk if user is not None else None
    task_send(training_request_task, project.pk, config, user_id)
