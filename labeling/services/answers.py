"""Recording answers: the one narrow write shared by the widget and the worker UI.

:func:`answers_insert` runs inside the caller's transaction, after the caller has
checked the lease or claimed the challenge. It bulk-inserts the answers (one statement;
``ON CONFLICT DO NOTHING`` on the (worker, item, task) key) and bumps the counters in
one statement per table: ``Item.answer_count`` of the *unknown* items only, in id order,
and the worker's totals. Control rows (gold, certain consensus) are never written on the
answer path: they are the hot rows every challenge shares, so control serves are counted
in the control pool at issue time instead.

Everything derived (consensus, loop counters, full truth inference) runs after the
commit, outside every lock: callers call :func:`answers_settle` once their transaction
is over (:mod:`~labeling.services.settling`: at once on one machine, a debounced task in
production).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Case, DateTimeField, F, IntegerField, Value, When
from django.db.models.functions import Coalesce

from labeling import clock
from labeling.models import Answer, Item, Worker


@dataclass
class AnswerInput:
    item: Item
    label_id: int
    task_ref: str
    verdict: bool | None = None
    is_control: bool = False
    correct: bool | None = None
    time_taken_ms: int | None = None
    evidence_weight: float = 1.0


def answers_record(
    *, worker: Worker, inputs: Sequence[AnswerInput], source: str, now: datetime | None = None
) -> tuple[list[Answer], list[Answer]]:
    """Store ``inputs`` for ``worker`` on their own (imports, simulations, scripts): in
    one transaction, answers whose (item, task) key is already stored are left out; then
    consensus follows. Returns ``(created, existing)`` answer lists. The front doors use
    :func:`answers_insert` inside their own transaction instead."""
    with transaction.atomic():
        keys = {(answer.item.pk, answer.task_ref) for answer in inputs}
        existing = [
            row
            for row in Answer.objects.filter(
                worker=worker, item_id__in={item_id for item_id, _ in keys}, task_ref__in={ref for _, ref in keys}
            )
            if (row.item_id, row.task_ref) in keys
        ]
        stored = {(row.item_id, row.task_ref) for row in existing}
        fresh: list[AnswerInput] = []
        seen = set(stored)
        for answer in inputs:
            if (answer.item.pk, answer.task_ref) not in seen:
                seen.add((answer.item.pk, answer.task_ref))
                fresh.append(answer)
        created = answers_insert(worker=worker, inputs=fresh, source=source, now=now)
    if created:
        answers_settle(created[0].item.project_id, created)
    return created, existing


def answers_insert(
    *, worker: Worker, inputs: Sequence[AnswerInput], source: str, now: datetime | None = None,
    items_locked: bool = False,
) -> list[Answer]:
    """Insert ``inputs`` for ``worker`` and bump the counters; returns the answer rows.
    ``items_locked``: the caller holds the row locks of the unknown items already (taken
    in id order), so none is taken again.

    The caller guarantees that none of ``inputs`` is stored yet: it read the stored keys
    with the rows that serialise a retry locked (the worker door locks the items, the
    widget claims its challenge with one conditional update; SQLite transactions take
    the write lock at ``BEGIN``). The insert still ignores a conflicting row, so that
    a broken guarantee can never store an answer twice.
    """
    now = now or clock.now()
    rows = [
        Answer(
            worker=worker, item=answer.item, label_id=answer.label_id, source=source, task_ref=answer.task_ref,
            verdict=answer.verdict, is_control=answer.is_control, correct=answer.correct,
            time_taken_ms=answer.time_taken_ms, evidence_weight=answer.evidence_weight, created_at=now,
        )
        for answer in inputs
    ]
    if not rows:
        return rows
    Answer.objects.bulk_create(rows, ignore_conflicts=True)
    _counters_bump(worker, rows, now, lock=not items_locked and connection.features.has_select_for_update)
    return rows


def _counters_bump(worker: Worker, rows: list[Answer], now: datetime, lock: bool) -> None:
    """One ``UPDATE`` of the unknown items' answer counts (with ``lock``, their rows are
    first locked in id order, the order every writer of item rows uses) and one of the
    worker's totals."""
    by_item: dict[int, int] = {}
    for row in rows:
        if not row.is_control:
            by_item[row.item_id] = by_item.get(row.item_id, 0) + 1
    if by_item:
        ids = sorted(by_item)
        # Lock in id order first: PostgreSQL takes an UPDATE's row locks in the order it
        # finds the rows, which two statements over overlapping ids need not share.
        if lock:
            list(Item.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk").values_list("pk"))
        Item.objects.filter(pk__in=ids).update(
            answer_count=F("answer_count")
            + Case(*(When(pk=pk, then=Value(by_item[pk])) for pk in ids), output_field=IntegerField()),
            consensus_stale_since=Coalesce(F("consensus_stale_since"), Value(now, output_field=DateTimeField())),
        )
    controls = [row for row in rows if row.correct is not None]
    Worker.objects.filter(pk=worker.pk).update(
        answer_total=F("answer_total") + len(rows),
        control_total=F("control_total") + len(controls),
        control_correct=F("control_correct") + sum(1 for row in controls if row.correct),
        last_seen_at=now,
    )


def answers_settle(project_id: int, rows: Sequence[Answer]) -> None:
    """After the commit of the answer ``rows``: the consensus of their unknown items and
    what follows from it (:func:`~labeling.services.settling.consensus_due`). Call once
    the answer's transaction is over, so that no lock of it is held meanwhile."""
    from labeling.services.settling import consensus_due

    if rows:
        consensus_due(project_id, sorted({row.item_id for row in rows if not row.is_control}), n_answers=len(rows))
