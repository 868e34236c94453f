"""Owners' actions answer at once: starting a round queues it, an export starts streaming
before it reads a label, the runs API answers 202 with a queued run. The work itself
happens in the background and shows its progress (tested where it is done: the
dashboard's live view and the training tests).

Asserted by behaviour (what was queued, which queries ran before the answer), never by
timing; the 200 ms figure is measured by hand with the demo, not here.
"""
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labeling.models import Item, PipelineRun, TrainingRun, Worker
from labeling.services.answers import AnswerInput, answers_record
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner", password="pw")


@pytest.fixture
def project(owner):
    project = project_create(name="Reviews", labels=["pos", "neg"], data_kind="text", owner=owner)
    items = Item.objects.bulk_create(
        [Item(project=project, text=f"text {i}", checksum=f"{i:064d}") for i in range(6)]
    )
    classes = list(project.label_classes.order_by("position"))
    for worker in [Worker.objects.create() for _ in range(3)]:
        inputs = [AnswerInput(item=item, label_id=classes[i % 2].pk, task_ref="t") for i, item in enumerate(items)]
        answers_record(worker=worker, inputs=inputs, source="worker")
    return project


def test_starting_a_round_queues_it_after_commit_and_runs_nothing_in_the_request(
    client, owner, project, monkeypatch, django_capture_on_commit_callbacks
):
    from labeling import tasks

    queued = []
    monkeypatch.setattr(tasks.cpu_semisupervised_task, "delay", lambda *args: queued.append(args))
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(reverse("dashboard:clustering-start", args=[project.slug]))
    assert response.status_code == 302 and response["Location"].endswith("#pipeline")
    assert len(callbacks) == 1 and queued == [(project.pk,)]
    assert not PipelineRun.objects.filter(project=project).exclude(status="queued").exists()


def test_an_export_answers_before_it_reads_a_label(client, owner, project):
    client.force_login(owner)
    with CaptureQueriesContext(connection) as before:
        response = client.get(reverse("project-export", args=[project.slug]), {"format": "csv", "all": "1"})
    assert response.status_code == 200 and response.streaming
    read_before = " ".join(query["sql"] for query in before.captured_queries)
    with CaptureQueriesContext(connection) as during:
        body = b"".join(response.streaming_content).decode()
    assert body.count("\n") == 7  # header + 6 items, read only while streaming
    read_during = " ".join(query["sql"] for query in during.captured_queries)
    items = Item._meta.db_table
    assert f'FROM "{items}"' in read_during and f'FROM "{items}"' not in read_before


def test_the_runs_api_answers_202_with_a_queued_run(owner, project, monkeypatch, django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    from labeling import tasks

    queued = []
    for name in dir(tasks):
        task = getattr(tasks, name)
        if hasattr(task, "delay") and "train" in name:
            monkeypatch.setattr(task, "delay", lambda *args, _name=name: queued.append(_name))
            monkeypatch.setattr(task, "apply_async", lambda *args, _name=name, **kw: queued.append(_name))
    api = APIClient()
    api.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(reverse("api-runs", args=[project.slug]), {"config": {"epochs": 2}}, format="json")
    assert response.status_code == 202, response.content
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.status == "queued" and run.epoch == 0 and queued
