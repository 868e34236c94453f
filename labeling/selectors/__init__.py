"""Reads: querysets the views and the API build on. Nothing here writes.

By sub-domain: :mod:`~labeling.selectors.workers` (reputation), :mod:`~labeling.selectors.items`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeAlias
from uuid import UUID

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.http import Http404

from labeling import clock
from labeling.models import (
    Consensus,
    ControlPoolEntry,
    ImportJob,
    Item,
    ItemStatus,
    KnownLabel,
    OwnerToken,
    Prediction,
    Project,
    Site,
    Split,
    TrainingRun,
)

AnyUser: TypeAlias = Any
"""``request.user``: a user, possibly carrying an ``api_token``, or anonymous."""


def projects_managed_by(user: AnyUser) -> QuerySet[Project]:
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


def user_may_create_projects(user: AnyUser) -> bool:
    """Staff, holders of the ``labeling.add_project`` permission and owners of a project
    may create projects; a token scoped to projects may not."""
    if not user.is_authenticated:
        return False
    token = getattr(user, "api_token", None)
    if token is not None and token.scoped:
        return False
    return user.is_staff or user.has_perm("labeling.add_project") or Project.objects.filter(owner=user).exists()


def owner_tokens_of(user: AnyUser) -> QuerySet[OwnerToken]:
    """``user``'s API tokens, newest first, with their projects."""
    return OwnerToken.objects.filter(user=user).prefetch_related("projects")


def project_get_managed(user: AnyUser, slug: str) -> Project:
    project = projects_managed_by(user).filter(slug=slug).select_related("stats").first()
    if project is None:
        raise Http404("No such project")
    return project


def import_job_get_managed(user: AnyUser, job_id: UUID | str) -> ImportJob:
    job = ImportJob.objects.filter(pk=job_id, project__in=projects_managed_by(user)).first()
    if job is None:
        raise Http404("No such import")
    return job


def training_run_get_managed(user: AnyUser, run_id: UUID | str) -> TrainingRun:
    run = TrainingRun.objects.filter(pk=run_id, project__in=projects_managed_by(user)).select_related("project").first()
    if run is None:
        raise Http404("No such training run")
    return run


def human_labels(project: Project) -> dict[int, int]:
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


def control_pool_stats(project: Project, now: datetime | None = None) -> dict[str, int]:
    """The control pool of ``project`` in one query: items in it, those within their
    exposure budget now, those retired (served ``CROWDLOOP_CONTROL_MAX_SERVES`` times, or
    once under a prompt naming a label),
    serves in the current window and serves in all; and the reserve below which the
    widget asks only choice questions."""
    now = now or clock.now()
    current = Q(window_start__gt=now - timedelta(seconds=settings.CROWDLOOP_CONTROL_WINDOW_S))
    retired = Q(served_total__gte=settings.CROWDLOOP_CONTROL_MAX_SERVES) | Q(retired_at__isnull=False)
    spent = current & Q(window_served__gte=settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW)
    row = ControlPoolEntry.objects.filter(project=project).aggregate(
        size=Count("pk"),
        retired=Count("pk", filter=retired),
        available=Count("pk", filter=~retired & ~spent),
        served_window=Sum("window_served", filter=current, default=0),
        served_total=Sum("served_total", default=0),
    )
    row["reserve"] = settings.CROWDLOOP_CONTROL_RESERVE
    return row


def active_model_predictions(project: Project, *, split: str | None = None) -> QuerySet[Prediction]:
    """The stored predictions of ``project``'s active model, one per item, by item id;
    raises :class:`~labeling.services.predictions.PredictionRefused` without a model."""
    from labeling.services.predictions import PredictionRefused

    if project.active_run_id is None:
        raise PredictionRefused("this project has no trained model yet")
    rows = Prediction.objects.filter(run_id=project.active_run_id).select_related("item", "label").order_by("item_id")
    if split:
        rows = rows.filter(item__split=split)
    return rows.only("item_id", "confidence", "item__source_name", "item__split", "label__name")


def sites_managed_by(user: AnyUser) -> QuerySet[Site]:
    """Widget sites ``user`` manages: their own, or all for staff; none through a token
    scoped to projects (a site is not a project)."""
    if not user.is_authenticated:
        return Site.objects.none()
    token = getattr(user, "api_token", None)
    if token is not None and token.scoped:
        return Site.objects.none()
    sites = Site.objects.all() if user.is_staff else Site.objects.filter(owner=user)
    return sites.prefetch_related("projects")


def site_get_managed(user: AnyUser, sitekey: str) -> Site:
    site = sites_managed_by(user).filter(sitekey=sitekey).first()
    if site is None:
        raise Http404("No such site")
    return site


def project_items(project: Project, *, status: str | None = None, split: str | None = None) -> QuerySet[Item]:
    """The project's items with their consensus, gold label and pseudo-label, by id."""
    items = project.items.select_related(
        "consensus__label", "known_label__label", "pseudo_label__label"
    ).order_by("id")
    if status:
        items = items.filter(status=status)
    if split:
        items = items.filter(split=split)
    return items
