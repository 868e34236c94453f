"""The label-noise audit: the model points at labels it confidently disagrees with, and
people check them again. Nothing is deleted.

A round (:func:`project_audit`, on the cpu queue after each training run and on demand)
cross-validates the cheap candidates on every labeled pool item (gold, consensus and
accepted pseudo-labels alike) over the loop's representation, scores the given labels by
confident learning (:mod:`ml.noise`) and acts on the suspects, most suspect first:

* a consensus label goes back to the queue (status ``unlabeled``, a priority above every
  started item) and settles again only once ``answers_per_item`` new answers name its
  label (the doubted answers alone never settle it);
* a gold item stops serving as control (``KnownLabel.suspended_at``) until the owner
  confirms or fixes it;
* an accepted pseudo-label is demoted, so people answer the item.

Every action is an :class:`~labeling.models.AuditDecision` with its score; the owner can
reverse it. When later answers settle a re-opened item, the decision records whether
the label changed or was confirmed (:func:`decisions_settle`, called by consensus).
The model's label is kept for the owner; nothing sends it to a worker.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from labeling import bridge, clock
from labeling.models import (
    Answer,
    AuditAction,
    AuditDecision,
    AuditKind,
    AuditOutcome,
    Consensus,
    ControlPoolEntry,
    Item,
    ItemStatus,
    KnownLabel,
    KnownLabelSource,
    LabelClass,
    PipelineKind,
    PipelineRun,
    Project,
    PseudoLabel,
    Split,
)
from labeling.services import runs
from labeling.services.outbox import task_send
from labeling.services.pipeline import (
    pipeline_run_fail,
    pipeline_run_finish,
    pipeline_run_progress,
    pipeline_run_start,
)

logger = logging.getLogger(__name__)

AUDIT_PRIORITY = 3.0
"""Priority of a re-opened item: above every started item (``consensus.FINISH_PRIORITY``
plus a settle chance, at most 3) and every uncovered cluster (at most 2)."""
MAX_SHARE = 0.1
"""At most this share of the labeled items is sent back per round (the most suspect)."""
MIN_LABELS = 20
"""Fewer labeled items than this and no round acts: the model knows too little."""
ACTIONS = {AuditKind.CONSENSUS: AuditAction.REOPENED, AuditKind.GOLD: AuditAction.SUSPENDED,
           AuditKind.PSEUDO: AuditAction.DEMOTED}
HELD = (AuditAction.REOPENED, AuditAction.DEMOTED)


class AuditRefused(Exception):
    """An owner action that does not apply to this decision."""


def _now() -> datetime:
    return clock.now()


def audit_queue(project: Project) -> None:
    """Queue an audit round of ``project`` on the cpu queue once the caller commits."""
    from labeling.tasks import cpu_audit_task

    project_id = project.pk
    task_send(cpu_audit_task, project_id)


def audit_after_training(project: Project) -> bool:
    """After a successful training run: queue a round unless ``CROWDLOOP_AUDIT_AFTER_TRAINING``
    is off. A broker that is down loses nothing: the next run (or the owner) tries again."""
    from django.conf import settings

    if not getattr(settings, "CROWDLOOP_AUDIT_AFTER_TRAINING", True):
        return False
    try:
        audit_queue(project)
    except Exception:
        logger.warning("could not queue an audit of project %s", project.pk, exc_info=True)
        return False
    return True


def given_labels(project: Project) -> dict[int, tuple[int, AuditKind | None]]:
    """``{item_id: (label_id, kind)}`` of the pool's labeled items that the audit checks:
    gold in control use, consensus (items labeled without a known label), accepted
    pseudo-labels. Labels settled by hand are the owner's word and are not audited."""
    pool = {"item__project": project, "item__split": Split.POOL}
    given: dict[int, tuple[int, AuditKind | None]] = {
        item_id: (label_id, AuditKind.PSEUDO)
        for item_id, label_id in PseudoLabel.objects.filter(
            accepted=True, item__status=ItemStatus.PSEUDO_LABELED, **pool
        ).values_list("item_id", "label_id")
    }
    given.update(
        (item_id, (label_id, AuditKind.CONSENSUS))
        for item_id, label_id in Consensus.objects.filter(
            item__status=ItemStatus.LABELED, label__isnull=False, item__known_label__isnull=True, **pool
        ).values_list("item_id", "label_id")
    )
    for item_id, label_id, source in KnownLabel.objects.filter(**pool).values_list("item_id", "label_id", "source"):
        given[item_id] = (label_id, AuditKind.GOLD if source == KnownLabelSource.GOLD else None)
    return given


def project_audit(project: Project, *, now: datetime | None = None) -> PipelineRun | None:
    """One audit round of ``project``; returns the pipeline run, or ``None`` while
    another round runs. Idempotent: items with a pending decision, or whose label was
    already confirmed (by answers or the owner), are not sent back again."""
    run = pipeline_run_start(project, PipelineKind.AUDIT, now=now)
    if run is None:
        return None
    try:
        with runs.run_heartbeating(run):
            pipeline_run_progress(run, 0.05, "features")
            result = _audit(project, run, now or _now())
        return pipeline_run_finish(run, result=result)
    except runs.RunLost:
        return None
    except Exception as exc:
        pipeline_run_fail(run, f"{type(exc).__name__}: {exc}")
        raise


def _audit(project: Project, run: PipelineRun, now: datetime) -> dict[str, Any]:
    given = given_labels(project)
    if len(given) < MIN_LABELS:
        return {"labeled": len(given), "suspects": 0, "acted": 0, "skipped": f"fewer than {MIN_LABELS} labels"}
    items = list(Item.objects.filter(project=project, split=Split.POOL).only("id", "image", "text").order_by("id"))
    fit = bridge.label_noise(
        project, items, {i: label for i, (label, _) in given.items()}, lambda p, m: pipeline_run_progress(run, p, m)
    )
    acted = suspects_act(project, fit.suspects, given, budget=int(MAX_SHARE * len(given)), now=now)
    return {
        "labeled": len(given), "representation": fit.representation, "model": fit.model,
        "oof_accuracy": fit.oof_accuracy,
        "noise_rate": fit.noise_rate, "suspects": len(fit.suspects), "acted": acted,
    }


def suspects_act(
    project: Project, rows: Sequence[tuple[int, int, int, float]], given: Mapping[int, tuple[int, AuditKind | None]],
    *, budget: int, now: datetime | None = None,
) -> int:
    """Act on suspects ``(item_id, given label id, model label id, score)``, most
    suspect first, up to ``budget``; ``given`` is :func:`given_labels`. Skips labels
    already checked (confirmed, reversed) or under way. Returns how many it acted on."""
    now = now or _now()
    ids = [item_id for item_id, *_ in rows]
    checked = set(
        AuditDecision.objects.filter(item_id__in=ids)
        .exclude(outcome=AuditOutcome.CHANGED)
        .values_list("item_id", "given_label_id")
    )
    pending = set(AuditDecision.objects.filter(item_id__in=ids, outcome=AuditOutcome.PENDING).values_list("item_id", flat=True))
    acted = 0
    for item_id, given_label, model_label, score in rows:
        kind = given[item_id][1]
        if acted >= budget or kind is None or item_id in pending or (item_id, given_label) in checked:
            continue
        with transaction.atomic():
            item = Item.objects.select_for_update().get(pk=item_id)
            status = _apply(project, item, kind, now)
            at_cap = status == ItemStatus.REVIEW  # no answer left: the owner decides
            AuditDecision.objects.create(
                project=project, item=item, kind=kind, action=ACTIONS[kind], given_label_id=given_label,
                model_label_id=model_label, score=min(max(score, 0.0), 1.0), answers_before=item.answer_count,
                outcome=AuditOutcome.REVIEW if at_cap else AuditOutcome.PENDING, resolved_at=now if at_cap else None,
            )
        acted += 1
    return acted


def _apply(project: Project, item: Item, kind: AuditKind, now: datetime) -> str:
    """Send ``item`` back to people; returns its new status. Call with the item row locked."""
    ControlPoolEntry.objects.filter(item=item).delete()
    if kind == AuditKind.GOLD:
        KnownLabel.objects.filter(item=item).update(suspended_at=now)
        return item.status
    if kind == AuditKind.PSEUDO:
        PseudoLabel.objects.filter(item=item).update(accepted=False)
    status = ItemStatus.REVIEW if item.answer_count >= project.max_answers_per_item else ItemStatus.UNLABELED
    Item.objects.filter(pk=item.pk).update(
        status=status, priority=AUDIT_PRIORITY, priority_reason="label audit: more answers wanted"
    )
    return status


# --- Consensus side: hold re-opened items until new answers came, then record the outcome ---


def held_items(item_ids: Iterable[int]) -> dict[int, dict[int, int]]:
    """``{item_id: {label_id: votes}}`` of the items among ``item_ids`` that the audit
    re-opened or demoted and that are still pending: the counted answers each received
    since it was sent back (none yet: an empty dict)."""
    sent_back = dict(
        AuditDecision.objects.filter(item_id__in=item_ids, outcome=AuditOutcome.PENDING, action__in=HELD)
        .values_list("item_id", "created_at")
    )
    held: dict[int, dict[int, int]] = {item_id: {} for item_id in sent_back}
    if not sent_back:
        return held
    rows = (
        Answer.objects.filter(item_id__in=list(sent_back), created_at__gte=min(sent_back.values()))
        .without_banned_workers()
        .exclude(verdict=False)
        .values_list("item_id", "label_id", "created_at")
    )
    for item_id, label_id, created_at in rows:
        if created_at >= sent_back[item_id]:
            held[item_id][label_id] = held[item_id].get(label_id, 0) + 1
    return held


def status_held(
    project: Project, status: str, label_id: int | None, n_answers: int, new_votes: Mapping[int, int] | None
) -> str:
    """An item's status while the audit waits for new answers (``new_votes``, from
    :func:`held_items`; ``None`` when not held): it settles as ``labeled`` only once
    ``answers_per_item`` of the answers given since it was sent back name the label,
    so the doubted answers alone never settle it again; at the answer cap it goes to
    review."""
    if new_votes is None or status != ItemStatus.LABELED:
        return status
    if label_id is not None and new_votes.get(label_id, 0) >= project.answers_per_item:
        return status
    return ItemStatus.REVIEW if n_answers >= project.max_answers_per_item else ItemStatus.UNLABELED


def decisions_settle(settled: Mapping[int, tuple[str, int | None]], now: datetime | None = None) -> None:
    """Record the outcome of pending re-opened/demoted items that answers settled:
    ``settled`` maps item id to ``(status, consensus label id)``."""
    now = now or _now()
    for decision in AuditDecision.objects.filter(item_id__in=list(settled), outcome=AuditOutcome.PENDING, action__in=HELD):
        status, label_id = settled[decision.item_id]
        if status == ItemStatus.LABELED:
            outcome = AuditOutcome.CONFIRMED if label_id == decision.given_label_id else AuditOutcome.CHANGED
        elif status == ItemStatus.REVIEW:
            outcome = AuditOutcome.REVIEW
        else:
            continue
        AuditDecision.objects.filter(pk=decision.pk, outcome=AuditOutcome.PENDING).update(
            outcome=outcome, final_label_id=label_id, resolved_at=now
        )


# --- The owner's actions -----------------------------------------------------------------------


def decision_reverse(
    decision: AuditDecision, *, user: User | None = None, now: datetime | None = None
) -> AuditDecision:
    """Undo what the audit did: a re-opened item settles again on its answers, a
    suspended gold item serves as control again, a demoted pseudo-label is accepted
    again (unless people labeled the item meanwhile). Refused once reversed or resolved
    by the owner."""
    from labeling.services.consensus import items_consensus_update

    now = now or _now()
    with transaction.atomic():
        item = Item.objects.select_for_update().get(pk=decision.item_id)
        done = AuditDecision.objects.filter(pk=decision.pk, reversed_at__isnull=True).update(
            outcome=AuditOutcome.REVERSED, reversed_at=now, decided_by=user, resolved_at=now
        )
        if not done:
            raise AuditRefused("this decision was already reversed")
        if decision.action == AuditAction.SUSPENDED:
            KnownLabel.objects.filter(item=item).update(suspended_at=None)
        elif decision.action == AuditAction.DEMOTED:
            PseudoLabel.objects.filter(item=item, label_id=decision.given_label_id).update(accepted=True)
            if item.status == ItemStatus.UNLABELED:
                Item.objects.filter(pk=item.pk).update(status=ItemStatus.PSEUDO_LABELED, priority=0.0, priority_reason="")
        elif item.status in (ItemStatus.UNLABELED, ItemStatus.REVIEW):
            Item.objects.filter(pk=item.pk).update(priority=0.0, priority_reason="")
    if decision.action == AuditAction.REOPENED:
        items_consensus_update([item.pk])
    decision.refresh_from_db()
    return decision


def gold_resolve(
    decision: AuditDecision, label: LabelClass, *, user: User | None = None, now: datetime | None = None
) -> AuditDecision:
    """The owner's word on a suspended gold item: ``label`` is its right label (the given
    one confirms it, another fixes it). Control use resumes."""
    from labeling.services.consensus import items_consensus_update

    if decision.action != AuditAction.SUSPENDED or decision.outcome != AuditOutcome.PENDING:
        raise AuditRefused("only a pending suspended gold item can be confirmed or fixed")
    if label.project_id != decision.project_id:
        raise AuditRefused("that label belongs to another project")
    now = now or _now()
    outcome = AuditOutcome.CONFIRMED if label.pk == decision.given_label_id else AuditOutcome.CHANGED
    with transaction.atomic():
        KnownLabel.objects.filter(item_id=decision.item_id).update(label=label, suspended_at=None, created_by=user)
        AuditDecision.objects.filter(pk=decision.pk).update(
            outcome=outcome, final_label=label, resolved_at=now, decided_by=user
        )
    items_consensus_update([decision.item_id])
    decision.refresh_from_db()
    return decision
