"""Quality rules: what pauses or bans a worker in a project, checked after the
answers that could break them."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Max

from labeling.models import (
    Answer,
    AnswerSource,
    Project,
    QualityRules,
    Skip,
    Worker,
    WorkerDecision,
    WorkerStatus,
)
from labeling.services import hot
from labeling.services.worker_status import fresh_start, worker_status_change, worker_status_in


def quality_rules_for(project: Project) -> QualityRules:
    """The project's rules, or the defaults (unsaved) when it has none."""
    return hot.project_rules(project)


def quality_rules_update(project: Project, **fields: Any) -> QualityRules:
    rules = quality_rules_for(project)
    for name, value in fields.items():
        setattr(rules, name, value)
    rules.full_clean()
    rules.save()
    return rules



def worker_rules_check(worker: Worker, project: Project, rules: QualityRules | None = None) -> str | None:
    """The first of the project's rules this worker breaks, as a sentence, or ``None``."""
    rules = rules or quality_rules_for(project)
    mine = Answer.objects.filter(worker=worker, item__project=project, source=AnswerSource.WORKER)
    skips = Skip.objects.filter(worker=worker, item__project=project)
    since = fresh_start(worker, project)
    if since is not None:
        mine, skips = mine.filter(created_at__gt=since), skips.filter(created_at__gt=since)
    window = rules.control_window
    recent = list(
        mine.filter(correct__isnull=False).order_by("-created_at", "-id").values_list("correct", flat=True)[:window]
    )
    if len(recent) >= max(rules.min_control_answers, 1):
        accuracy = sum(bool(c) for c in recent) / len(recent)
        if accuracy < rules.min_control_accuracy:
            return (
                f"accuracy {sum(bool(c) for c in recent)}/{len(recent)} ({accuracy:.0%}) on the last {len(recent)} control answers, "
                f"below {rules.min_control_accuracy:.0%}"
            )
    if rules.min_answer_ms:
        times = list(mine.exclude(time_taken_ms=None).order_by("-created_at", "-id").values_list(
            "time_taken_ms", flat=True)[:window])
        if len(times) >= window:
            fast = sum(1 for ms in times if ms is not None and ms < rules.min_answer_ms)
            if fast / len(times) > rules.max_fast_share:
                return (
                    f"{fast} of the last {len(times)} answers faster than {rules.min_answer_ms} ms "
                    f"(more than {rules.max_fast_share:.0%})"
                )
    if rules.max_skips_in_row:
        last_answer = mine.aggregate(at=Max("created_at"))["at"]
        in_row = (skips.filter(created_at__gt=last_answer) if last_answer else skips).count()
        if in_row >= rules.max_skips_in_row:
            return f"{in_row} skips in a row (limit {rules.max_skips_in_row})"
    return None


def worker_rules_apply(worker: Worker, project: Project, *, now: datetime | None = None) -> WorkerDecision | None:
    """Run the project's rules on a worker active there; pause or ban them in this
    project (per the rules) and log the decision when one is broken. Returns the
    decision or ``None``."""
    if worker_status_in(worker, project) != WorkerStatus.ACTIVE:
        return None
    rules = quality_rules_for(project)
    reason = worker_rules_check(worker, project, rules)
    if reason is None:
        return None
    return worker_status_change(worker, rules.action, reason=reason, project=project, automatic=True, now=now)

