"""Consensus: from answers to one label per item with an honest confidence.

Two paths. The cheap path (:func:`items_consensus_update`) runs after every answer and
recomputes only the touched items' posteriors, with worker parameters fixed. The full
path (:func:`project_aggregate`) re-runs truth inference (EM) for the whole project on a
worker, periodically and after every ``CROWDLOOP_AGGREGATE_EVERY`` new answers; it is
idempotent (same answers, same result) and runs one at a time per project.

An item is *labeled* when its top posterior reaches the project's consensus threshold
with at least the minimum answers; it stays served while uncertain, up to the answer
cap, where it is flagged for review (dynamic overlap).
"""
from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.db.models import F

from labeling import bridge, clock
from labeling.models import (
    Answer,
    Consensus,
    Item,
    ItemStatus,
    KnownLabel,
    KnownLabelSource,
    LabelClass,
    PipelineKind,
    PipelineRun,
    Prediction,
    Project,
    PseudoLabel,
    Worker,
    WorkerKind,
    WorkerSkill,
)
from labeling.services import audit, runs
from labeling.services.outbox import task_send
from labeling.services.pipeline import (
    pipeline_run_fail,
    pipeline_run_finish,
    pipeline_run_latest,
    pipeline_run_progress,
    pipeline_run_start,
)

logger = logging.getLogger(__name__)

Skill: TypeAlias = "list[list[float]] | float"
"""A worker's skill in truth inference: a confusion matrix (K x K), or an accuracy."""
Belief: TypeAlias = tuple[int, float]
"""``(label_id, calibrated confidence)``: a model's belief about an item."""
Posteriors: TypeAlias = Mapping[int, tuple[list[float], int, int]]
"""``{item_id: (posterior, n_answers, n_votes)}``, as :func:`labeling.bridge.items_posteriors` gives it."""


def item_status_for(
    project: Project, *, confidence: float, n_answers: int, known: bool, current: str | None,
    n_votes: int | None = None, believed: bool = False,
) -> str:
    """Where an item stands after its answers. Labeled: known, or a posterior at the
    threshold with the minimum answers naming a label, or with one such answer when a
    model's belief about the item was part of the evidence (a human agreeing with a
    confident model settles it; a disagreement leaves it uncertain and asks again)."""
    if known:
        return ItemStatus.LABELED
    n_votes = n_answers if n_votes is None else n_votes
    needed = 1 if believed else project.answers_per_item
    if n_votes >= needed and confidence >= project.consensus_threshold:
        return ItemStatus.LABELED
    if n_answers >= project.max_answers_per_item:
        return ItemStatus.REVIEW
    if current == ItemStatus.PSEUDO_LABELED:
        return ItemStatus.PSEUDO_LABELED
    return ItemStatus.UNLABELED


# --- Cheap path -------------------------------------------------------------------------------


def _worker_skills(project: Project, worker_ids: Collection[int]) -> dict[int, Skill]:
    """Each worker's skill in ``project``: fitted by the last full truth inference, or
    else the control record smoothed towards a prior (cautious for widget visitors)."""
    skills: dict[int, Skill] = {
        worker: confusion or accuracy
        for worker, confusion, accuracy in WorkerSkill.objects.filter(
            project=project, worker_id__in=worker_ids
        ).values_list("worker_id", "confusion", "accuracy")
    }
    for worker, kind, correct, total in Worker.objects.filter(pk__in=set(worker_ids) - set(skills)).values_list(
        "pk", "kind", "control_correct", "control_total"
    ):
        prior = bridge.VISITOR_ACCURACY if kind == WorkerKind.VISITOR else bridge.DEFAULT_ACCURACY
        skills[worker] = bridge.control_accuracy(correct, total, prior=prior)
    return skills


def items_consensus_update(
    item_ids: Iterable[int], method: str = "incremental", class_priors: Sequence[float] | None = None, *,
    clear_stale: bool = False,
) -> None:
    """Recompute the consensus of ``item_ids`` from their answers (the cheap path), with
    the class priors of the last full run unless ``class_priors`` are given.

    The items are locked (in id order, the order of every writer of item rows) for the
    recomputation, so that two of them for the same item run one after the other and
    the later one reads every answer committed before it: the last write is never an
    older view of the answers. With ``clear_stale`` the items' marks of answers not yet
    in consensus are cleared under the same locks, before the answers are read."""
    with transaction.atomic():
        _items_consensus_update(sorted(set(item_ids)), method, class_priors, clear_stale)


def _items_consensus_update(
    item_ids: list[int], method: str, class_priors: Sequence[float] | None, clear_stale: bool
) -> None:
    items = list(
        Item.objects.select_for_update(no_key=True, of=("self",))
        .filter(pk__in=item_ids)
        .select_related("project")
        .order_by("pk")
    )
    if clear_stale:
        Item.objects.filter(pk__in=item_ids, consensus_stale_since__isnull=False).update(consensus_stale_since=None)
    beliefs = _item_beliefs(set(item_ids))
    beliefs.update(_model_beliefs(set(item_ids)))
    by_project: dict[int, tuple[Project, list[Item]]] = {}
    for item in items:
        by_project.setdefault(item.project_id, (item.project, []))[1].append(item)
    for project, project_items in by_project.values():
        ids = [item.pk for item in project_items]
        workers = Answer.objects.filter(item_id__in=ids).values_list("worker_id", flat=True).distinct()
        priors = class_priors
        if priors is None:
            latest = pipeline_run_latest(project, PipelineKind.AGGREGATE)
            priors = (latest.state or {}).get("class_priors") if latest else None
        posteriors, label_ids = bridge.items_posteriors(
            project, ids, _worker_skills(project, list(workers)), priors, beliefs=beliefs
        )
        _consensus_save(project, label_ids, posteriors, method, project_items, believed=set(beliefs))


def _item_beliefs(item_ids: Collection[int]) -> dict[int, Belief]:
    """``{item_id: (label_id, confidence)}``: the semi-supervised round's calibrated
    belief about each item, a prior in truth inference. An accepted pseudo-label that a
    verify answer rejected is demoted (its item goes back to plain choice questions); the
    rejection itself stays in the evidence as a "no"."""
    rows = list(
        PseudoLabel.objects.filter(item_id__in=item_ids).values_list("item_id", "label_id", "confidence", "accepted")
    )
    accepted = {item_id: label_id for item_id, label_id, _, ok in rows if ok}
    rejected = set(
        Answer.objects.filter(item_id__in=list(accepted), verdict=False)
        .without_banned_workers()
        .values_list("item_id", "label_id")
    )
    demoted = [item_id for item_id, label_id in accepted.items() if (item_id, label_id) in rejected]
    if demoted:
        PseudoLabel.objects.filter(item_id__in=demoted).update(accepted=False)
        Item.objects.filter(pk__in=demoted, status=ItemStatus.PSEUDO_LABELED).update(status=ItemStatus.UNLABELED)
    return {item_id: (label_id, float(confidence)) for item_id, label_id, confidence, _ in rows}


def _model_beliefs(item_ids: Collection[int]) -> dict[int, Belief]:
    """``{item_id: (label_id, confidence)}`` from each project's active model: its
    calibrated probability of being right, learned on labels it did not train on."""
    return {
        item_id: (label_id, float(confidence))
        for item_id, label_id, confidence in Prediction.objects.filter(
            item_id__in=item_ids, run_id=F("item__project__active_run_id")
        ).values_list("item_id", "label_id", "confidence")
    }


FINISH_PRIORITY = 2.0
"""Priority base of a started item (an answer named a label, it is still uncertain; a
grid's "not this one" alone starts nothing): above every
uncovered cluster's representative (coverage scores lie in (1, 2]), since a started item
that is never finished gives no label at all. Among started items, those that one more
answer is likely to settle come first; the answer cap sends hopeless ones to review."""
TYPICAL_ACCURACY = 0.75


def _consensus_save(
    project: Project, label_ids: Sequence[int], posteriors: Posteriors, method: str,
    items: Iterable[Item] | None = None, believed: Collection[int] = frozenset(),
) -> None:
    """Upsert consensus rows, move item statuses and re-rank started items. ``posteriors``
    maps item id to ``(posterior, n_answers, n_votes)``."""
    ids = list(posteriors)
    if items is None:
        items = Item.objects.filter(pk__in=ids).only("id", "status", "project_id", "priority")
    current = {item.pk: item.status for item in items}
    known = set(KnownLabel.objects.filter(item_id__in=ids).values_list("item_id", flat=True))
    existing = set(Consensus.objects.filter(item_id__in=ids).values_list("item_id", flat=True))
    held = audit.held_items(ids)
    outcome = _consensus_outcome(project, label_ids, posteriors, method, current, known, held, believed)
    _consensus_write(outcome, existing, held)
    newly_labeled = len(outcome.moves.get(ItemStatus.LABELED, []))
    if newly_labeled:
        from labeling.services.loop import labels_arrived

        project_id = project.pk
        transaction.on_commit(lambda: labels_arrived(project_id, newly_labeled))


@dataclass
class _Outcome:
    """What new posteriors come to: the consensus rows, the items moving to each status,
    and the priority of each started item."""

    rows: list[Consensus] = field(default_factory=list)
    moves: dict[str, list[int]] = field(default_factory=dict)
    finish: dict[int, float] = field(default_factory=dict)


def _consensus_outcome(
    project: Project, label_ids: Sequence[int], posteriors: Posteriors, method: str, current: Mapping[int, str],
    known: Collection[int], held: Mapping[int, dict[int, int]], believed: Collection[int],
) -> _Outcome:
    """Each item's consensus row and status (``current``: its status now; ``known``: items
    with a known label; ``held``: :func:`~labeling.services.audit.held_items`)."""
    outcome = _Outcome()
    for item_id, (posterior, n_answers, n_votes) in posteriors.items():
        top = max(range(len(posterior)), key=posterior.__getitem__)
        confidence = min(max(float(posterior[top]), 0.0), 1.0)
        label_id = label_ids[top] if n_votes or item_id in known else None
        outcome.rows.append(
            Consensus(
                item_id=item_id, label_id=label_id, confidence=confidence,
                posterior=[round(float(p), 6) for p in posterior], n_answers=n_answers, method=method,
            )
        )
        status = item_status_for(
            project, confidence=confidence, n_answers=n_answers, known=item_id in known,
            current=current.get(item_id), n_votes=n_votes, believed=item_id in believed,
        )
        status = audit.status_held(project, status, label_id, n_answers, held.get(item_id))
        if status != current.get(item_id):
            outcome.moves.setdefault(status, []).append(item_id)
        if status in (ItemStatus.UNLABELED, ItemStatus.PSEUDO_LABELED) and n_votes:
            outcome.finish[item_id] = FINISH_PRIORITY + bridge.settle_chance(
                posterior, TYPICAL_ACCURACY, project.consensus_threshold
            )
    return outcome


def _consensus_write(outcome: _Outcome, existing: Collection[int], held: Mapping[int, dict[int, int]]) -> None:
    """Write ``outcome`` in one transaction (``existing``: items with a consensus row
    already), and settle the audit's decisions on the ``held`` items it moved."""
    fields = ["label_id", "confidence", "posterior", "n_answers", "method", "updated_at"]
    now = clock.now()
    rows = outcome.rows
    for row in rows:
        row.updated_at = now
    with transaction.atomic():
        Consensus.objects.bulk_update([r for r in rows if r.item_id in existing], fields, batch_size=1000)
        Consensus.objects.bulk_create([r for r in rows if r.item_id not in existing], batch_size=1000)
        for status, moved in sorted(outcome.moves.items()):
            Item.objects.filter(pk__in=sorted(moved)).update(status=status)
        Item.objects.bulk_update(
            [
                Item(
                    pk=item_id, priority=round(score, 6),
                    priority_reason=f"started: one more answer settles it with p={score - FINISH_PRIORITY:.2f}",
                )
                for item_id, score in sorted(outcome.finish.items())
            ],
            ["priority", "priority_reason"],
            batch_size=1000,
        )
        if held:
            label_of = {row.item_id: row.label_id for row in rows}
            audit.decisions_settle(
                {i: (s, label_of[i]) for s, moved in outcome.moves.items() for i in moved if i in held}
            )


# --- Full path --------------------------------------------------------------------------------


def aggregate_maybe_schedule(project_id: int, n_new: int) -> bool:
    """Count new answers; every ``CROWDLOOP_AGGREGATE_EVERY`` of them, queue a full run."""
    key = f"crowdloop:answers-since-aggregate:{project_id}"
    every = settings.CROWDLOOP_AGGREGATE_EVERY
    cache.add(key, 0, timeout=None)
    try:
        count = cache.incr(key, n_new)
    except ValueError:
        cache.set(key, n_new, timeout=None)
        count = n_new
    if count >= every:
        cache.set(key, 0, timeout=None)
        from labeling.tasks import cpu_project_aggregate_task

        task_send(cpu_project_aggregate_task, project_id)
        return True
    return False


def project_aggregate(project: Project) -> PipelineRun | None:
    """Re-run truth inference for ``project``; returns the run, or ``None`` when another
    run is in progress. Same answers give the same consensus rows."""
    run = pipeline_run_start(project, PipelineKind.AGGREGATE)
    if run is None:
        return None
    try:
        with runs.run_heartbeating(run):
            pipeline_run_progress(run, 0.05, "loading answers")
            fit = bridge.aggregate_fit(project, project.aggregation_method)
            pipeline_run_progress(run, 0.6, f"{fit.method} converged in {fit.n_iter} iterations; saving")
            _worker_skills_save(project, fit)
            # Worker parameters from EM; each item's posterior from all its evidence (yes/no
            # answers, the model's belief), the same way the cheap path computes it.
            answered = list(Answer.objects.filter(item__project=project).values_list("item_id", flat=True).distinct())
            known_ids = list(KnownLabel.objects.filter(item__project=project).values_list("item_id", flat=True))
            item_ids = sorted(set(answered) | set(known_ids))
            for start in range(0, len(item_ids), 2000):
                items_consensus_update(item_ids[start : start + 2000], method=fit.method, class_priors=fit.class_priors)
            n_labeled = Item.objects.filter(project=project, status=ItemStatus.LABELED).count()
            return pipeline_run_finish(
                run,
                result={
                    "method": fit.method, "n_iter": fit.n_iter, "items": len(fit.item_ids),
                    "workers": len(fit.worker_ids), "labeled": n_labeled,
                },
                state={"class_priors": fit.class_priors},
            )
    except runs.RunLost:
        return None
    except Exception as exc:
        pipeline_run_fail(run, f"{type(exc).__name__}: {exc}")
        raise


def _worker_skills_save(project: Project, fit: bridge.AggregateFit) -> None:
    existing = dict(WorkerSkill.objects.filter(project=project).values_list("worker_id", "id"))
    rows = [
        WorkerSkill(
            id=existing.get(worker_id), worker_id=worker_id, project=project,
            accuracy=min(max(fit.skills[i], 0.0), 1.0),
            confusion=[[round(v, 6) for v in row] for row in fit.confusions[i]],
            n_answers=fit.worker_answers[i],
        )
        for i, worker_id in enumerate(fit.worker_ids)
    ]
    with transaction.atomic():
        WorkerSkill.objects.bulk_update([r for r in rows if r.id], ["accuracy", "confusion", "n_answers"], batch_size=500)
        WorkerSkill.objects.bulk_create([r for r in rows if not r.id], batch_size=500)
        for row in rows:
            Worker.objects.filter(pk=row.worker_id).update(skill=row.accuracy)


def item_label_known(
    item: Item, label: LabelClass, *, source: str = KnownLabelSource.SETTLED, user: User | None = None
) -> None:
    """Make ``label`` the item's known label by hand, clamped in truth inference from now
    on: ``SETTLED`` decides the item, ``GOLD`` also makes it a control item."""
    with transaction.atomic():
        KnownLabel.objects.update_or_create(item=item, defaults={"label": label, "source": source, "created_by": user})
    items_consensus_update([item.pk])


def project_aggregate_enqueue(project_id: int) -> None:
    """Queue a full truth-inference run of the project, through the outbox (sent once
    the transaction commits)."""
    from labeling.tasks import cpu_project_aggregate_task

    task_send(cpu_project_aggregate_task, project_id)


def projects_aggregate_all() -> None:
    """For the periodic schedule: queue a full run for every project with answers."""
    for project_id in Project.objects.filter(items__answers__isnull=False).values_list("pk", flat=True).distinct():
        project_aggregate_enqueue(project_id)
