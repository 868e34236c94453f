"""kill -9 of a Celery worker mid-run: another worker finishes the run on its own (no
beat, no hand action): training from its checkpoint, an import from its last committed
batch with every item exactly once."""
import logging
import time

import pytest
from django.contrib.auth import get_user_model

from labeling.models import ImportJob, Item, KnownLabel, RunStatus, TrainingRun
from labeling.services.imports import ImportEntry, items_import
from labeling.services.jobs import import_job_create
from labeling.services.projects import project_create
from labeling.services.training import training_run_create
from tests.faults.conftest import FAST_RECOVERY, random_png
from tests.faults.procs import nothing_left_running, wait_for
from tests.labeling.test_api_imports import zip_upload

pytestmark = pytest.mark.django_db(transaction=True)
logger = logging.getLogger(__name__)
# Long enough to be killed mid-way on two shared cores, short enough to finish in a minute.
TRAINING = {"model": "cnn", "epochs": 12, "patience": 12, "width": 8, "batch_size": 32}


def status_of(model, pk):
    return model.objects.values_list("status", flat=True).get(pk=pk)


def training_project(n=200, size=8):
    owner = get_user_model().objects.create_user("owner")
    project = project_create(name="Faults", labels=["a", "b"], owner=owner, image_size=size)
    items_import(project, [ImportEntry(name=f"{i}.png", data=random_png(i, size), label="ab"[i % 2]) for i in range(n)])
    return project


def kill_mid_training_and_recover(project, start_worker, first_worker):
    """Queue a run on ``first_worker``, kill -9 it after two epochs, start a second
    worker and wait for the run; returns (run, epoch at the kill, seconds to recover,
    the second worker)."""
    run = training_run_create(project, config=TRAINING)
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).epoch >= 2 or status_of(TrainingRun, run.pk) == RunStatus.FAILED,
             120, interval=0.1, what="two epochs")
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING, run.error
    first_worker.kill9()
    killed_at, epoch_at_kill = time.monotonic(), run.epoch
    second = start_worker()
    finished = {RunStatus.SUCCEEDED, RunStatus.FAILED}
    try:
        wait_for(lambda: status_of(TrainingRun, run.pk) in finished, 120, what="the run after the kill")
    except TimeoutError:
        import subprocess

        run.refresh_from_db()
        ps = subprocess.run(["ps", "-eo", "pid,pgid,stat,etime,args"], capture_output=True, text=True).stdout
        raise AssertionError(
            f"{run.status} {run.attempts} {run.worker} {run.heartbeat_at} {run.message}\n"
            f"{[p for p in ps.splitlines() if 'celery' in p]}\n{first_worker.log()[-3000:]}\n{second.log()[-2000:]}"
        ) from None
    recovery = time.monotonic() - killed_at
    run.refresh_from_db()
    return run, epoch_at_kill, recovery, second


def test_a_training_run_killed_mid_way_finishes_from_its_checkpoint_on_another_worker(
    shared_media, broker, worker_factory
):
    project = training_project()
    start = lambda: worker_factory(queues=("gpu",), env=FAST_RECOVERY).wait_ready()  # noqa: E731
    run, epoch_at_kill, recovery, second = kill_mid_training_and_recover(project, start, start())
    logger.warning("training: killed after epoch %d, finished %.1f s after the kill", epoch_at_kill, recovery)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert recovery < 120
    assert run.attempts == 2 and run.worker.split(":")[1] != ""
    assert f"resuming from epoch {epoch_at_kill}" in second.log() or "resuming from epoch" in second.log()
    assert [row["epoch"] for row in run.history] == list(range(1, run.epoch + 1))
    nothing_left_running()


def test_an_import_killed_mid_way_completes_with_every_item_exactly_once(
    shared_media, broker, worker_factory, settings
):
    settings.CROWDLOOP_IMPORT_BATCH_SIZE = 100
    env = {**FAST_RECOVERY, "CROWDLOOP_IMPORT_BATCH_SIZE": 100}
    owner = get_user_model().objects.create_user("owner")
    project = project_create(name="Import faults", labels=["a", "b"], owner=owner)
    n = 3000
    upload = zip_upload([(f"{'ab'[i % 2]}/{i}.png", random_png(i)) for i in range(n)])
    first = worker_factory(queues=("default",), env=env).wait_ready()
    job = import_job_create(project=project, upload=upload, user=owner)
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).cursor >= 500, 120, interval=0.05, what="500 items imported")
    first.kill9()
    killed_at = time.monotonic()
    job.refresh_from_db()
    assert job.status == RunStatus.RUNNING and job.cursor < n
    cursor_at_kill = job.cursor
    second = worker_factory(queues=("default", "cpu"), env=env).wait_ready()
    wait_for(lambda: status_of(ImportJob, job.pk) in (RunStatus.SUCCEEDED, RunStatus.FAILED), 120,
             what=f"the import after the kill\n{second.log()[-3000:]}")
    recovery = time.monotonic() - killed_at
    logger.warning("import: killed at %d of %d, finished %.1f s after the kill", cursor_at_kill, n, recovery)
    job.refresh_from_db()
    assert job.status == RunStatus.SUCCEEDED, job.error
    assert job.attempts == 2
    items = Item.objects.filter(project=project)
    assert items.count() == n and items.values("checksum").distinct().count() == n
    assert KnownLabel.objects.filter(item__project=project).count() == n
    assert (job.report["created"], job.report["duplicates"], job.report["problem_count"]) == (n, 0, 0)
    assert job.processed == job.total == n
    nothing_left_running()
