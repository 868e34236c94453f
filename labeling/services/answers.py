"""Recording answers: the one write path shared by the widget and the worker UI.

An answer is stored once per (worker, item, task): a retried submission with the same
task reference (a challenge id, or the worker UI's client-generated key) stores
nothing new. Counters move only for answers actually created, and the consensus of the
touched items is updated at once (the cheap path).
"""
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from labeling.models import Answer, Item, Worker
from labeling.services.consensus import aggregate_maybe_schedule, items_consensus_update


@dataclass
class AnswerInput:
    item: Item
    label_id: int
    task_ref: str
    verdict: bool | None = None
    is_control: bool = False
    correct: bool | None = None
    time_taken_ms: int | None = None


def answers_record(*, worker, inputs, source, now=None):
    """Store ``inputs`` for ``worker``; returns ``(created, existing)`` answer lists.

    Call with nothing locked; each answer is its own savepoint so that a duplicate
    (a retry) is detected by the database constraint, not by a racy read.
    """
    now = now or timezone.now()
    created, existing = [], []
    with transaction.atomic():
        for answer in inputs:
            row = Answer(
                worker=worker,
                item=answer.item,
                label_id=answer.label_id,
                source=source,
                task_ref=answer.task_ref,
                verdict=answer.verdict,
                is_control=answer.is_control,
                correct=answer.correct,
                time_taken_ms=answer.time_taken_ms,
            )
            try:
                with transaction.atomic():
                    row.save()
            except IntegrityError:
                existing.append(
                    Answer.objects.get(worker=worker, item=answer.item, task_ref=answer.task_ref)
                )
                continue
            created.append(row)
        if created:
            _counters_bump(worker, created, now)
    if created:
        items_consensus_update([row.item_id for row in created])
        aggregate_maybe_schedule(created[0].item.project_id, len(created))
    return created, existing


def _counters_bump(worker, created, now):
    by_item = {}
    for row in created:
        by_item[row.item_id] = by_item.get(row.item_id, 0) + 1
    for item_id, n in by_item.items():
        Item.objects.filter(pk=item_id).update(answer_count=F("answer_count") + n)
    controls = [row for row in created if row.correct is not None]
    Worker.objects.filter(pk=worker.pk).update(
        answer_total=F("answer_total") + len(created),
        control_total=F("control_total") + len(controls),
        control_correct=F("control_correct") + sum(1 for row in controls if row.correct),
        last_seen_at=now,
    )
