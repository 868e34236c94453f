"""Dashboard reads about the workers of a project: the workers table, one worker's page,
the decisions log and the suspected bots; in a fixed number of queries per page."""

import statistics
from dataclasses import dataclass

from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    FloatField,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import Cast, Coalesce, RowNumber
from django.http import Http404

from labeling import bridge
from labeling.dashboard.formatting import fmt_number
from labeling.models import (
    Answer,
    ProjectMembership,
    Worker,
    WorkerDecision,
    WorkerKind,
    WorkerProjectStatus,
    WorkerSkill,
    WorkerStatus,
)
from labeling.services.worker_status import status_here

PAGE_SIZE = 50
"""Rows per page of the dashboard's lists."""
SPEED_WINDOW = 200
"""Latest answers per worker that the median answer time is taken over."""


def wilson_interval(correct, total):
    """95 % Wilson score interval of a proportion, ``(low, high)``; ``None`` for no trials."""
    return bridge.wilson_interval(correct, total) if total else None


WORKER_SORTS = {
    "answers": "answer_total",
    "accuracy": "control_accuracy",
    "skill": "project_skill",
    "seen": "last_seen_at",
    "id": "id",
}


@dataclass
class WorkerFilters:
    status: str = ""
    kind: str = ""
    q: str = ""
    min_controls: int = 0
    sort: str = "-answers"
    page: int = 1


def _worked_on(project):
    return Q(Exists(Answer.objects.filter(worker=OuterRef("pk"), item__project=project))) | Q(
        Exists(ProjectMembership.objects.filter(worker=OuterRef("pk"), project=project))
    )


def project_workers(project):
    """Workers who answered in (or were admitted to) ``project``, annotated with their
    control accuracy, their estimated skill and their status here."""
    skill = WorkerSkill.objects.filter(worker=OuterRef("pk"), project=project)
    return (
        Worker.objects.filter(_worked_on(project))
        .select_related("user")
        .annotate(
            control_accuracy=Case(
                When(control_total=0, then=Value(None, output_field=FloatField())),
                default=Cast(F("control_correct"), FloatField()) / Cast(F("control_total"), FloatField()),
                output_field=FloatField(),
            ),
            project_skill=Subquery(skill.values("accuracy")[:1], output_field=FloatField()),
            status_here=status_here(project),
        )
    )


def workers_page(project, filters):
    """One page of the workers table and whether there is a next one."""
    workers = project_workers(project)
    if filters.status:
        workers = workers.filter(status_here=filters.status)
    if filters.kind:
        workers = workers.filter(kind=filters.kind)
    if filters.min_controls:
        workers = workers.filter(control_total__gte=filters.min_controls)
    if filters.q:
        term = filters.q.strip().lstrip("#")
        workers = workers.filter(Q(user__username__icontains=term) | (Q(pk=int(term)) if term.isdigit() else Q()))
    field = WORKER_SORTS.get(filters.sort.lstrip("-"), "answer_total")
    descending = filters.sort.startswith("-")
    order = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
    start = (max(filters.page, 1) - 1) * PAGE_SIZE
    rows = list(workers.order_by(order, "id")[start : start + PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    _workers_decorate(project, rows)
    return rows, more


def _workers_decorate(project, workers):
    """Per-page columns in two queries: answers here and median answer time."""
    ids = [worker.pk for worker in workers]
    here = dict(
        Answer.objects.filter(worker_id__in=ids, item__project=project)
        .values_list("worker_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    speeds = worker_speeds(project, ids)
    for worker in workers:
        worker.answers_here = here.get(worker.pk, 0)
        worker.median_ms = speeds.get(worker.pk)
        worker.control_interval = interval = wilson_interval(worker.control_correct, worker.control_total)
        worker.display_name = worker_name(worker)
        worker.status_here_display = WorkerStatus(worker.status_here).label
        worker.accuracy_text = fmt_number(worker.control_accuracy, percent=True)
        worker.interval_text = f"{fmt_number(interval[0], True)}–{fmt_number(interval[1], True)}" if interval else ""
        worker.skill_text = fmt_number(worker.project_skill, percent=True)
        worker.median_text = "–" if worker.median_ms is None else f"{worker.median_ms / 1000:.1f} s"


def worker_name(worker):
    if worker.user_id:
        return worker.user.username
    return f"visitor #{worker.pk}"


def worker_speeds(project, worker_ids):
    """Median ``time_taken_ms`` of each worker's last answers here, in one query."""
    if not worker_ids:
        return {}
    rows = (
        Answer.objects.filter(worker_id__in=worker_ids, item__project=project, time_taken_ms__isnull=False)
        .annotate(recent=Window(RowNumber(), partition_by=[F("worker_id")], order_by=F("id").desc()))
        .filter(recent__lte=SPEED_WINDOW)
        .values_list("worker_id", "time_taken_ms")
    )
    times = {}
    for worker_id, ms in rows:
        times.setdefault(worker_id, []).append(ms)
    return {worker_id: int(statistics.median(values)) for worker_id, values in times.items()}


def worker_get(project, worker_id):
    worker = project_workers(project).filter(pk=worker_id).first()
    if worker is None:
        raise Http404("No such worker in this project")
    _workers_decorate(project, [worker])
    return worker


def worker_detail(project, worker):
    skill = WorkerSkill.objects.filter(worker=worker, project=project).first()
    here = Answer.objects.filter(worker=worker, item__project=project).aggregate(
        controls=Count("id", filter=Q(correct__isnull=False)), correct=Count("id", filter=Q(correct=True))
    )
    return {
        "skill": skill,
        "controls_here": here["controls"],
        "correct_here": here["correct"],
        "interval_here": wilson_interval(here["correct"], here["controls"]),
        "decisions": _undoable(
            worker.decisions.filter(Q(project=project) | Q(project__isnull=True))
            .select_related("decided_by", "project")
            .order_by("-created_at"),
            50,
        ),
        "answers": list(
            Answer.objects.filter(worker=worker, item__project=project)
            .select_related("item", "label")
            .order_by("-created_at")[:30]
        ),
    }


def decisions_log(project, *, automatic=None, n=50):
    decisions = WorkerDecision.objects.filter(project=project).select_related("worker__user", "decided_by")
    if automatic is not None:
        decisions = decisions.filter(automatic=automatic)
    return _undoable(decisions.order_by("-created_at"), n)


def _undoable(decisions, n):
    """The first ``n`` decisions, each with ``undoable``: not reversed, and the worker
    still has the status it set where it applied (its project, or platform-wide)."""
    here = WorkerProjectStatus.objects.filter(worker=OuterRef("worker_id"), project=OuterRef("project_id"))
    decisions = list(
        decisions.annotate(
            status_now=Case(
                When(project__isnull=True, then=F("worker__status")),
                default=Coalesce(Subquery(here.values("status")[:1]), Value(WorkerStatus.ACTIVE.value)),
                output_field=CharField(),
            )
        )[:n]
    )
    for decision in decisions:
        decision.undoable = decision.reversed_at is None and decision.status_now == decision.new_status
    return decisions


def decision_get(project, decision_id, user=None):
    """A decision made in ``project``; a platform-wide one for staff only."""
    scope = Q(project=project)
    if user is not None and user.is_staff:
        scope |= Q(project__isnull=True, worker__in=Worker.objects.filter(_worked_on(project)))
    decision = WorkerDecision.objects.filter(scope, pk=decision_id).select_related("worker").first()
    if decision is None:
        raise Http404("No such decision")
    return decision


def suspected_bots(project, n=50):
    """Widget visitors here that are banned or miss most control items."""
    return list(
        project_workers(project)
        .filter(kind=WorkerKind.VISITOR)
        .filter(
            Q(status_here=WorkerStatus.BANNED) | Q(control_total__gte=3, control_correct__lt=F("control_total") * 0.5)
        )
        .order_by("control_accuracy", "-answer_total")[:n]
    )
