"""Background runs of the loop (truth inference, features, clustering): at most one
running per project and kind, with progress, a heartbeat, and an outcome that is never
left "running" for ever. The lifecycle is :mod:`labeling.services.runs`'s; this module
only knows that a pipeline run is one per project and kind."""
import logging
from datetime import datetime
from typing import Any

from django.db import transaction

from labeling.models import PipelineRun, Project, RunStatus
from labeling.services import runs

logger = logging.getLogger(__name__)


def pipeline_run_start(project: Project, kind: str, *, now: datetime | None = None) -> PipelineRun | None:
    """Take the run of ``kind`` for ``project``: the one queued for it (a run put back
    by the reaper after its worker was lost, counted as a new attempt) or a stale one,
    else a new one. Returns ``None`` when one is already running with a live heartbeat,
    or when the waiting one used up its attempts (it is then failed)."""
    now = now or runs._now()
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        active = PipelineRun.objects.filter(
            project=project, kind=kind, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)
        ).order_by("created_at")
        waiting = False
        for run in active:
            claimed = runs.run_claim(PipelineRun, run.pk, now=now)
            if claimed is not None:
                return claimed
            run.refresh_from_db(fields=["status"])
            waiting = waiting or run.status == RunStatus.RUNNING
        if waiting:
            return None
        return runs.run_start(PipelineRun, now=now, project=project, kind=kind)


def pipeline_run_progress(run: PipelineRun, progress: float, message: str = "") -> None:
    runs.run_progress(run, progress, message)


def pipeline_run_finish(
    run: PipelineRun, *, result: dict[str, Any] | None = None, state: dict[str, Any] | None = None
) -> PipelineRun:
    runs.run_succeed(run, result=result or {}, state=state or {})
    return run


def pipeline_run_fail(run: PipelineRun, error: object) -> PipelineRun:
    return runs.run_fail(run, error)


def pipeline_run_latest(project: Project, kind: str, status: str = RunStatus.SUCCEEDED) -> PipelineRun | None:
    return PipelineRun.objects.filter(project=project, kind=kind, status=status).order_by("-created_at").first()
