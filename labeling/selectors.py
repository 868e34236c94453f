"""Reads: querysets the views and the API build on. Nothing here writes."""
from django.db.models import Q
from django.http import Http404

from labeling.models import (
    Consensus,
    ImportJob,
    ItemStatus,
    KnownLabel,
    OwnerToken,
    Project,
    Split,
    TrainingRun,
)


def projects_managed_by(user):
    """Projects ``user`` may manage: their own, or all for staff.

    A user authenticated by a scoped owner token carries it as ``user.api_token``
    (:class:`labeling.authentication.OwnerTokenAuthentication`); then only the token's
    projects among those are managed.
    """
    if not user.is_authenticated:
        return Project.objects.none()
    projects = Project.objects.all() if user.is_staff else Project.objects.filter(Q(owner=user))
    token = getattr(user, "api_token", None)
    if token is not None and token.scoped:
        projects = projects.filter(pk__in=token.projects.values("pk"))
    return projects


def user_may_create_projects(user):
    """Staff, holders of the ``labeling.add_project`` permission and owners of a project
    may create projects; a token scoped to projects may not."""
    if not user.is_authenticated:
        return False
    token = getattr(user, "api_token", None)
    if token is not None and token.scoped:
        return False
    return user.is_staff or user.has_perm("labeling.add_project") or Project.objects.filter(owner=user).exists()


def owner_tokens_of(user):
    """``user``'s API tokens, newest first, with their projects."""
    return OwnerToken.objects.filter(user=user).prefetch_related("projects")


def project_get_managed(user, slug):
    project = projects_managed_by(user).filter(slug=slug).select_related("stats").first()
    if project is None:
        raise Http404("No such project")
    return project


def import_job_get_managed(user, job_id):
    job = ImportJob.objects.filter(pk=job_id, project__in=projects_managed_by(user)).first()
    if job is None:
        raise Http404("No such import")
    return job


def training_run_get_managed(user, run_id):
    run = TrainingRun.objects.filter(pk=run_id, project__in=projects_managed_by(user)).select_related("project").first()
    if run is None:
        raise Http404("No such training run")
    return run


def human_labels(project):
    """``{item_id: label_id}`` of the pool's human-verified labels: gold, settled by
    hand, and human consensus. What training validates on and what the semi-supervised
    round spreads; never pseudo-labels or model predictions."""
    labels = dict(
        Consensus.objects.filter(
            item__project=project, item__split=Split.POOL, item__status=ItemStatus.LABELED, label__isnull=False
        ).values_list("item_id", "label_id")
    )
    labels.update(
        KnownLabel.objects.filter(item__project=project, item__split=Split.POOL).values_list("item_id", "label_id")
    )
    return labels
