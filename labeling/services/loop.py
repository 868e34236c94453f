"""The loop's rhythm: what starts the next semi-supervised round and the next model.

Nobody has to press a button. An import queues the project's first round at once (cold
start: features, clusters and representatives before any answer), so the first unknown
items anyone is served are representatives of uncovered clusters. New human labels
queue the next round once they add a share of what the last round had
(``CROWDLOOP_ROUND_GROWTH``, at least ``CROWDLOOP_PIPELINE_EVERY_LABELS``); each round
that finishes starts a training run on the same rule (``CROWDLOOP_TRAIN_GROWTH``, at
least ``CROWDLOOP_TRAIN_EVERY_LABELS``). Rounds and models thus follow the labels
geometrically: many early, while each label changes a lot, few later.

Counting is done in the cache after commit, off the answer's transaction; a lost count
only delays a round until the next labels, or the periodic schedule, start it.
"""
import logging

from django.conf import settings
from django.core.cache import cache

from labeling.models import Project, TrainingRun
from labeling.services.outbox import task_send

logger = logging.getLogger(__name__)


def _key(project_id: int) -> str:
    return f"crowdloop:labels-since-round:{project_id}"


def _round_key(project_id: int) -> str:
    return f"crowdloop:labels-at-round:{project_id}"


def labels_due(labels_then: float, *, growth: float, minimum: float) -> int:
    """How many new labels the next round (or model) waits for after ``labels_then``."""
    return max(int(minimum), int(growth * labels_then))


def labels_arrived(project_id: int, n: int) -> bool:
    """Count ``n`` new human labels of a project; queue a round once enough arrived.
    Returns whether a round was queued."""
    cache.add(_key(project_id), 0, timeout=None)
    try:
        count = cache.incr(_key(project_id), n)
    except ValueError:
        cache.set(_key(project_id), n, timeout=None)
        count = n
    due = labels_due(
        cache.get(_round_key(project_id), 0),
        growth=settings.CROWDLOOP_ROUND_GROWTH,
        minimum=settings.CROWDLOOP_PIPELINE_EVERY_LABELS,
    )
    if count < due:
        return False
    from labeling.tasks import cpu_semisupervised_task

    try:
        task_send(cpu_semisupervised_task, project_id)
    except Exception:  # database gone: the answer is stored; the next labels (or the schedule) try again
        logger.warning("could not queue a round for project %s; the next labels will try again", project_id, exc_info=True)
        return False
    cache.set(_key(project_id), 0, timeout=None)
    return True


def round_finished(project: Project, human_labels: int) -> TrainingRun | None:
    """Note the labels a finished round saw (the base of the next due count) and start
    a training run if enough labels arrived since the last one."""
    from labeling.services.training import training_maybe_start

    cache.set(_round_key(project.pk), human_labels, timeout=None)
    return training_maybe_start(project)


def import_finished(project: Project, *, new_holdout: bool = False) -> None:
    """After an import: the project's first (or next) round, at once; after new
    held-out items, also a model run, so that models are measured on them."""
    from labeling.services.semisupervised import pipeline_start
    from labeling.services.training import TrainingRefused, training_run_create

    pipeline_start(project)
    if new_holdout:
        try:
            training_run_create(project)
        except TrainingRefused:
            pass
