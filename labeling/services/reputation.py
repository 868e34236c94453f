"""Reputation: what the owners' pages show of a worker (control accuracy with its
interval, answer times, agreement with consensus, the fitted confusion matrix)."""
import math
from dataclasses import dataclass

from django.db.models import Count, F, Q

from labeling import bridge
from labeling.models import Answer, QualityRules, Skip, Worker, WorkerSkill
from labeling.services.rules import quality_rules_for
from labeling.services.worker_status import status_here

TIME_SAMPLE = 500  # answers used for the answer-time profile


def wilson_interval(correct, total, z=1.96):
    """Wilson score interval of a proportion (95 % by default); ``(0, 1)`` without data."""
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + z * z / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max((centre - spread) / denominator, 0.0), min((centre + spread) / denominator, 1.0)


@dataclass
class Reputation:
    answers: int
    skips: int
    controls: int
    controls_correct: int
    accuracy: float  # smoothed with a prior: 1/1 is not 100 %
    interval: tuple
    median_ms: int | None
    fast_share: float | None
    min_answer_ms: int
    agreement: float | None
    agreement_n: int
    skill: float | None = None
    confusion: list | None = None
    labels: list | None = None

    @property
    def confusion_rows(self):
        """``(true label, row)`` pairs of the confusion matrix, for display."""
        return list(zip(self.labels or [], self.confusion or []))


def worker_reputation(worker, project=None):
    """Accuracy on control items (smoothed, with a Wilson interval), answer-time profile,
    agreement with consensus and, once truth inference ran, the estimated confusion
    matrix; for one project or over all."""
    answers = Answer.objects.filter(worker=worker)
    skips = Skip.objects.filter(worker=worker)
    if project is not None:
        answers, skips = answers.filter(item__project=project), skips.filter(item__project=project)
    counts = answers.aggregate(
        total=Count("id"),
        controls=Count("id", filter=Q(correct__isnull=False)),
        correct=Count("id", filter=Q(correct=True)),
    )
    times = sorted(
        answers.exclude(time_taken_ms=None).order_by("-id").values_list("time_taken_ms", flat=True)[:TIME_SAMPLE]
    )
    min_ms = (quality_rules_for(project) if project is not None else QualityRules()).min_answer_ms
    agree = (
        answers.exclude(verdict=False)
        .filter(item__consensus__label__isnull=False, item__consensus__n_answers__gte=2)
        .aggregate(n=Count("id"), same=Count("id", filter=Q(label_id=F("item__consensus__label_id"))))
    )
    reputation = Reputation(
        answers=counts["total"],
        skips=skips.count(),
        controls=counts["controls"],
        controls_correct=counts["correct"],
        accuracy=bridge.smoothed_accuracy(counts["correct"], counts["controls"]),
        interval=wilson_interval(counts["correct"], counts["controls"]),
        median_ms=_median(times),
        fast_share=(sum(1 for ms in times if ms < min_ms) / len(times)) if times else None,
        min_answer_ms=min_ms,
        agreement=(agree["same"] / agree["n"]) if agree["n"] else None,
        agreement_n=agree["n"],
    )
    if project is not None:
        skill = WorkerSkill.objects.filter(worker=worker, project=project).first()
        if skill is not None:
            reputation.skill = skill.accuracy
            reputation.confusion = skill.confusion
            reputation.labels = [label.name for label in project.label_classes.all()]
    return reputation


def _median(values):
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else round((values[middle - 1] + values[middle]) / 2)


def project_workers(project, limit=50):
    """Workers who answered in ``project``, most active first, with their reputation and
    (as ``status_here``) their status there."""
    ids = (
        Answer.objects.filter(item__project=project)
        .values("worker_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("worker_id", flat=True)[:limit]
    )
    workers = Worker.objects.annotate(status_here=status_here(project)).in_bulk(list(ids))
    return [(workers[pk], worker_reputation(workers[pk], project)) for pk in ids if pk in workers]
