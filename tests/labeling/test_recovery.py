"""The run lifecycle: a lost worker's run is taken over, queued again by the reaper and
resumed (an import from its committed cursor, every item exactly once), within a
bounded number of attempts; a task whose project was deleted logs and returns."""
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from labeling.models import ImportJob, Item, KnownLabel, PipelineKind, PipelineRun, RunStatus, TrainingRun
from labeling.services import runs
from labeling.services.jobs import import_job_create, import_job_run
from labeling.services.projects import project_create
from tests.labeling.factories import png_bytes
from tests.labeling.test_api_imports import zip_upload

pytestmark = pytest.mark.django_db
LONG_AGO = timedelta(hours=1)


@pytest.fixture
def project():
    owner = get_user_model().objects.create_user("owner")
    return project_create(name="Runs", labels=["cat", "dog"], owner=owner)


def stale_run(project, **fields):
    return TrainingRun.objects.create(
        project=project, status=RunStatus.RUNNING, attempts=1, worker="gone:1",
        heartbeat_at=timezone.now() - LONG_AGO, **fields,
    )


def test_a_queued_run_is_claimed_once(project):
    run = TrainingRun.objects.create(project=project)
    claimed = runs.run_claim(TrainingRun, run.pk, worker="a:1")
    assert claimed.status == RunStatus.RUNNING and claimed.attempts == 1 and claimed.worker == "a:1"
    assert runs.run_claim(TrainingRun, run.pk, worker="b:2") is None


def test_a_redelivered_task_takes_over_a_run_whose_heartbeat_is_stale(project):
    run = stale_run(project)
    claimed = runs.run_claim(TrainingRun, run.pk, worker="b:2")
    assert claimed is not None and claimed.worker == "b:2" and claimed.attempts == 2


def test_a_run_with_a_live_heartbeat_is_not_taken(project):
    run = TrainingRun.objects.create(
        project=project, status=RunStatus.RUNNING, attempts=1, worker="a:1", heartbeat_at=timezone.now()
    )
    assert runs.run_claim(TrainingRun, run.pk, worker="b:2") is None
    later = timezone.now() + timedelta(seconds=121)
    assert runs.run_claim(TrainingRun, run.pk, worker="b:2", now=later) is not None


def test_finished_runs_are_never_claimed(project):
    for status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        run = TrainingRun.objects.create(project=project, status=status)
        assert runs.run_claim(TrainingRun, run.pk) is None


def test_a_claim_beyond_the_attempt_limit_fails_the_run_with_its_reason(project, settings):
    settings.CROWDLOOP_RUN_MAX_ATTEMPTS = 3
    run = stale_run(project)
    TrainingRun.objects.filter(pk=run.pk).update(attempts=3)
    assert runs.run_claim(TrainingRun, run.pk) is None
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "gave up after 3 attempts" in run.error


def test_the_old_worker_cannot_write_to_a_run_taken_over(project):
    run = stale_run(project)
    old = TrainingRun.objects.get(pk=run.pk)
    runs.run_claim(TrainingRun, run.pk, worker="new:2")
    with pytest.raises(runs.RunLost):
        runs.run_progress(old, 0.5, "epoch 3")
    assert runs.run_succeed(old) is False
    assert not runs.run_heartbeat(old)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.worker == "new:2"


def test_the_reaper_queues_lost_runs_of_every_kind_again_and_enqueues_them(project, monkeypatch):
    sent = []
    monkeypatch.setattr(runs, "run_enqueue", sent.append)
    training = stale_run(project)
    pipeline = PipelineRun.objects.create(
        project=project, kind=PipelineKind.CLUSTER, status=RunStatus.RUNNING, attempts=1,
        heartbeat_at=timezone.now() - LONG_AGO,
    )
    job = ImportJob.objects.create(
        project=project, source_name="x.zip", upload="imports/x.zip", status=RunStatus.RUNNING, attempts=1,
        heartbeat_at=timezone.now() - LONG_AGO,
    )
    alive = TrainingRun.objects.create(project=project, status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    report = runs.runs_reap()
    assert {r.pk for r in report.requeued} == {training.pk, pipeline.pk, job.pk}
    assert {r.pk for r in sent} == {training.pk, pipeline.pk, job.pk}
    for run in (training, pipeline, job):
        run.refresh_from_db()
        assert run.status == RunStatus.QUEUED and "queued again to resume (attempt 2)" in run.message
    alive.refresh_from_db()
    assert alive.status == RunStatus.RUNNING
    assert runs.runs_reap().requeued == []  # a second reaper finds nothing left to do


def test_the_reaper_fails_a_run_that_used_up_its_attempts(project, settings, monkeypatch):
    settings.CROWDLOOP_RUN_MAX_ATTEMPTS = 2
    monkeypatch.setattr(runs, "run_enqueue", lambda run: pytest.fail("a spent run must not be enqueued"))
    run = stale_run(project)
    TrainingRun.objects.filter(pk=run.pk).update(attempts=2)
    report = runs.runs_reap()
    run.refresh_from_db()
    assert [r.pk for r in report.failed] == [run.pk]
    assert run.status == RunStatus.FAILED and "no heartbeat" in run.error and "2 attempts" in run.error


def test_a_reaped_pipeline_run_is_resumed_as_the_same_run(project):
    from labeling.services.pipeline import pipeline_run_start

    run = PipelineRun.objects.create(
        project=project, kind=PipelineKind.AGGREGATE, status=RunStatus.RUNNING, attempts=1,
        heartbeat_at=timezone.now() - LONG_AGO,
    )
    runs.runs_reap(enqueue=False)
    resumed = pipeline_run_start(project, PipelineKind.AGGREGATE)
    assert resumed.pk == run.pk and resumed.attempts == 2 and resumed.status == RunStatus.RUNNING
    assert pipeline_run_start(project, PipelineKind.AGGREGATE) is None  # now alive


class Killed(BaseException):
    """What kill -9 does to the work: it stops mid-batch, no handler runs."""


def test_an_import_killed_mid_way_resumes_from_its_last_batch_with_every_item_once(project, settings, monkeypatch):
    settings.CROWDLOOP_IMPORT_BATCH_SIZE = 10
    members = [(f"{'cat' if i % 2 else 'dog'}/{i}.png", png_bytes(i)) for i in range(45)]
    members.append(("dog/broken.png", b"not an image"))
    job = import_job_create(project=project, upload=zip_upload(members))
    batches = []
    real = runs.run_progress

    def dies_in_the_third_batch(run, *args, **kwargs):
        if isinstance(run, ImportJob) and "cursor" in kwargs:
            batches.append(kwargs["cursor"])
            if len(batches) == 3:
                raise Killed
        return real(run, *args, **kwargs)

    monkeypatch.setattr(runs, "run_progress", dies_in_the_third_batch)
    with pytest.raises(Killed):
        import_job_run(job.pk)
    job.refresh_from_db()
    assert job.status == RunStatus.RUNNING and job.cursor == batches[1]
    assert Item.objects.filter(project=project).count() == 20  # the third batch rolled back

    monkeypatch.setattr(runs, "run_progress", real)
    assert import_job_run(job.pk).status == RunStatus.RUNNING  # alive: a second delivery leaves it
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - LONG_AGO)
    job = import_job_run(job.pk)
    assert job.status == RunStatus.SUCCEEDED, job.error
    assert job.attempts == 2
    assert Item.objects.filter(project=project).count() == 45
    assert Item.objects.filter(project=project).values("checksum").distinct().count() == 45
    assert KnownLabel.objects.filter(item__project=project).count() == 45
    assert (job.report["created"], job.report["problem_count"], job.processed, job.total) == (45, 1, 46, 46)


def test_an_import_resumed_after_its_last_batch_adds_nothing(project, settings):
    settings.CROWDLOOP_IMPORT_BATCH_SIZE = 4
    job = import_job_create(project=project, upload=zip_upload([(f"cat/{i}.png", png_bytes(i)) for i in range(8)]))
    assert import_job_run(job.pk).status == RunStatus.SUCCEEDED
    ImportJob.objects.filter(pk=job.pk).update(status=RunStatus.RUNNING, heartbeat_at=timezone.now() - LONG_AGO)
    job = import_job_run(job.pk)
    assert job.status == RunStatus.SUCCEEDED and job.report["created"] == 8
    assert Item.objects.filter(project=project).count() == 8


def test_tasks_of_a_deleted_project_log_and_return(project, caplog):
    from labeling import tasks

    job = import_job_create(
        project=project, upload=SimpleUploadedFile("a.csv", b"text\nhello\n", content_type="text/csv")
    )
    run = TrainingRun.objects.create(project=project)
    project_id = project.pk
    project.delete()
    assert tasks.import_job_run_task.apply(args=[str(job.pk)]).get() == {"gone": str(job.pk)}
    assert tasks.gpu_training_run_task.apply(args=[str(run.pk)]).get() == {"gone": str(run.pk)}
    for task in (tasks.cpu_semisupervised_task, tasks.cpu_audit_task, tasks.cpu_project_aggregate_task,
                 tasks.project_stats_refresh_task):
        assert task.apply(args=[project_id]).get() == {"gone": str(project_id)}
    assert "no longer exists" in caplog.text


def test_every_task_declares_time_limits_and_acks_late():
    from celery import current_app

    from labeling import tasks  # noqa: F401 (registers them)

    ours = [task for name, task in current_app.tasks.items() if name.startswith("labeling.tasks.")]
    assert len(ours) >= 10
    for task in ours:
        assert task.acks_late and task.soft_time_limit and task.time_limit > task.soft_time_limit, task.name


def test_the_visibility_timeout_outlasts_the_longest_hard_time_limit(settings):
    longest = max(hard for _, hard in settings.CROWDLOOP_TASK_LIMITS.values())
    assert settings.CELERY_VISIBILITY_TIMEOUT_S > longest
    assert settings.CROWDLOOP_HEARTBEAT_TIMEOUT_S < settings.CELERY_VISIBILITY_TIMEOUT_S


def a_dead_local_worker():
    import socket
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}"


def test_a_run_whose_local_worker_process_is_gone_is_taken_over_at_once(project):
    run = TrainingRun.objects.create(
        project=project, status=RunStatus.RUNNING, attempts=1, worker=a_dead_local_worker(), heartbeat_at=timezone.now()
    )
    assert runs.run_claim(TrainingRun, run.pk, worker="b:2").worker == "b:2"


def test_the_reaper_at_start_up_queues_runs_of_dead_local_workers_before_the_timeout(project):
    dead = TrainingRun.objects.create(
        project=project, status=RunStatus.RUNNING, attempts=1, worker=a_dead_local_worker(), heartbeat_at=timezone.now()
    )
    alive = TrainingRun.objects.create(
        project=project, status=RunStatus.RUNNING, attempts=1, worker=runs.worker_id(), heartbeat_at=timezone.now()
    )
    report = runs.runs_reap(enqueue=False)
    assert [r.pk for r in report.requeued] == [dead.pk]
    alive.refresh_from_db()
    assert alive.status == RunStatus.RUNNING


def test_a_delivery_that_finds_its_run_alive_elsewhere_looks_again_a_bounded_number_of_times(
    project, settings, monkeypatch
):
    from labeling import tasks
    from labeling.services import training

    settings.CROWDLOOP_RUN_MAX_ATTEMPTS = 3
    looks = []
    real = training.training_run_execute
    monkeypatch.setattr(training, "training_run_execute", lambda pk: looks.append(pk) or real(pk))
    run = TrainingRun.objects.create(
        project=project, status=RunStatus.RUNNING, attempts=1, worker="other-host:1", heartbeat_at=timezone.now()
    )
    tasks.gpu_training_run_task.apply(args=[str(run.pk)])  # eager: the retries run at once
    assert len(looks) == 1 + 3
    looks.clear()
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    assert tasks.gpu_training_run_task.apply(args=[str(run.pk)]).get()["status"] == RunStatus.SUCCEEDED
    assert len(looks) == 1
