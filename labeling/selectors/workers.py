"""Reads about registered workers: their reputation, for one project or over all.

A worker's reputation is control accuracy (smoothed, with a Wilson interval), an
answer-time profile, agreement with consensus and, once truth inference ran, the
estimated confusion matrix. Counts come from one annotated ``Worker`` query, whatever
the number of workers; answer times from one windowed ``Answer`` query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Count, F, IntegerField, OuterRef, QuerySet, Subquery, Window
from django.db.models.functions import Coalesce, RowNumber

from labeling import bridge
from labeling.models import Answer, QualityRules, Skip, Worker, WorkerSkill
from labeling.services.rules import quality_rules_for
from labeling.services.worker_status import status_here

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from labeling.models import Project

TIME_SAMPLE = 500  # latest answers used for each worker's answer-time profile

wilson_interval = bridge.wilson_interval


@dataclass
class Reputation:
    answers: int
    skips: int
    controls: int
    controls_correct: int
    accuracy: float  # smoothed with a prior: 1/1 is not 100 %
    interval: tuple[float, float]
    median_ms: int | None
    fast_share: float | None
    min_answer_ms: int
    agreement: float | None
    agreement_n: int
    skill: float | None = None
    confusion: list[list[float]] | None = None
    labels: list[str] | None = None

    @property
    def confusion_rows(self) -> list[tuple[str, list[float]]]:
        """``(true label, row)`` pairs of the confusion matrix, for display."""
        return list(zip(self.labels or [], self.confusion or []))


def _count(rows: QuerySet[Any]) -> Coalesce:
    """A per-worker count of ``rows`` (filtered on ``worker=OuterRef("pk")``) as a subquery."""
    per_worker = rows.order_by().values("worker_id").annotate(n=Count("id")).values("n")
    return Coalesce(Subquery(per_worker, output_field=IntegerField()), 0)


def reputation_counts(project: Project | None = None) -> dict[str, Coalesce]:
    """Annotations for a ``Worker`` queryset: the counts a :class:`Reputation` is made of,
    in ``project`` or (``None``) over all projects."""
    answers = Answer.objects.filter(worker=OuterRef("pk"))
    skips = Skip.objects.filter(worker=OuterRef("pk"))
    if project is not None:
        answers, skips = answers.filter(item__project=project), skips.filter(item__project=project)
    judged = answers.exclude(verdict=False).filter(
        item__consensus__label__isnull=False, item__consensus__n_answers__gte=2
    )
    return {
        "rep_answers": _count(answers),
        "rep_skips": _count(skips),
        "rep_controls": _count(answers.filter(correct__isnull=False)),
        "rep_correct": _count(answers.filter(correct=True)),
        "rep_agree_n": _count(judged),
        "rep_agree_same": _count(judged.filter(label_id=F("item__consensus__label_id"))),
    }


def _answer_times(worker_ids: Iterable[int], project: Project | None) -> dict[int, list[int]]:
    """Each worker's latest ``TIME_SAMPLE`` answer times, sorted, in one query."""
    rows = Answer.objects.filter(worker_id__in=list(worker_ids)).exclude(time_taken_ms=None)
    if project is not None:
        rows = rows.filter(item__project=project)
    latest = rows.annotate(
        recency=Window(RowNumber(), partition_by=[F("worker_id")], order_by=F("id").desc())
    ).filter(recency__lte=TIME_SAMPLE)
    times: dict[int, list[int]] = defaultdict(list)
    for worker_id, ms in latest.values_list("worker_id", "time_taken_ms"):
        if ms is not None:
            times[worker_id].append(ms)
    return {worker_id: sorted(values) for worker_id, values in times.items()}


def _median(values: list[int]) -> int | None:
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else round((values[middle - 1] + values[middle]) / 2)


def _reputations(workers: Sequence[Worker], project: Project | None) -> dict[int, Reputation]:
    """Reputations of ``workers`` (annotated with :func:`reputation_counts`), by id, in a
    fixed number of queries."""
    min_ms = (quality_rules_for(project) if project is not None else QualityRules()).min_answer_ms
    times = _answer_times([worker.pk for worker in workers], project)
    skills: dict[int, WorkerSkill] = {}
    labels: list[str] = []
    if project is not None and workers:
        skills = {
            skill.worker_id: skill
            for skill in WorkerSkill.objects.filter(project=project, worker__in=[worker.pk for worker in workers])
        }
        if skills:
            labels = [label.name for label in project.label_classes.all()]
    out = {}
    for worker in workers:
        mine = times.get(worker.pk, [])
        a: Any = worker  # the rep_* annotations
        reputation = Reputation(
            answers=a.rep_answers,
            skips=a.rep_skips,
            controls=a.rep_controls,
            controls_correct=a.rep_correct,
            accuracy=bridge.control_accuracy(a.rep_correct, a.rep_controls),
            interval=wilson_interval(a.rep_correct, a.rep_controls),
            median_ms=_median(mine),
            fast_share=(sum(1 for ms in mine if ms < min_ms) / len(mine)) if mine else None,
            min_answer_ms=min_ms,
            agreement=(a.rep_agree_same / a.rep_agree_n) if a.rep_agree_n else None,
            agreement_n=a.rep_agree_n,
        )
        skill = skills.get(worker.pk)
        if skill is not None:
            reputation.skill = skill.accuracy
            reputation.confusion = skill.confusion
            reputation.labels = labels
        out[worker.pk] = reputation
    return out


def worker_reputation(worker: Worker, project: Project | None = None) -> Reputation:
    """``worker``'s reputation in ``project``, or over all projects."""
    annotated = Worker.objects.annotate(**reputation_counts(project)).get(pk=worker.pk)
    return _reputations([annotated], project)[worker.pk]


def project_workers(project: Project, limit: int = 50) -> list[tuple[Worker, Reputation]]:
    """Workers who answered in ``project``, most active first, with their reputation and
    (as ``status_here``) their status there; the query count does not grow with them."""
    ids = list(
        Answer.objects.filter(item__project=project)
        .values("worker_id")
        .annotate(n=Count("id"))
        .order_by("-n", "worker_id")
        .values_list("worker_id", flat=True)[:limit]
    )
    workers = Worker.objects.annotate(status_here=status_here(project), **reputation_counts(project)).in_bulk(ids)
    found = [workers[pk] for pk in ids if pk in workers]
    reputations = _reputations(found, project)
    return [(worker, reputations[worker.pk]) for worker in found]

