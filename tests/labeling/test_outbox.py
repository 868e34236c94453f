"""The outbox: a task is recorded with its job, sent after the commit, and a send the
broker refused is sent later, once, by a flush."""
import io
import socket
import threading
import zipfile

import pytest
from celery import Celery
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from rest_framework.test import APIClient

from labeling import tasks
from labeling.models import ImportJob, Item, OutboxMessage, RunStatus
from labeling.services import outbox
from labeling.services.outbox import outbox_flush, outbox_pending, task_send
from labeling.services.projects import project_create
from tests.labeling.factories import png_bytes
from tests.labeling.outbox_support import broker  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner", password="pw-owner-1")


@pytest.fixture
def project(owner):
    return project_create(name="Pets", labels=["cat", "dog"], owner=owner)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_task_is_sent_only_after_its_transaction_commits(broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        message = task_send(tasks.cpu_audit_task, 7)
        assert OutboxMessage.objects.filter(pk=message.pk, sent_at__isnull=True).exists()
        assert broker.sent == []
    assert broker.args_of(tasks.cpu_audit_task) == [[7]]
    assert OutboxMessage.objects.get(pk=message.pk).sent_at is not None


def test_a_rolled_back_job_sends_nothing(broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                task_send(tasks.cpu_audit_task, 7)
                raise RuntimeError("the job's transaction fails")
        except RuntimeError:
            pass
    assert broker.sent == [] and not OutboxMessage.objects.exists()


def test_a_refused_send_is_kept_and_a_flush_sends_it_exactly_once(broker, django_capture_on_commit_callbacks):
    broker.down = True
    with django_capture_on_commit_callbacks(execute=True):
        message = task_send(tasks.cpu_audit_task, 8)
    message.refresh_from_db()
    assert message.sent_at is None and message.attempts == 1 and "broker down" in message.last_error
    assert outbox_flush() == (0, 1)  # still down: kept, nothing lost
    assert outbox_pending()[0] == 1
    broker.down = False
    assert outbox_flush() == (1, 0)
    assert outbox_flush() == (0, 0)
    assert broker.args_of(tasks.cpu_audit_task) == [[8]]


def test_a_flush_never_sends_what_another_flush_is_sending(broker, django_capture_on_commit_callbacks):
    broker.down = True
    with django_capture_on_commit_callbacks(execute=True):
        task_send(tasks.cpu_audit_task, 9)
    broker.down = False
    inner = []
    send = broker.send_task

    def send_while_another_flush_runs(name, **options):
        inner.append(outbox_flush())  # a second worker's flush, while this one sends
        send(name, **options)

    broker.send_task = send_while_another_flush_runs
    from labeling.celery import app

    app.send_task = broker.send_task
    assert outbox_flush() == (1, 0)
    assert inner == [(0, 1)] and broker.args_of  # it saw the message unsent, and left it(tasks.cpu_audit_task) == [[9]]


def test_a_fresh_message_is_left_to_the_process_that_wrote_it(broker):
    OutboxMessage.objects.create(task=tasks.cpu_audit_task.name, args=[1], available_at=outbox._now()
                                 + outbox.timedelta(seconds=outbox.GRACE_S))
    assert outbox_flush() == (0, 1) and broker.sent == []


def test_an_unreachable_redis_broker_is_refused_fast_and_the_message_kept(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    """A real kombu producer against a closed port: the send fails, the request goes on."""
    unreachable = Celery("unreachable", broker=f"redis://127.0.0.1:{closed_port()}/0", set_as_current=False)
    unreachable.conf.broker_connection_timeout = 1
    unreachable.conf.broker_transport_options = settings.REDIS_BROKER_TRANSPORT_OPTIONS
    monkeypatch.setattr("labeling.celery.app", unreachable)
    with django_capture_on_commit_callbacks(execute=True):
        message = task_send(tasks.cpu_audit_task, 10)
    message.refresh_from_db()
    assert message.sent_at is None and message.attempts == 1 and message.last_error


def test_eager_mode_records_nothing_and_runs_the_task_after_commit(
    project, celery_eager, monkeypatch, django_capture_on_commit_callbacks
):
    ran = []
    monkeypatch.setattr("labeling.services.audit.project_audit", lambda project: ran.append(project.pk))
    with django_capture_on_commit_callbacks(execute=True):
        assert task_send(tasks.cpu_audit_task, project.pk) is None
        assert ran == []
    assert ran == [project.pk] and not OutboxMessage.objects.exists()


def zip_upload():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cat/a.png", png_bytes(1))
        archive.writestr("dog/b.png", png_bytes(2))
    return SimpleUploadedFile("pets.zip", buffer.getvalue(), content_type="application/zip")


def test_an_import_posted_while_the_broker_is_down_runs_once_it_is_back(
    project, owner, broker, django_capture_on_commit_callbacks
):
    broker.down = True
    client = APIClient()
    client.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/projects/{project.slug}/imports", {"file": zip_upload()}, format="multipart")
    assert response.status_code == 202
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == RunStatus.QUEUED and broker.sent == []
    broker.down = False
    assert outbox_flush() == (1, 0)
    (job_id,) = broker.args_of(tasks.import_job_run_task)[0]
    assert job_id == str(job.pk)
    # Delivered twice (sent, then the sender died before marking it): one import.
    tasks.import_job_run_task(job_id)
    tasks.import_job_run_task(job_id)
    job.refresh_from_db()
    assert job.status == RunStatus.SUCCEEDED and job.report["created"] == 2
    assert Item.objects.filter(project=project).count() == 2


def test_a_training_run_delivered_twice_trains_once(project, broker, monkeypatch, django_capture_on_commit_callbacks):
    from labeling.models import TrainingRun
    from labeling.services import training

    executed = []
    monkeypatch.setattr(training, "_execute", lambda run: executed.append(run.pk) or _succeed(run))
    monkeypatch.setattr("labeling.services.semisupervised.pipeline_start", lambda project: None)
    monkeypatch.setattr("labeling.services.audit.audit_after_training", lambda project: None)
    run = TrainingRun.objects.create(project=project, n_epochs=1)
    tasks.gpu_training_run_task(str(run.pk))
    tasks.gpu_training_run_task(str(run.pk))
    assert executed == [run.pk]


def _succeed(run):
    from labeling.models import TrainingRun

    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    run.refresh_from_db()
    return run


@pytest.mark.django_db(transaction=True)
def test_a_worker_flushes_at_start_and_then_periodically(broker):
    sent = threading.Event()
    send = broker.send_task

    def record(name, **options):
        send(name, **options)
        sent.set()

    from labeling.celery import app

    app.send_task = record
    broker.down = True
    task_send(tasks.cpu_audit_task, 11)  # autocommit: recorded, refused at once
    assert broker.sent == []
    broker.down = False
    flusher = outbox.worker_flusher_start(every_s=0.05)
    try:
        assert sent.wait(timeout=30), "the worker's flush did not send the message"
    finally:
        outbox.worker_flusher_stop()
    assert not flusher.is_alive()
    assert broker.args_of(tasks.cpu_audit_task) == [[11]]
    assert OutboxMessage.objects.get().sent_at is not None
