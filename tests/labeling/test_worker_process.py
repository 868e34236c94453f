"""A real Celery worker, in its own process, sees a task through on the embedded
broker (filesystem) and on Redis, against the test database."""
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.db import connection

from labeling.models import ProjectStats
from labeling.services.projects import project_create

ROOT = Path(__file__).resolve().parents[2]


def database_url():
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    if connection.vendor == "postgresql":
        auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "") + "@" if s["USER"] else ""
        return f"postgres://{auth}{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"
    pytest.skip(f"no worker test for {connection.vendor}")


def run_task_in_worker(tmp_path, broker_url, transport_options, project_id):
    queue = f"test-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CELERY_RESULT_BACKEND"}}
    env.update(
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=broker_url,
        CROWDLOOP_DATA_DIR=str(tmp_path / "worker-data"),
        DJANGO_SETTINGS_MODULE="labeling.settings",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "labeling", "worker", "-Q", queue, "-c", "1", "-P", "solo",
         "-n", f"{queue}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    sender = Celery(broker=broker_url, set_as_current=False)  # else later tests send through it
    sender.conf.broker_transport_options = transport_options
    try:
        sender.send_task("labeling.tasks.project_stats_refresh_task", args=[project_id], queue=queue)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if ProjectStats.objects.filter(project_id=project_id).exists():
                return ProjectStats.objects.get(project_id=project_id)
            if worker.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("the worker did not run the task:\n" + _output(worker))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        sender.close()


def _output(worker):
    worker.terminate()
    out, _ = worker.communicate(timeout=30)
    return out


@pytest.mark.django_db(transaction=True)
def test_a_worker_process_runs_a_task_over_the_embedded_filesystem_broker(tmp_path):
    project = project_create(name="Worker test", labels=["a", "b"])
    folder = tmp_path / "worker-data" / "broker" / "queue"
    folder.mkdir(parents=True)
    control = tmp_path / "worker-data" / "broker" / "control"
    control.mkdir(parents=True)
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(control)}
    stats = run_task_in_worker(tmp_path, "filesystem://", options, project.pk)
    assert stats.items_total == 0 and stats.items_by_status == {}


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_worker_process_runs_a_task_over_redis(tmp_path, redis_url):
    project = project_create(name="Worker test", labels=["a", "b"])
    stats = run_task_in_worker(tmp_path, redis_url, {}, project.pk)
    assert stats.project_id == project.pk
