"""Registered crowd workers' accounts and admission: sign-up, which projects they may
label, memberships, and the refusals every worker-facing service shares."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.db.models import Q, QuerySet

from labeling import clock
from labeling.models import Lease, Project, ProjectMembership, Worker, WorkerKind, WorkerStatus
from labeling.services.worker_status import status_here_of, status_holding, worker_status_in


class WorkerError(Exception):
    """Base of the refusals below; the message is safe to show to the worker."""


class UnknownTask(WorkerError):
    """A lease id or answer key that is not this worker's (or does not exist)."""


class WorkerNotActive(WorkerError):
    def __init__(self, worker: Worker, status: str | None = None) -> None:
        self.status = status or worker.status
        where = "Your account is" if self.status == worker.status else "You are"
        super().__init__(f"{where} {WorkerStatus(self.status).label.lower()}; you cannot label for now.")


class UndoRefused(WorkerError):
    pass


class ProjectNotFound(WorkerError):
    """No such project, or not one this worker may label."""


def _now() -> datetime:
    return clock.now()



def worker_ensure_active(worker: Worker, project: Project | None = None, *, status: str | None = None) -> None:
    """Refuse a worker paused or banned platform-wide or, given one, in ``project``
    (``status``: what holds for them there, when the caller read it with
    :func:`project_admit`)."""
    if status is None:
        status = worker.status if project is None else worker_status_in(worker, project)
    if status != WorkerStatus.ACTIVE:
        raise WorkerNotActive(worker, status)


def worker_sign_up(*, username: str, password: str, email: str = "") -> Any:
    """Create a user account with its registered worker; raises ``ValidationError`` for a
    weak password or a taken name."""
    from django.core.exceptions import ValidationError

    User = get_user_model()
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError("That user name is taken.")
    user = User(username=username, email=email)
    validate_password(password, user)
    with transaction.atomic():
        user.set_password(password)
        user.save()
        Worker.objects.create(user=user, kind=WorkerKind.REGISTERED)
    return user


def worker_for_user(user: Any) -> Worker:
    """The registered worker of ``user``, created on first use."""
    worker, _ = Worker.objects.get_or_create(user=user, defaults={"kind": WorkerKind.REGISTERED})
    return worker


def projects_for_worker(worker: Worker | None) -> QuerySet[Project]:
    """Projects ``worker`` is admitted to: open to all, or with a membership."""
    if worker is None or worker.kind != WorkerKind.REGISTERED:
        return Project.objects.none()
    admitted = ProjectMembership.objects.filter(worker=worker).values("project_id")
    return Project.objects.filter(Q(open_to_all_workers=True) | Q(pk__in=admitted))


def project_admit(worker: Worker, slug: str) -> tuple[Project, str]:
    """``(project, status)``: the project ``slug`` that ``worker`` is admitted to, with
    the status that holds for them there (:func:`worker_status_in`), in one query.
    Raises :class:`ProjectNotFound` when there is no such project or the worker is not
    admitted."""
    project = projects_for_worker(worker).filter(slug=slug).annotate(status_here=status_here_of(worker)).first()
    if project is None:
        raise ProjectNotFound("No such project.")
    return project, status_holding(worker.status, project.status_here)


def project_get_for_worker(worker: Worker | None, slug: str) -> Project:
    project = projects_for_worker(worker).filter(slug=slug).first()
    if project is None:
        raise ProjectNotFound("No such project.")
    return project


def membership_grant(project: Project, worker: Worker) -> ProjectMembership:
    membership, _ = ProjectMembership.objects.get_or_create(project=project, worker=worker)
    return membership


def membership_revoke(project: Project, worker: Worker, *, now: datetime | None = None) -> None:
    """Remove ``worker`` from ``project``; their open leases there return the items."""
    now = now or _now()
    with transaction.atomic():
        ProjectMembership.objects.filter(project=project, worker=worker).delete()
        Lease.objects.filter(worker=worker, item__project=project, expires_at__gt=now).update(expires_at=now)



def project_crowd_settings_update(
    project: Project, *, open_to_all_workers: bool, show_control_feedback: bool, gold_share: float
) -> Project:
    """Who may label ``project``, whether missed control items are explained, and the
    share of control items."""
    project.open_to_all_workers = open_to_all_workers
    project.show_control_feedback = show_control_feedback
    project.gold_share = gold_share
    project.full_clean()
    project.save(update_fields=["open_to_all_workers", "show_control_feedback", "gold_share"])
    return project

