"""Worker status: per project (its owner, its quality rules) and platform-wide (staff).

A project's owner pauses or bans a worker in that project only: elsewhere the worker
is served and their answers count as before. Only staff set the platform-wide
``Worker.status``. Where both exist the stricter holds (banned over paused over
active). Every change is logged as a reversible :class:`WorkerDecision`.
"""
from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Case, CharField, Count, Exists, Max, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce

from labeling import clock
from labeling.models import (
    Answer,
    Item,
    Lease,
    Project,
    Worker,
    WorkerDecision,
    WorkerProjectStatus,
    WorkerStatus,
)
from labeling.services.consensus import items_consensus_update

_STRICTNESS: dict[str, int] = {WorkerStatus.ACTIVE: 0, WorkerStatus.PAUSED: 1, WorkerStatus.BANNED: 2}


class DecisionError(Exception):
    """A decision that cannot be reversed; the message says why."""


class GlobalStatusRefused(PermissionError):
    """Only staff change a worker's status on the whole platform."""


def _now() -> datetime:
    return clock.now()


def _stricter(*statuses: str) -> str:
    return max(statuses, key=lambda status: _STRICTNESS[status])


def worker_status_in(worker: Worker, project: Project) -> str:
    """The status that holds for ``worker`` in ``project``: the stricter of the
    platform-wide one and the project's own."""
    here = WorkerProjectStatus.objects.filter(worker=worker, project=project).values_list("status", flat=True).first()
    return status_holding(worker.status, here)


def status_holding(platform: str, here: str | None) -> str:
    """The stricter of a platform-wide status and a project's own (``None``: none)."""
    return _stricter(platform, here or WorkerStatus.ACTIVE)


def status_here_of(worker: Worker) -> Subquery:
    """An expression for a ``Project`` queryset: ``worker``'s own status in each
    project, or ``None`` where the project set none."""
    return Subquery(WorkerProjectStatus.objects.filter(worker=worker, project=OuterRef("pk")).values("status")[:1])


def projects_closing(worker: Worker) -> set[int]:
    """Ids of projects where ``worker`` is paused or banned by the project."""
    return set(
        WorkerProjectStatus.objects.filter(worker=worker)
        .exclude(status=WorkerStatus.ACTIVE)
        .values_list("project_id", flat=True)
    )


def status_here(project: Project) -> Case:
    """An expression for a ``Worker`` queryset: each worker's status in ``project``."""
    rows = WorkerProjectStatus.objects.filter(worker=OuterRef("pk"), project=project)

    def holds(status: str) -> Q:
        # Q | Exists is a Q (Q._combine takes any conditional expression); the stubs only type Q | Q.
        return Q(status=status) | Exists(rows.filter(status=status))  # type: ignore[return-value]

    return Case(
        When(holds(WorkerStatus.BANNED), then=Value(WorkerStatus.BANNED.value)),
        When(holds(WorkerStatus.PAUSED), then=Value(WorkerStatus.PAUSED.value)),
        default=Value(WorkerStatus.ACTIVE.value),
        output_field=CharField(),
    )


def worker_status_change(
    worker: Worker, status: str, *, reason: str, project: Project | None = None, automatic: bool = False,
    by: User | None = None, now: datetime | None = None,
) -> WorkerDecision | None:
    """Set ``worker``'s status in ``project`` (``None``: platform-wide, staff only) and
    log it as a :class:`WorkerDecision`. Returns the decision, or ``None`` when the
    status was already that.

    A worker who stops being active there gives back their open leases there. A ban
    takes their answers out of the counts and the consensus of the items they answered
    there (those items return to the queue); lifting it puts them back.
    """
    if project is None and by is not None and not by.is_staff:
        raise GlobalStatusRefused("only staff change a worker's status on the whole platform")
    now = now or _now()
    with transaction.atomic():
        locked = Worker.objects.select_for_update(no_key=True).values_list("status", flat=True).get(pk=worker.pk)
        if project is None:
            previous = locked
            Worker.objects.filter(pk=worker.pk).update(status=status)
            worker.status = status
        else:
            row = WorkerProjectStatus.objects.filter(worker=worker, project=project).first()
            previous = row.status if row is not None else WorkerStatus.ACTIVE
            if previous != status:
                WorkerProjectStatus.objects.update_or_create(
                    worker=worker, project=project,
                    defaults={"status": status, "reason": reason, "decided_at": now, "decided_by": by},
                )
        if previous == status:
            return None
        decision = WorkerDecision.objects.create(
            worker=worker, project=project, previous_status=previous, new_status=status, reason=reason,
            automatic=automatic, decided_by=by,
        )
        if status != WorkerStatus.ACTIVE:
            leases = Lease.objects.filter(worker=worker, expires_at__gt=now)
            if project is not None:
                leases = leases.filter(item__project=project)
            leases.update(expires_at=now)
        if WorkerStatus.BANNED in (previous, status):
            worker_answers_recount(worker, project=project)
    return decision


def worker_answers_recount(worker: Worker, *, project: Project | None = None, chunk: int = 500) -> int:
    """Recount the answers and recompute the consensus of every item ``worker``
    answered (in ``project``, or everywhere), after a ban or its lifting."""
    answered = Answer.objects.filter(worker=worker)
    if project is not None:
        answered = answered.filter(item__project=project)
    item_ids = sorted(set(answered.values_list("item_id", flat=True)))
    counted = (
        Answer.objects.filter(item=OuterRef("pk"), is_control=False)
        .without_banned_workers()
        .order_by()
        .values("item")
        .annotate(n=Count("id"))
        .values("n")
    )
    for start in range(0, len(item_ids), chunk):
        ids = item_ids[start : start + chunk]
        Item.objects.filter(pk__in=ids).update(answer_count=Coalesce(Subquery(counted), 0))
        items_consensus_update(ids)
    return len(item_ids)


def decision_status_now(decision: WorkerDecision) -> str:
    """The worker's status now where ``decision`` applied (its project, or platform-wide)."""
    if decision.project_id is None:
        return Worker.objects.values_list("status", flat=True).get(pk=decision.worker_id)
    here = WorkerProjectStatus.objects.filter(worker_id=decision.worker_id, project_id=decision.project_id)
    return here.values_list("status", flat=True).first() or WorkerStatus.ACTIVE


def worker_decision_reverse(
    decision: WorkerDecision, *, by: User | None = None, now: datetime | None = None
) -> WorkerDecision | None:
    """Undo ``decision``: the worker gets their previous status back where it applied
    (with a logged, manual decision), unless their status there has changed since."""
    now = now or _now()
    with transaction.atomic():
        decision = WorkerDecision.objects.select_for_update().select_related("worker").get(pk=decision.pk)
        if decision.reversed_at is not None:
            raise DecisionError(f"Decision {decision.pk} was already reversed.")
        current = decision_status_now(decision)
        if current != decision.new_status:
            raise DecisionError(
                f"Worker {decision.worker_id} is {current} now, no longer {decision.new_status}; "
                "change the status instead."
            )
        decision.reversed_at = now
        decision.save(update_fields=["reversed_at"])
        return worker_status_change(
            decision.worker, decision.previous_status, reason=f"Reverses decision {decision.pk}: {decision.reason}",
            project=decision.project, automatic=False, by=by, now=now,
        )


def fresh_start(worker: Worker, project: Project) -> datetime | None:
    """When an admin last made ``worker`` active in ``project`` (or platform-wide):
    quality rules judge only answers after it."""
    return WorkerDecision.objects.filter(
        Q(project=project) | Q(project__isnull=True), worker=worker, automatic=False, new_status=WorkerStatus.ACTIVE
    ).aggregate(at=Max("created_at"))["at"]
