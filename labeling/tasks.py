"""Celery tasks: thin wrappers that take ids, call one service and save.

Queue by name prefix (see ``CELERY_TASK_ROUTES``): plain names run on ``default``,
``cpu_*`` on the clustering queue, ``gpu_*`` on the training queue.
"""
from celery import shared_task

from labeling.models import Project, RunStatus
from labeling.services.outbox import task_send


@shared_task(acks_late=True)
def import_job_run_task(job_id):
    from labeling.services.jobs import import_job_run

    job = import_job_run(job_id)
    return {"job": str(job.pk), "status": job.status}


@shared_task(acks_late=True)
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


@shared_task(acks_late=True)
def consensus_settle_task(project_id):
    """Settle every item of the project marked by new answers (idempotent)."""
    from labeling.services.settling import consensus_settle

    return {"project": project_id, "settled": consensus_settle(project_id)}


@shared_task(acks_late=True)
def site_counters_task(site_id):
    """Recount a site's issued and passed challenges (idempotent)."""
    from labeling.services.settling import site_counters_recount

    return {"site": site_id, "updated": site_counters_recount(site_id)}


@shared_task(acks_late=True)
def project_stats_refresh_task(project_id):
    from labeling.services.projects import project_stats_refresh

    stats = project_stats_refresh(Project.objects.get(pk=project_id))
    return {"project": project_id, "items_total": stats.items_total}


@shared_task(acks_late=True)
def cpu_project_aggregate_task(project_id):
    from labeling.services.consensus import project_aggregate

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "run": None}
    run = project_aggregate(project)
    return {"project": project_id, "run": run.pk if run else None}


@shared_task
def aggregate_all_task():
    from labeling.services.consensus import projects_aggregate_all

    projects_aggregate_all()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def gpu_training_run_task(run_id):
    from labeling.services.audit import audit_after_training
    from labeling.services.semisupervised import pipeline_start
    from labeling.services.training import training_run_execute

    run = training_run_execute(run_id)
    if run.status == RunStatus.SUCCEEDED:
        pipeline_start(run.project)  # its predictions feed the next round
        audit_after_training(run.project)  # the labels it disagrees with go back to people
    return {"run": str(run.pk), "status": run.status}


@shared_task
def training_runs_reap_task():
    from labeling.services.training import training_runs_reap

    return training_runs_reap()


@shared_task(acks_late=True)
def cpu_semisupervised_task(project_id):
    from labeling.services.loop import round_finished
    from labeling.services.semisupervised import project_semisupervised

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "run": None}
    run = project_semisupervised(project)
    if run is not None and run.status == RunStatus.SUCCEEDED:
        round_finished(project, run.result.get("human_labels", 0))
    return {"project": project_id, "run": run.pk if run else None}


@shared_task(acks_late=True)
def cpu_audit_task(project_id):
    from labeling.services.audit import project_audit

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"project": project_id, "run": None}
    run = project_audit(project)
    return {"project": project_id, "run": run.pk if run else None}


@shared_task
def semisupervised_all_task():
    from labeling.services.semisupervised import pipeline_start

    for project in Project.objects.filter(items__isnull=False).distinct():
        pipeline_start(project)


@shared_task
def stats_refresh_all_task():
    for project_id in Project.objects.values_list("pk", flat=True):
        task_send(project_stats_refresh_task, project_id)
