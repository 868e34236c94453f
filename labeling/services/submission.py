"""Submission: the worker door's answers, undo, and what runs after them.

Answers are written by the one narrow write,
:func:`~labeling.services.answers.answers_insert`; consensus follows after the commit
(:func:`~labeling.services.answers.answers_settle`), and the quality rules run only
after a submission that could break one (a control answer, a skip, a fast answer).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest

from labeling import clock
from labeling.models import (
    Answer,
    AnswerSource,
    Item,
    LabelClass,
    Lease,
    Project,
    QualityRules,
    Skip,
    Worker,
    WorkerDecision,
    WorkerStatus,
)
from labeling.services import feedback, hot, selection
from labeling.services.accounts import UndoRefused, UnknownTask, worker_ensure_active
from labeling.services.answers import AnswerInput, answers_insert, answers_settle
from labeling.services.assignment import control_record_forget
from labeling.services.consensus import items_consensus_update
from labeling.services.rules import quality_rules_for, worker_rules_apply
from labeling.services.worker_status import worker_status_in


def _now() -> datetime:
    return clock.now()


@dataclass
class TaskAnswer:
    """One answer from the worker UI. ``label`` ``None`` is a skip; ``verdict`` ``False``
    means "not this label" (a grid tile left unselected)."""

    lease_id: str
    key: str
    label: str | None
    time_ms: int | None = None
    verdict: bool | None = None


@dataclass
class TaskOutcome:
    lease_id: str
    key: str
    status: str  # stored, duplicate, expired
    feedback: dict[str, Any] | None = None
    skipped: bool = False


@dataclass
class SubmitResult:
    outcomes: list[TaskOutcome]
    decision: WorkerDecision | None = None
    worker: Worker | None = None
    status: str = WorkerStatus.ACTIVE  # the worker's status in the project after the rules ran


def task_answers_submit(
    *, worker: Worker, project: Project, answers: Sequence[TaskAnswer], status: str | None = None,
    now: datetime | None = None,
) -> SubmitResult:
    """Store a batch of answers (and skips) for leases held by ``worker`` in ``project``.

    Idempotent per client key: a key already stored answers ``duplicate`` and stores
    nothing. An answer is accepted only while its lease is open (and, for an unknown
    item, while the item is below the answer cap); otherwise ``expired``. Any lease id
    that is not this worker's in this project refuses the whole batch
    (:class:`UnknownTask`) before anything is written.

    One short transaction: the batch's items are locked in id order (a concurrent retry
    of the same keys waits, then finds them stored), the answers are inserted and the
    counters bumped by :func:`~labeling.services.answers.answers_insert`. After the
    commit, holding no lock: consensus (:func:`~labeling.services.answers.answers_settle`)
    and, after a control answer, a skip or a fast answer, the quality rules.
    A missed control item is explained only within :mod:`~labeling.services.feedback`'s
    limits; an item explained to this worker before is no longer control for them.
    ``status``: the worker's status in the project, when the caller read it.
    """
    now = now or _now()
    worker_ensure_active(worker, project, status=status)
    labels = {label.name: label for label in hot.project_labels(project)}
    for answer in answers:
        if answer.label is not None and answer.label not in labels:
            raise ValueError(f"unknown label {answer.label!r}")
    with transaction.atomic():
        leases, items = _leases_items_locked(worker, project, {answer.lease_id for answer in answers})
        judged = _answers_judge(worker, project, answers, leases, items, labels, now)
        if judged.consumed:
            Lease.objects.filter(pk__in=sorted(judged.consumed)).update(expires_at=now)
        if judged.skips:
            Skip.objects.bulk_create(judged.skips, ignore_conflicts=True)
        rows = answers_insert(worker=worker, inputs=judged.inputs, source=AnswerSource.WORKER, now=now, items_locked=True)
    if any(row.correct is not None for row in rows):
        control_record_forget(worker.pk, project.pk)
    answers_settle(project.pk, rows)
    worker.answer_total += len(rows)
    decision = worker_rules_apply(worker, project, now=now) if judged.rules_due else None
    status = WorkerStatus.ACTIVE
    if decision is not None:
        worker.refresh_from_db()
        status = worker_status_in(worker, project)
    return SubmitResult(outcomes=judged.outcomes, decision=decision, worker=worker, status=status)


def _leases_items_locked(
    worker: Worker, project: Project, wanted: set[str]
) -> tuple[dict[str, Lease], dict[int, Item]]:
    """The worker's leases ``wanted`` in ``project`` by public id, and their items by id,
    locked. Raises :class:`UnknownTask` when any lease id is not this worker's there.

    The items are locked in id order (as every writer of item rows does) before answers
    are read, so that a concurrent retry waits for this batch and pickers skip these
    items. "No key" locks leave inserts that reference the items unblocked. Call inside
    a transaction."""
    leases = {
        lease.public_id: lease
        for lease in Lease.objects.filter(worker=worker, item__project=project, public_id__in=wanted)
    }
    if len(leases) != len(wanted):
        raise UnknownTask("Unknown task id.")
    items = {
        item.pk: item
        for item in Item.objects.select_for_update(no_key=True)
        .filter(pk__in=sorted({lease.item_id for lease in leases.values()}))
        .only("id", "project_id", "status", "answer_count")
        .order_by("pk")
    }
    return leases, items


@dataclass
class _Judged:
    """What a batch of answers comes to: an outcome per answer, the answers and skips to
    store, the leases to close, and whether the quality rules may have been broken (a
    control answer, a skip or a fast answer)."""

    outcomes: list[TaskOutcome] = field(default_factory=list)
    inputs: list[AnswerInput] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    consumed: set[int] = field(default_factory=set)
    rules_due: bool = False


def _answers_judge(
    worker: Worker, project: Project, answers: Sequence[TaskAnswer], leases: Mapping[str, Lease],
    items: Mapping[int, Item], labels: Mapping[str, LabelClass], now: datetime,
) -> _Judged:
    """Judge each answer of a batch (:class:`_Judged`). Call with the items locked."""
    by_id = {label.pk: label for label in labels.values()}
    item_ids = list(items)
    stored = {
        row.task_ref: row
        for row in Answer.objects.filter(
            worker=worker, source=AnswerSource.WORKER, task_ref__in={a.key for a in answers}
        ).only("task_ref", "correct", "item_id")
    }
    skipped = set()
    if any(answer.label is None for answer in answers):
        skipped = set(Skip.objects.filter(worker=worker, item_id__in=item_ids).values_list("item_id", flat=True))
    explained, control_labels = _controls_known(worker, leases, items)
    budget = feedback.FeedbackBudget(worker, project, now)
    rules = quality_rules_for(project) if any(a.time_ms is not None for a in answers) else None
    judged = _Judged()
    for answer in answers:
        lease = leases[answer.lease_id]
        item = items[lease.item_id]
        control_id = control_labels.get(item.pk)
        control = by_id.get(control_id) if control_id is not None else None
        previous = stored.get(answer.key)
        if previous is not None or (answer.label is None and item.pk in skipped):
            told = _feedback_again(item, previous, explained, by_id)
            judged.outcomes.append(TaskOutcome(lease.public_id, answer.key, "duplicate", told, previous is None))
            continue
        if not _lease_open(lease, item, project, judged.consumed, now):
            judged.outcomes.append(TaskOutcome(lease.public_id, answer.key, "expired"))
            continue
        judged.consumed.add(lease.pk)
        if answer.label is None:
            judged.skips.append(Skip(item=item, worker=worker))
            judged.outcomes.append(TaskOutcome(lease.public_id, answer.key, "stored", skipped=True))
            judged.rules_due = True
            continue
        _answer_take(judged, answer, lease, item, labels[answer.label], control, rules, budget)
    return judged


def _controls_known(
    worker: Worker, leases: Mapping[str, Lease], items: Mapping[int, Item]
) -> tuple[set[int], dict[int, int]]:
    """The items among ``items`` already explained to ``worker`` (no longer control for
    them), and the known label id of each other item leased to them as control."""
    control_leases = [lease for lease in leases.values() if lease.is_control]
    if not control_leases:
        return set(), {}
    explained = feedback.explained_item_ids(worker, list(items))
    control_labels = selection.control_label_of(
        [items[lease.item_id] for lease in control_leases if lease.item_id not in explained]
    )
    return explained, control_labels


def _feedback_again(
    item: Item, previous: Answer | None, explained: set[int], by_id: Mapping[int, LabelClass]
) -> dict[str, Any] | None:
    """For a retried answer: the feedback its first try got, if it missed a control item
    that was explained."""
    if previous is None or previous.correct is not False or item.pk not in explained:
        return None
    known_id = selection.control_label_of([item]).get(item.pk)
    label = by_id.get(known_id) if known_id is not None else None
    return feedback.feedback_payload(label) if label is not None else None


def _lease_open(lease: Lease, item: Item, project: Project, consumed: set[int], now: datetime) -> bool:
    """Whether ``lease`` still takes an answer: open and not used in this batch, and for
    an unknown item below the answer cap (a full item's lease closes: it joins
    ``consumed``)."""
    is_open = lease.expires_at > now and lease.pk not in consumed
    if is_open and not lease.is_control and item.answer_count >= project.max_answers_per_item:
        consumed.add(lease.pk)  # the item is full: this lease closes
        is_open = False
    return is_open


def _answer_take(
    judged: _Judged, answer: TaskAnswer, lease: Lease, item: Item, label: LabelClass, control: LabelClass | None,
    rules: QualityRules | None, budget: feedback.FeedbackBudget,
) -> None:
    """Add ``answer`` (naming ``label``; ``control``: the item's known label when it is
    control for this worker) to ``judged``, graded, with feedback on a miss."""
    correct = None if control is None else (label.pk == control.pk) != (answer.verdict is False)
    judged.inputs.append(
        AnswerInput(
            item=item, label_id=label.pk, task_ref=answer.key, verdict=answer.verdict,
            is_control=control is not None, correct=correct, time_taken_ms=answer.time_ms,
        )
    )
    if not lease.is_control:
        item.answer_count += 1
    fast = rules is not None and answer.time_ms is not None and answer.time_ms < (rules.min_answer_ms or 0)
    judged.rules_due = judged.rules_due or control is not None or fast
    told = budget.explain(item, control) if correct is False else None
    judged.outcomes.append(TaskOutcome(lease.public_id, answer.key, "stored", told))


def answer_undo(*, worker: Worker, key: str, now: datetime | None = None) -> Lease:
    """Delete the worker's answer with client key ``key`` if it is younger than
    ``CROWDLOOP_UNDO_WINDOW_S``: counters go back, the consensus of the item is
    recomputed and the lease reopens, so the item can be answered again. Returns the
    lease."""
    now = now or _now()
    worker_ensure_active(worker)
    answer = (
        Answer.objects.filter(worker=worker, source=AnswerSource.WORKER, task_ref=key)
        .select_related("item__project")
        .first()
    )
    if answer is None:
        raise UnknownTask("Unknown answer.")
    worker_ensure_active(worker, answer.item.project)
    with transaction.atomic():
        Item.objects.select_for_update(no_key=True).filter(pk=answer.item_id).first()
        answer = Answer.objects.filter(pk=answer.pk).first()
        if answer is None:
            raise UnknownTask("Unknown answer.")
        if answer.created_at < now - timedelta(seconds=settings.CROWDLOOP_UNDO_WINDOW_S):
            raise UndoRefused(f"Answers can be undone for {settings.CROWDLOOP_UNDO_WINDOW_S} seconds only.")
        answer.delete()
        if not answer.is_control:
            Item.objects.filter(pk=answer.item_id).update(answer_count=Greatest(F("answer_count") - 1, 0))
        control = answer.correct is not None
        Worker.objects.filter(pk=worker.pk).update(
            answer_total=Greatest(F("answer_total") - 1, 0),
            control_total=Greatest(F("control_total") - int(control), 0),
            control_correct=Greatest(F("control_correct") - int(answer.correct is True), 0),
        )
        lease = Lease.objects.get(worker=worker, item_id=answer.item_id)
        lease.expires_at = now + timedelta(seconds=settings.CROWDLOOP_LEASE_TTL_S)
        lease.save(update_fields=["expires_at"])
    if control:
        control_record_forget(worker.pk, answer.item.project_id)
    items_consensus_update([answer.item_id])
    return lease

