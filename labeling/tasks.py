"""Celery tasks: thin wrappers that take ids, call one service and save.

Queue by name prefix (see ``CELERY_TASK_ROUTES``): plain names run on ``default``,
``cpu_*`` on the clustering queue, ``gpu_*`` on the training queue.

Every task is idempotent and acknowledged late, declares soft and hard time limits
(``CROWDLOOP_TASK_LIMITS``) and retries on a database that is briefly unreachable. A
project, job or run deleted before or while its task runs is logged and skipped. Runs
whose worker is lost are taken over by :mod:`labeling.services.runs`.
"""
import functools
import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from labeling.models import ImportJob, Project, RunStatus, TrainingRun
from labeling.services.outbox import task_send

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError)


def _task(kind="light", **options):
    """``shared_task`` with this project's defaults: acks_late, the kind's time limits,
    bounded retries with backoff on a transient database error."""
    soft, hard = settings.CROWDLOOP_TASK_LIMITS[kind]
    defaults = dict(
        acks_late=True, reject_on_worker_lost=True, soft_time_limit=soft, time_limit=hard,
        autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=60, retry_jitter=True, max_retries=5,
    )
    return shared_task(**{**defaults, **options})


def _gone(what, ident):
    logger.warning("%s %s no longer exists (its project was deleted?); nothing to do", what, ident)
    return {"gone": str(ident)}


def skip_missing(what):
    """Log and return, instead of failing, when the row a task works on was deleted."""
    def wrap(func):
        @functools.wraps(func)
        def run(ident, *args, **kwargs):
            try:
                return func(ident, *args, **kwargs)
            except (Project.DoesNotExist, ImportJob.DoesNotExist, TrainingRun.DoesNotExist):
                return _gone(what, ident)
        return run
    return wrap


def _check_later(task, run):
    """A run alive on another worker when this delivery came (a redelivery, or the
    reaper's re-enqueue racing it): look again once its heartbeat could have gone stale,
    a few times, instead of acknowledging the task and trusting that worker for ever."""
    if run.status != RunStatus.RUNNING or task.request.retries >= settings.CROWDLOOP_RUN_MAX_ATTEMPTS:
        return
    logger.info("%s %s is alive on %s; looking again later", type(run).__name__, run.pk, run.worker)
    raise task.retry(countdown=settings.CROWDLOOP_HEARTBEAT_TIMEOUT_S + 5, max_retries=None)


@_task("import", bind=True)
def import_job_run_task(self, job_id):
    from labeling.services.jobs import import_job_run

    try:
        job = import_job_run(job_id)
    except ImportJob.DoesNotExist:
        return _gone("import job", job_id)
    _check_later(self, job)
    return {"job": str(job.pk), "status": job.status}


@_task()
@skip_missing("project")
def training_request_task(project_id, config=None, user_id=None):
    """A training run asked for on the dashboard. The request only checks and queues
    this; creating the run takes the project's lock, which on SQLite waits for a
    worker's write, so it happens here. Idempotent: an active run is returned, not doubled."""
    from django.contrib.auth import get_user_model

    from labeling.services.training import TrainingRefused, training_run_create

    project = Project.objects.get(pk=project_id)
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        run = training_run_create(project, config=config, user=user)
    except TrainingRefused as exc:
        return {"project": project_id, "refused": str(exc)}
    return {"project": project_id, "run": str(run.pk), "status": run.status}


@_task()
@skip_missing("project")
def consensus_settle_task(project_id):
    """Settle every item of the project marked by new answers (idempotent)."""
    from labeling.services.settling import consensus_settle

    return {"project": project_id, "settled": consensus_settle(project_id)}


@_task()
def site_counters_task(site_id):
    """Recount a site's issued and passed challenges (idempotent)."""
    from labeling.services.settling import site_counters_recount

    return {"site": site_id, "updated": site_counters_recount(site_id)}


@_task()
@skip_missing("project")
def project_stats_refresh_task(project_id):
    from labeling.services.projects import project_stats_refresh

    stats = project_stats_refresh(Project.objects.get(pk=project_id))
    return {"project": project_id, "items_total": stats.items_total}


@_task("cpu")
@skip_missing("project")
def cpu_project_aggregate_task(project_id):
    from labeling.services.consensus import project_aggregate

    run = project_aggregate(Project.objects.get(pk=project_id))
    return {"project": project_id, "run": run.pk if run else None}


@_task("cpu")
def aggregate_all_task():
    from labeling.services.consensus import projects_aggregate_all

    projects_aggregate_all()


@_task("training", bind=True)
def gpu_training_run_task(self, run_id):
    from labeling.services.audit import audit_after_training
    from labeling.services.semisupervised import pipeline_start
    from labeling.services.training import training_run_execute

    try:
        run = training_run_execute(run_id)
    except TrainingRun.DoesNotExist:
        return _gone("training run", run_id)
    _check_later(self, run)
    project = Project.objects.filter(pk=run.project_id).first()
    if run.status == RunStatus.SUCCEEDED and project is not None:
        pipeline_start(project)  # its predictions feed the next round
        audit_after_training(project)  # the labels it disagrees with go back to people
    return {"run": str(run.pk), "status": run.status}


@_task()
def runs_reap_task():
    """Queue again the runs whose worker was lost (workers also do this on their own)."""
    from labeling.services.runs import runs_reap

    report = runs_reap()
    return {"requeued": len(report.requeued), "failed": len(report.failed)}


@_task("cpu")
@skip_missing("project")
def cpu_semisupervised_task(project_id):
    from labeling.services.loop import round_finished
    from labeling.services.semisupervised import project_semisupervised

    project = Project.objects.get(pk=project_id)
    run = project_semisupervised(project)
    if run is not None and run.status == RunStatus.SUCCEEDED:
        round_finished(project, run.result.get("human_labels", 0))
    return {"project": project_id, "run": run.pk if run else None}


@_task("cpu")
@skip_missing("project")
def cpu_audit_task(project_id):
    from labeling.services.audit import project_audit

    run = project_audit(Project.objects.get(pk=project_id))
    return {"project": project_id, "run": run.pk if run else None}


@_task("cpu")
def semisupervised_all_task():
    from labeling.services.semisupervised import pipeline_start

    for project in Project.objects.filter(items__isnull=False).distinct():
        pipeline_start(project)


@_task()
def stats_refresh_all_task():
    for project_id in Project.objects.values_list("pk", flat=True):
        task_send(project_stats_refresh_task, project_id)
