"""Celery tasks: thin wrappers that take ids, call one service and save.

Queue by name prefix (see ``CELERY_TASK_ROUTES``): plain names run on ``default``,
``cpu_*`` on the clustering queue, ``gpu_*`` on the training queue.
"""
from celery import shared_task

from labeling.models import Project


@shared_task(acks_late=True)
def import_job_run_task(job_id):
    from labeling.services.jobs import import_job_run

    job = import_job_run(job_id)
    return {"job": str(job.pk), "status": job.status}


@shared_task(acks_late=True)
def project_stats_refresh_task(project_id):
    from labeling.services.projects import project_stats_refresh

    stats = project_stats_refresh(Project.objects.get(pk=project_id))
    return {"project": project_id, "items_total": stats.items_total}
