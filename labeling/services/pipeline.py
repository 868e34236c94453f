"""Background runs of the loop (truth inference, features, clustering): at most one
running per project and kind, with progress, a heartbeat, and an outcome that is never
left "running" for ever."""
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from labeling.models import PipelineRun, Project, RunStatus

logger = logging.getLogger(__name__)


def _now():
    return timezone.now()


def heartbeat_timeout():
    return timedelta(seconds=getattr(settings, "CROWDLOOP_HEARTBEAT_TIMEOUT_S", 300))


def pipeline_run_start(project, kind, *, now=None):
    """Start a run of ``kind`` for ``project``, or return ``None`` when one is already
    running with a live heartbeat. A running one whose heartbeat stopped is marked failed."""
    now = now or _now()
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        running = PipelineRun.objects.filter(project=project, kind=kind, status=RunStatus.RUNNING)
        for run in running:
            if run.heartbeat_at and now - run.heartbeat_at < heartbeat_timeout():
                return None
            run.status = RunStatus.FAILED
            run.error = "worker lost: no heartbeat"
            run.finished_at = now
            run.save(update_fields=["status", "error", "finished_at"])
        return PipelineRun.objects.create(
            project=project, kind=kind, status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
        )


def pipeline_run_progress(run, progress, message=""):
    run.progress = min(max(float(progress), 0.0), 1.0)
    run.message = message[:300]
    run.heartbeat_at = _now()
    PipelineRun.objects.filter(pk=run.pk).update(
        progress=run.progress, message=run.message, heartbeat_at=run.heartbeat_at
    )


def pipeline_run_finish(run, *, result=None, state=None):
    run.status = RunStatus.SUCCEEDED
    run.progress = 1.0
    run.result = result or {}
    run.state = state or {}
    run.finished_at = _now()
    run.save(update_fields=["status", "progress", "result", "state", "finished_at"])
    return run


def pipeline_run_fail(run, error):
    run.status = RunStatus.FAILED
    run.error = str(error)[:5000]
    run.finished_at = _now()
    run.save(update_fields=["status", "error", "finished_at"])
    logger.warning("%s run %s of project %s failed: %s", run.kind, run.pk, run.project_id, error)
    return run


def pipeline_run_latest(project, kind, status=RunStatus.SUCCEEDED):
    return PipelineRun.objects.filter(project=project, kind=kind, status=status).order_by("-created_at").first()
