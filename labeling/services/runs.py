"""One lifecycle for every background run (imports, pipeline rounds, training runs).

A run is *claimable* when it is queued, or running with a heartbeat older than
``CROWDLOOP_HEARTBEAT_TIMEOUT_S`` (its worker died: kill -9, a lost host, an OOM kill).
:func:`run_claim` takes it by one conditional ``UPDATE``, so that of two deliveries of
the same task exactly one runs it, and a redelivered task takes over a stale run instead
of leaving it to a dead worker. While the work runs, :func:`run_heartbeating` keeps the
heartbeat fresh from a thread of its own, so that a long epoch or a large batch never
looks dead. :func:`runs_reap`, run by every Celery worker at start-up and on a timer
(``labeling.celery``), puts stale runs back in the queue and enqueues them again, up to
``CROWDLOOP_RUN_MAX_ATTEMPTS`` claims; after that the run fails with a clear error. The
work itself resumes: training from its checkpoint, an import from its committed cursor.
"""
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Coalesce

from labeling import clock
from labeling.models import BackgroundRun, ImportJob, PipelineKind, PipelineRun, RunStatus, TrainingRun

logger = logging.getLogger(__name__)

FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)
AnyRun = TypeVar("AnyRun", bound=BackgroundRun)
RUN_MODELS = (ImportJob, PipelineRun, TrainingRun)


class RunLost(Exception):
    """The run is no longer held by this worker (taken over after a stale heartbeat,
    finished elsewhere, or deleted with its project): stop working on it quietly."""


def _now() -> datetime:
    return clock.now()


def heartbeat_timeout() -> timedelta:
    return timedelta(seconds=settings.CROWDLOOP_HEARTBEAT_TIMEOUT_S)


def heartbeat_interval() -> float:
    """How often a working run beats: a quarter of the timeout unless set."""
    return settings.CROWDLOOP_HEARTBEAT_INTERVAL_S or settings.CROWDLOOP_HEARTBEAT_TIMEOUT_S / 4


def worker_id() -> str:
    """This process, as recorded on the runs it holds: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_dead(worker: str) -> bool:
    """Whether ``worker`` (``host:pid``) was a process of this host that no longer
    exists: its runs need not wait for the heartbeat timeout (a pool process killed
    under a living worker, or a worker restarted after kill -9)."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _claimable(now: datetime) -> Q:
    limit = now - heartbeat_timeout()
    stale = Q(status=RunStatus.RUNNING) & (Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True))
    return Q(status=RunStatus.QUEUED) | stale


def run_claim(model: type[AnyRun], pk: Any, *, now: datetime | None = None, worker: str | None = None) -> AnyRun | None:
    """Take run ``pk`` of ``model`` for this worker when it is claimable; returns the
    run (status running, attempts counted) or ``None`` when it is finished, missing, or
    alive on another worker. A claim beyond ``CROWDLOOP_RUN_MAX_ATTEMPTS`` fails the run
    instead and returns ``None``."""
    now = now or _now()
    worker = worker or worker_id()
    claim = dict(
        status=RunStatus.RUNNING, heartbeat_at=now, worker=worker, attempts=F("attempts") + 1,
        started_at=Coalesce("started_at", Value(now)), finished_at=None, error="",
    )
    taken = model._default_manager.filter(_claimable(now), pk=pk).update(**claim)
    if not taken:
        held = model._default_manager.filter(pk=pk, status=RunStatus.RUNNING).values("worker", "heartbeat_at").first()
        if held is None or not worker_dead(held["worker"]):
            return None
        taken = model._default_manager.filter(pk=pk, status=RunStatus.RUNNING, **held).update(**claim)
        if not taken:
            return None
    run = model._default_manager.get(pk=pk)
    if run.attempts > settings.CROWDLOOP_RUN_MAX_ATTEMPTS:
        run_fail(run, f"gave up after {run.attempts - 1} attempts: its worker was lost each time "
                      "(killed, out of memory, or past the time limit)")
        return None
    if run.attempts > 1:
        logger.info("%s %s taken over by %s (attempt %d)", model.__name__, pk, worker, run.attempts)
    return run


def run_start(model: type[AnyRun], *, now: datetime | None = None, **fields: Any) -> AnyRun:
    """Create a run of ``model`` already held by this worker (a step started in place,
    with no queued row before it)."""
    now = now or _now()
    return model._default_manager.create(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, worker=worker_id(), attempts=1, **fields
    )


def _held(run: BackgroundRun) -> QuerySet:
    return type(run)._default_manager.filter(pk=run.pk, status=RunStatus.RUNNING, worker=run.worker)


def run_heartbeat(run: BackgroundRun, *, now: datetime | None = None) -> bool:
    """Refresh the heartbeat of a run this worker holds; ``False`` when it is no
    longer held (taken over, finished, or deleted)."""
    run.heartbeat_at = now or _now()
    return bool(_held(run).update(heartbeat_at=run.heartbeat_at))


def run_progress(run: BackgroundRun, progress: float | None = None, message: str | None = None, **fields: Any) -> None:
    """Record progress (a share in [0, 1]), a message and any other fields of the
    run's own, with a heartbeat. Raises :class:`RunLost` when the run is no longer
    this worker's: the caller stops, and whoever holds it now carries on."""
    values = {"heartbeat_at": _now(), **fields}
    if progress is not None:
        values["progress"] = min(max(float(progress), 0.0), 1.0)
    if message is not None:
        values["message"] = str(message)[:300]
    if not _held(run).update(**values):
        raise RunLost(f"{type(run).__name__} {run.pk} is no longer held by {run.worker}")
    for name, value in values.items():
        setattr(run, name, value)


def run_succeed(run: BackgroundRun, **fields: Any) -> bool:
    """Mark the run succeeded with ``fields`` saved alongside; ``False`` when it was
    no longer this worker's (its outcome then belongs to whoever took it over)."""
    values = {"status": RunStatus.SUCCEEDED, "progress": 1.0, "finished_at": _now(), "error": "", **fields}
    done = bool(_held(run).update(**values))
    if done:
        for name, value in values.items():
            setattr(run, name, value)
    return done


def run_fail(run: AnyRun, error: object, **fields: Any) -> AnyRun:
    """Mark the run failed with ``error`` (a reason a person can read). Never raises
    for a run deleted meanwhile."""
    values = {"status": RunStatus.FAILED, "error": str(error)[:5000], "finished_at": _now(), **fields}
    type(run)._default_manager.filter(pk=run.pk).exclude(status__in=FINISHED).update(**values)
    for name, value in values.items():
        setattr(run, name, value)
    logger.warning("%s %s failed: %s", type(run).__name__, run.pk, error)
    return run


@contextmanager
def run_heartbeating(run: AnyRun, interval: float | None = None) -> Iterator[AnyRun]:
    """Keep ``run``'s heartbeat fresh from a background thread while the body runs
    (long epochs, slow batches). The thread stops at exit; it stops early when the run
    is no longer held, and the body learns that from :func:`run_progress`."""
    interval = heartbeat_interval() if interval is None else interval
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    if not run_heartbeat(run):
                        return
                except Exception:  # the database may be restarting: the next beat retries
                    logger.warning("heartbeat of %s %s failed", type(run).__name__, run.pk, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{run.pk}", daemon=True)
    thread.start()
    try:
        yield run
    finally:
        stop.set()
        thread.join(timeout=max(interval, 5))


@dataclass
class ReapReport:
    """The runs one reaping put back in the queue, and those it failed for good."""

    requeued: list[BackgroundRun] = field(default_factory=list)
    failed: list[BackgroundRun] = field(default_factory=list)


def runs_reap(*, now: datetime | None = None, enqueue: bool = True) -> "ReapReport":
    """Put every running run whose heartbeat is older than the timeout (or whose worker
    was a process of this host that is gone) back in the queue and enqueue its task
    again (``enqueue=False`` leaves that to the caller), or fail it once it used up
    ``CROWDLOOP_RUN_MAX_ATTEMPTS``. Safe to run from many workers at once: each run is
    moved by one conditional update."""
    now = now or _now()
    limit = now - heartbeat_timeout()
    report = ReapReport()
    for model in RUN_MODELS:
        running = model._default_manager.filter(status=RunStatus.RUNNING)
        stale = list(running.filter(Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True)))
        local = running.filter(worker__startswith=f"{socket.gethostname()}:").exclude(pk__in=[r.pk for r in stale])
        stale += [run for run in local if worker_dead(run.worker)]
        for run in stale:
            same = model._default_manager.filter(pk=run.pk, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at)
            if run.attempts >= settings.CROWDLOOP_RUN_MAX_ATTEMPTS:
                error = (f"worker lost: no heartbeat for {settings.CROWDLOOP_HEARTBEAT_TIMEOUT_S} s on each of "
                         f"{run.attempts} attempts; gave up")
                if same.update(status=RunStatus.FAILED, error=error, finished_at=now):
                    report.failed.append(run)
                    logger.warning("%s %s failed: %s", model.__name__, run.pk, error)
                continue
            message = f"worker {run.worker or '?'} lost; queued again to resume (attempt {run.attempts + 1})"
            if same.update(status=RunStatus.QUEUED, message=message[:300]):
                report.requeued.append(run)
                logger.warning("%s %s: %s", model.__name__, run.pk, message)
                if enqueue:
                    run_enqueue(run)
    return report


def run_enqueue(run: BackgroundRun) -> None:
    """Send the task that runs (or resumes) ``run``, through the outbox."""
    from labeling import tasks
    from labeling.services.outbox import task_send

    if isinstance(run, ImportJob):
        task_send(tasks.import_job_run_task, str(run.pk))
    elif isinstance(run, TrainingRun):
        task_send(tasks.gpu_training_run_task, str(run.pk))
    elif isinstance(run, PipelineRun):
        task = {
            PipelineKind.AGGREGATE: tasks.cpu_project_aggregate_task,
            PipelineKind.CLUSTER: tasks.cpu_semisupervised_task,
            PipelineKind.AUDIT: tasks.cpu_audit_task,
        }.get(PipelineKind(run.kind))
        if task is None:
            run_fail(run, f"worker lost, and a {run.kind} run is not resumed on its own")
        else:
            task_send(task, run.project_id)
