"""The semi-supervised round: features, clusters, calibrated pseudo-labels, selection.

Runs on the ``cpu`` queue, one at a time per project (a :class:`PipelineRun` of kind
``cluster``), after every ``CROWDLOOP_PIPELINE_EVERY_LABELS`` new human labels and on a
schedule, and right after every import (cold start: before any label the round still
clusters and ranks representatives). Idempotent: the same labels and items give the
same rows.

1. Features of every item (normalised pixels, and the active model's penultimate layer
   once a model exists); the representation is chosen by measuring it on the human
   labels (kNN accuracy and cluster purity), not by assumption.
2. PCA, MiniBatchKMeans with many more clusters than classes, a 2-D map.
3. Label spreading from gold + consensus labels, calibrated on held-out human labels so
   that accepted pseudo-labels meet the project's precision target per class.
4. Selection scores for every servable item: uncovered clusters first (their most
   representative member), then uncertainty and model disagreement. The widget and the
   worker UI serve by these scores (``Item.priority``).

Accepted pseudo-labels put their item in ``pseudo_labeled``: it is then served as a
cheap ``verify`` challenge, whose confirmations count as human votes (through truth
inference) and whose rejections send the item back to ``choice``.

The arrays are :mod:`labeling.bridge.semisupervised`'s; this module runs the round,
decides what is saved and saves it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from django.db import transaction

from labeling import bridge
from labeling.models import (
    Item,
    ItemEmbedding,
    ItemStatus,
    KnownLabel,
    PipelineKind,
    PipelineRun,
    Project,
    PseudoLabel,
    PseudoLabelSource,
    Split,
)
from labeling.selectors import human_labels
from labeling.services import hot, runs
from labeling.services.audit import held_items
from labeling.services.outbox import task_send
from labeling.services.pipeline import (
    pipeline_run_fail,
    pipeline_run_finish,
    pipeline_run_progress,
    pipeline_run_start,
)

logger = logging.getLogger(__name__)


def pipeline_start(project: Project) -> None:
    """Queue a semi-supervised round on the ``cpu`` queue; returns at once."""
    from labeling.tasks import cpu_semisupervised_task

    task_send(cpu_semisupervised_task, project.pk)


def project_semisupervised(project: Project) -> PipelineRun | None:
    """Run one round for ``project``; returns the run or ``None`` if one is running."""
    run = pipeline_run_start(project, PipelineKind.CLUSTER)
    if run is None:
        return None
    try:
        with runs.run_heartbeating(run):
            return _round(project, run)
    except runs.RunLost:
        return None
    except Exception as exc:
        pipeline_run_fail(run, f"{type(exc).__name__}: {exc}")
        raise


def _round(project: Project, run: PipelineRun) -> PipelineRun:
    pipeline_run_progress(run, 0.05, "loading items")
    items = list(Item.objects.filter(project=project, split=Split.POOL).order_by("id").only("id", "image", "text", "status"))
    every_label = human_labels(project)
    human = {item.pk: every_label[item.pk] for item in items if item.pk in every_label}
    if not items or len(human) == len(items):
        reason = "every item has a human label" if items else "no items"
        return pipeline_run_finish(run, result={"skipped": reason, "human_labels": len(human)})
    cold = len(set(human.values())) < 2
    servable = [item.status in (ItemStatus.UNLABELED, ItemStatus.PSEUDO_LABELED) for item in items]
    fit = bridge.round_fit(
        project, items, human, servable, cold=cold, progress=lambda p, m: pipeline_run_progress(run, p, m)
    )
    if cold:
        with transaction.atomic():
            _map_save(items, fit)
        return pipeline_run_finish(
            run,
            result={"items": len(items), "human_labels": len(human), "clusters": fit.n_clusters,
                    "cold_start": True, "pseudo_labels": 0, "accepted": 0},
        )
    _save(items, fit)
    return pipeline_run_finish(
        run,
        result={
            "items": len(items),
            "human_labels": len(human),
            "representation": fit.representation,
            "representation_scores": fit.representation_scores,
            "clusters": fit.n_clusters,
            "pseudo_labels": len(items) - len(human),
            "accepted": fit.accepted,
            "calibration": fit.calibration,
        },
    )


def _save(items: Sequence[Item], fit: bridge.RoundFit) -> None:
    """Save a warm round: the map and priorities, and the spread labels of items without
    a label, accepted ones unless the label audit sent the item back to people."""
    ids = [item.pk for item in items]
    known = set(KnownLabel.objects.filter(item_id__in=ids).values_list("item_id", flat=True))
    labeled = {item.pk for item in items if item.status == ItemStatus.LABELED} | known
    held = held_items(ids)  # the label audit sent these back to people: no accepted pseudo-label
    pseudo = [
        PseudoLabel(
            item_id=spread.item_id, label_id=spread.label_id, confidence=spread.confidence,
            source=PseudoLabelSource.PROPAGATION, accepted=spread.accepted and spread.item_id not in held,
        )
        for spread in fit.spread
        if spread.item_id not in labeled
    ]
    accepted_ids = [p.item_id for p in pseudo if p.accepted]
    with transaction.atomic():
        _map_save(items, fit)
        PseudoLabel.objects.filter(item_id__in=ids).delete()
        PseudoLabel.objects.bulk_create(pseudo, batch_size=2000)
        Item.objects.filter(pk__in=accepted_ids, status=ItemStatus.UNLABELED).update(status=ItemStatus.PSEUDO_LABELED)
        Item.objects.filter(pk__in=ids, status=ItemStatus.PSEUDO_LABELED).exclude(pk__in=accepted_ids).update(
            status=ItemStatus.UNLABELED
        )
    if items:
        hot.pseudo_labels_changed(items[0].project_id)


def _map_save(items: Sequence[Item], fit: bridge.RoundFit) -> None:
    """Replace the items' clusters and 2-D map, and save the selection's priorities.
    Call inside the round's transaction."""
    ids = [item.pk for item in items]
    embeddings = [
        ItemEmbedding(
            item_id=item.pk, cluster=place.cluster, x=place.x, y=place.y, is_representative=place.representative
        )
        for item in items
        for place in (fit.places[item.pk],)
    ]
    priority = {item_id: (score, reason[:120]) for item_id, (score, reason) in fit.priority.items()}
    ItemEmbedding.objects.filter(item_id__in=ids).delete()
    ItemEmbedding.objects.bulk_create(embeddings, batch_size=2000)
    _priorities_save(ids, priority)


def _priorities_save(ids: Sequence[int], priority: Mapping[int, tuple[float, str]]) -> None:
    """Save the round's selection scores. A started item (answered, still servable) keeps
    the higher score that consensus gave it for finishing it (see
    ``consensus.FINISH_PRIORITY``)."""
    from labeling.services.consensus import FINISH_PRIORITY

    rows = Item.objects.filter(pk__in=ids).only("id", "priority", "priority_reason", "answer_count", "status")
    changed = []
    for item in rows:
        score, reason = priority.get(item.pk, (0.0, ""))
        started = item.answer_count > 0 and item.status in (ItemStatus.UNLABELED, ItemStatus.PSEUDO_LABELED)
        if started and item.priority >= FINISH_PRIORITY and item.priority > score:
            continue
        if item.priority != score or item.priority_reason != reason:
            item.priority, item.priority_reason = score, reason
            changed.append(item)
    Item.objects.bulk_update(changed, ["priority", "priority_reason"], batch_size=2000)
