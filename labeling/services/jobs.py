"""Import jobs: an upload is stored, then imported by a Celery worker with progress."""
import logging
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import F
from django.utils import timezone

from labeling.models import ImportJob, RunStatus, Split
from labeling.services.imports import ImportRefused, path_import
from labeling.services.outbox import task_send
from labeling.services.projects import project_stats_refresh

logger = logging.getLogger(__name__)

UPLOAD_SUFFIXES = {".zip", ".csv", ".jsonl", ".ndjson", ".json"}


class UploadRejected(ValueError):
    """An upload refused before it is stored (size, type); ``field`` names the input at
    fault (``file`` or ``split``)."""

    def __init__(self, message, *, field="file"):
        super().__init__(message)
        self.field = field


def import_job_create(*, project, upload, user=None, split=Split.POOL):
    """Store ``upload`` and enqueue its import into ``split`` (the labeling pool, or a
    labeled held-out split); returns the queued :class:`ImportJob`."""
    if split not in Split.values:
        raise UploadRejected(f"split must be one of {', '.join(Split.values)}, got {split!r}", field="split")
    name = Path(upload.name or "").name
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise UploadRejected(f"{name or 'upload'}: upload a .zip of images or a .csv/.jsonl of texts")
    if upload.size > settings.CROWDLOOP_MAX_UPLOAD_BYTES:
        raise UploadRejected(
            f"{name}: {upload.size} bytes, over the upload cap of {settings.CROWDLOOP_MAX_UPLOAD_BYTES}"
        )
    job = ImportJob(project=project, created_by=user, source_name=name[:300], split=split)
    job.upload.save(name, upload, save=False)
    job.save()
    from labeling.tasks import import_job_run_task

    task_send(import_job_run_task, str(job.pk))
    return job


def import_job_run(job_id):
    """Run a queued import job. Idempotent: a finished job is left as it is, and
    re-importing content already in the project adds nothing."""
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    if job.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        return job
    ImportJob.objects.filter(pk=job.pk).update(status=RunStatus.RUNNING, processed=0)
    step = max(1, settings.CROWDLOOP_IMPORT_BATCH_SIZE // 4)
    pending = 0

    def progress(n):
        nonlocal pending
        pending += n
        if pending >= step:
            ImportJob.objects.filter(pk=job.pk).update(processed=F("processed") + pending)
            pending = 0

    def on_total(total):
        ImportJob.objects.filter(pk=job.pk).update(total=total)

    try:
        report = path_import(
            job.project, default_storage.path(job.upload.name), progress=progress, on_total=on_total, split=job.split
        )
    except ImportRefused as exc:
        _finish(job, RunStatus.FAILED, error=str(exc))
    except Exception as exc:
        logger.exception("import job %s failed", job.pk)
        _finish(job, RunStatus.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")
        raise
    else:
        _finish(job, RunStatus.SUCCEEDED, report=report.as_dict(), processed=report.processed)
        project_stats_refresh(job.project)
    job.refresh_from_db()
    return job


def _finish(job, status, **fields):
    ImportJob.objects.filter(pk=job.pk).update(status=status, finished_at=timezone.now(), **fields)
