"""Import jobs: an upload is stored, then imported by a Celery worker with progress."""
import logging
from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.files import File
from django.db.models import F

from labeling.models import ImportJob, Project, Split
from labeling.services import runs
from labeling.services.imports import ImportRefused, ImportReport, path_import
from labeling.services.outbox import task_send
from labeling.services.projects import project_stats_refresh

logger = logging.getLogger(__name__)

UPLOAD_SUFFIXES = {".zip", ".csv", ".jsonl", ".ndjson", ".json"}


class UploadRejected(ValueError):
    """An upload refused before it is stored (size, type); ``field`` names the input at
    fault (``file`` or ``split``)."""

    def __init__(self, message: str, *, field: str = "file") -> None:
        super().__init__(message)
        self.field = field


def import_job_create(*, project: Project, upload: File, user: Any = None, split: str = Split.POOL) -> ImportJob:
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


def import_job_run(job_id: UUID | str) -> ImportJob:
    """Run a queued import job, or resume one whose worker was lost: from its committed
    cursor, so that every entry is imported exactly once (the cursor and the report so
    far are written in each batch's transaction, and items are unique by content). A
    finished job, or one alive on another worker, is returned as it is. Raises
    ``ImportJob.DoesNotExist`` for a job deleted with its project."""
    claimed = runs.run_claim(ImportJob, job_id)
    if claimed is None:
        return ImportJob.objects.get(pk=job_id)
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    job.worker = claimed.worker
    resumed = job.cursor > 0
    report = ImportReport.from_dict(job.report) if resumed else None
    ImportJob.objects.filter(pk=job.pk).update(processed=report.processed if report else 0)
    step = max(1, settings.CROWDLOOP_IMPORT_BATCH_SIZE // 4)
    pending = 0

    def progress(n: int) -> None:
        nonlocal pending
        pending += n
        if pending >= step:
            ImportJob.objects.filter(pk=job.pk).update(processed=F("processed") + pending)
            pending = 0

    def on_total(total: int) -> None:
        job.total = total
        ImportJob.objects.filter(pk=job.pk).update(total=total)

    def on_batch(cursor: int, so_far: ImportReport) -> None:
        """In the batch's transaction: raises RunLost (rolling the batch back) when the
        job is no longer this worker's."""
        nonlocal pending
        pending = 0
        runs.run_progress(job, cursor / max(job.total or cursor, 1), f"{cursor} entries imported",
                          cursor=cursor, processed=so_far.processed, report=so_far.as_dict(max_problems=10_000))

    try:
        with runs.run_heartbeating(job):
            report = path_import(
                job.project, job.upload.path, progress=progress, on_total=on_total,
                split=job.split, start=job.cursor, report=report, on_batch=on_batch,
            )
    except runs.RunLost as exc:
        logger.warning("import job %s: %s", job.pk, exc)
    except ImportRefused as exc:
        runs.run_fail(job, str(exc))
    except Exception as exc:
        logger.exception("import job %s failed", job.pk)
        runs.run_fail(job, f"internal error: {type(exc).__name__}: {exc}")
        raise
    else:
        if runs.run_succeed(job, report=report.as_dict(), processed=report.processed, message=""):
            project_stats_refresh(job.project)
    return ImportJob.objects.filter(pk=job_id).first() or job
