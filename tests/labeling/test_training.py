import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.models import (
    Item,
    KnownLabel,
    Prediction,
    PseudoLabel,
    RunStatus,
    TrainingRun,
)
from labeling.services.imports import ImportEntry, items_import
from labeling.services.projects import project_create
from labeling.services.training import (
    TrainingRefused,
    _in_validation,
    training_run_create,
    training_runs_reap,
)
from tests.labeling.factories import bar_png

pytestmark = pytest.mark.django_db
TINY = {"epochs": 3, "patience": 3, "width": 8, "batch_size": 16}


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner")


@pytest.fixture
def project(owner):
    project = project_create(name="Bars", labels=["h", "v"], owner=owner, image_size=8)
    entries = [ImportEntry(name=f"{kind}{i}", data=bar_png(kind, i), label=kind) for kind in "hv" for i in range(8)]
    items_import(project, entries)
    return project


def test_a_run_through_celery_records_metrics_predictions_and_an_active_model(
    project, owner, celery_eager, django_capture_on_commit_callbacks
):
    client = APIClient()
    client.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/projects/{project.slug}/runs", {"config": TINY}, format="json")
    assert response.status_code == 202
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.device == "cpu" and 1 <= run.epoch <= 3 and len(run.history) == run.epoch
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(run.history[0])
    assert 0.0 <= run.metrics["accuracy"] <= 1.0 and len(run.metrics["confusion"]) == 2
    assert Prediction.objects.filter(run=run).count() == Item.objects.filter(project=project).count()
    project.refresh_from_db()
    assert project.active_run_id == run.pk

    download = client.get(f"/api/v1/projects/{project.slug}/model")
    assert download.status_code == 200
    import zipfile

    assert set(zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).namelist()) == {"meta.json", "model.pt"}
    from django.core.files.uploadedfile import SimpleUploadedFile

    predicted = client.post(
        f"/api/v1/projects/{project.slug}/predict", {"file": SimpleUploadedFile("x.png", bar_png("v", 3))}, format="multipart"
    )
    assert predicted.status_code == 200
    assert predicted.json()["label"] in {"h", "v"} and abs(sum(predicted.json()["probabilities"].values()) - 1) < 1e-4
    corrupt = client.post(
        f"/api/v1/projects/{project.slug}/predict", {"file": SimpleUploadedFile("x.png", b"nope")}, format="multipart"
    )
    assert corrupt.status_code == 400


def test_validation_holds_human_labels_only(project, celery_eager, django_capture_on_commit_callbacks):
    human = list(KnownLabel.objects.filter(item__project=project).values_list("item_id", flat=True))
    # Turn four gold items into accepted pseudo-labels: they may train, never validate.
    moved = human[:4]
    for item_id in moved:
        known = KnownLabel.objects.get(item_id=item_id)
        PseudoLabel.objects.create(item_id=item_id, label=known.label, confidence=0.9, source="propagation", accepted=True)
        known.delete()
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_create(project, config=TINY)
    run.refresh_from_db()
    remaining = [i for i in human if i not in moved]
    assert run.metrics["val_n"] == sum(_in_validation(i, 0.2) for i in remaining)
    assert run.metrics["pseudo_n"] == 4
    assert run.metrics["train_n"] == len(remaining) - run.metrics["val_n"] + 4


def test_a_run_is_refused_without_enough_human_labels(owner):
    project = project_create(name="Empty", labels=["a", "b"], owner=owner)
    with pytest.raises(TrainingRefused, match="human-verified labels"):
        training_run_create(project)


def test_one_run_per_project_at_a_time(project):
    first = training_run_create(project, config=TINY)
    assert training_run_create(project, config=TINY) == first


def test_a_failing_run_is_marked_failed_with_its_reason(
    project, celery_eager, django_capture_on_commit_callbacks, monkeypatch
):
    import ml.training

    def fit(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(ml.training, "fit", fit)
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_create(project, config=TINY)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "out of memory" in run.error


def test_a_run_whose_worker_vanished_is_reaped(project):
    run = TrainingRun.objects.create(
        project=project, status=RunStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert training_runs_reap() == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "heartbeat" in run.error


def test_unknown_config_keys_are_refused(project):
    with pytest.raises(TrainingRefused, match="unknown config key"):
        training_run_create(project, config={"epochz": 3})


def test_the_active_model_is_compared_on_the_new_runs_validation_set(project):
    """An old run that scored 100 % on its own tiny validation set stays active only if
    it also beats the new run on the new run's validation set."""
    from labeling.services.training import _active_model_choose

    h, v = project.label_classes.all()
    items = list(Item.objects.filter(project=project).order_by("id"))
    validation = {item.pk: item.known_label.label_id for item in items}

    def run_predicting(wrong, accuracy):
        run = TrainingRun.objects.create(project=project, status=RunStatus.SUCCEEDED, metrics={"accuracy": accuracy})
        Prediction.objects.bulk_create(
            [
                Prediction(item=item, run=run, confidence=0.9,
                           label=(v if validation[item.pk] == h.pk else h) if n < wrong else item.known_label.label)
                for n, item in enumerate(items)
            ]
        )
        return run

    old = run_predicting(wrong=8, accuracy=1.0)  # half wrong here, though 100 % on its own set
    project.active_run = old
    project.save(update_fields=["active_run"])
    better = run_predicting(wrong=2, accuracy=0.5)
    _active_model_choose(project, better, validation)
    project.refresh_from_db()
    assert project.active_run_id == better.pk
    assert better.metrics["compared_with"] == {"run": str(old.pk), "its_accuracy": 0.5}

    worse = run_predicting(wrong=12, accuracy=0.99)
    _active_model_choose(project, worse, validation)
    project.refresh_from_db()
    assert project.active_run_id == better.pk
