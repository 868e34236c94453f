import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.bridge import in_validation
from labeling.models import (
    Item,
    KnownLabel,
    Prediction,
    PseudoLabel,
    RunStatus,
    TrainingRun,
)
from labeling.services.imports import ImportEntry, items_import
from labeling.services.modeling import promotion_decide
from labeling.services.projects import project_create
from labeling.services.training import (
    TrainingRefused,
    training_run_create,
)
from ml.model_selection import wilson_interval
from tests.labeling.factories import bar_png

pytestmark = pytest.mark.django_db
TINY = {"epochs": 3, "patience": 3, "width": 8, "batch_size": 16}
PINNED_CNN = {**TINY, "model": "cnn"}


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner")


@pytest.fixture
def project(owner):
    project = project_create(name="Bars", labels=["h", "v"], owner=owner, image_size=8)
    # 40 per class: the CNN competes on the human labels whose id hashes into the 20 %
    # validation share, and it must hold at least 5 whatever ids the database gives.
    entries = [ImportEntry(name=f"{kind}{i}", data=bar_png(kind, i), label=kind) for kind in "hv" for i in range(40)]
    items_import(project, entries)
    return project


def test_a_run_through_celery_records_metrics_predictions_and_an_active_model(
    project, owner, celery_eager, django_capture_on_commit_callbacks, settings, monkeypatch
):
    import ml.training

    checkpoints = []
    real_fit = ml.training.fit

    def fit_recording(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        checkpoints.extend(sorted(Path(kwargs["checkpoint_dir"]).iterdir()))
        return result

    monkeypatch.setattr(ml.training, "fit", fit_recording)
    client = APIClient()
    client.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/projects/{project.slug}/runs", {"config": PINNED_CNN}, format="json")
    assert response.status_code == 202
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.status == RunStatus.SUCCEEDED, run.error
    # Resumable checkpoints on the shared media storage while the run lasts (a worker on
    # another host resumes from them), deleted once it succeeded and its model is saved.
    assert checkpoints and all(path.is_relative_to(Path(settings.MEDIA_ROOT)) for path in checkpoints)
    assert not any(path.exists() for path in checkpoints)
    assert run.artifact and Path(run.artifact.path).exists()
    assert run.metrics["kind"] == "cnn", run.metrics
    assert run.device == "cpu" and 1 <= run.epoch <= 3 and len(run.history) == run.epoch
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(run.history[0])
    assert set(run.metrics["candidates"]) == {"spreading", "knn", "logreg"}
    assert run.metrics["estimate"]["method"] == "validation" and run.metrics["estimate"]["n"] >= 5
    assert set(run.metrics["cnn"]) >= {"accuracy", "teacher_accuracy", "val_n"}
    assert Prediction.objects.filter(run=run).count() == Item.objects.filter(project=project).count()
    project.refresh_from_db()
    assert (project.active_run_id == run.pk) == run.metrics["promotion"]["promoted"]
    project.active_run = run  # promotion has tests of its own; here the CNN is served
    project.save(update_fields=["active_run"])

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


def test_the_cnn_is_validated_on_human_labels_it_never_trained_on(project, celery_eager, django_capture_on_commit_callbacks):
    human = list(KnownLabel.objects.filter(item__project=project).values_list("item_id", flat=True))
    # Turn four gold items into accepted pseudo-labels: never validation items.
    moved = human[:4]
    for item_id in moved:
        known = KnownLabel.objects.get(item_id=item_id)
        PseudoLabel.objects.create(item_id=item_id, label=known.label, confidence=0.9, source="propagation", accepted=True)
        known.delete()
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_create(project, config=TINY)
    run.refresh_from_db()
    remaining = [i for i in human if i not in moved]
    validation = {i for i in remaining if in_validation(i, 0.2)}
    assert run.metrics["cnn"]["val_n"] == len(validation)
    out_of_sample = {int(i) for i in run.metrics["oof"]}
    assert out_of_sample <= set(remaining) and not out_of_sample & set(moved)
    if run.metrics["kind"] == "cnn":
        assert out_of_sample == validation
    assert run.metrics["human_labels"] == len(remaining)


def test_with_a_few_labels_a_cheap_candidate_is_the_model(owner, celery_eager, django_capture_on_commit_callbacks):
    """No label-count gate: three labels per class give a cross-validated model that
    labels every item, with no CNN."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = {k: [i for i in range(300) if digits.target[i] == int(k)][:13] for k in "01"}
    project = project_create(name="Few", labels=["0", "1"], owner=owner, image_size=8)
    items_import(project, [ImportEntry(name=f"{k}{i}", data=digit_png(digits.images[r]), label=k)
                           for k in "01" for i, r in enumerate(rows[k][:3])])
    items_import(project, [ImportEntry(name=f"u{k}{i}", data=digit_png(digits.images[r]))
                           for k in "01" for i, r in enumerate(rows[k][3:])])
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_create(project, config=TINY)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.metrics["kind"] in {"spreading", "knn", "logreg"} and "cnn" not in run.metrics
    assert run.metrics["estimate"]["method"] == "cross-validation" and run.metrics["estimate"]["n"] == 6
    assert not run.artifact
    truth = {item.pk: item.source_name[1] for item in Item.objects.filter(project=project, source_name__startswith="u")}
    predicted = dict(Prediction.objects.filter(run=run).values_list("item_id", "label__name"))
    assert sum(predicted[i] == label for i, label in truth.items()) >= 18

    with django_capture_on_commit_callbacks(execute=True):
        pinned = training_run_create(project, config=PINNED_CNN)
    pinned.refresh_from_db()
    assert pinned.status == RunStatus.SUCCEEDED, pinned.error
    assert pinned.metrics["kind"] != "cnn" and not pinned.artifact
    assert "fewer than 5 human labels fall in the validation share" in pinned.metrics["cnn"]["skipped"], (
        "a pinned CNN that cannot be measured says so instead of silently training another model"
    )


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


def test_a_run_whose_worker_vanished_is_queued_again_by_the_reaper(project):
    from labeling.services.runs import runs_reap

    run = TrainingRun.objects.create(
        project=project, status=RunStatus.RUNNING, attempts=1, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    report = runs_reap(enqueue=False)
    run.refresh_from_db()
    assert [r.pk for r in report.requeued] == [run.pk]
    assert run.status == RunStatus.QUEUED and "lost" in run.message


def test_unknown_config_keys_are_refused(project):
    with pytest.raises(TrainingRefused, match="unknown config key"):
        training_run_create(project, config={"epochz": 3})


def digit_png(pixels):
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((255 - pixels * 15).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _scored_run(project, *, correct, n, baseline=0.5, oof=None):
    low, high = wilson_interval(correct, n)
    return TrainingRun.objects.create(
        project=project, status=RunStatus.SUCCEEDED,
        metrics={"estimate": {"accuracy": correct / n, "n": n, "low": low, "high": high}, "baseline": baseline,
                 "oof": oof or {}},
    )


def test_promotion_refuses_a_run_not_clearly_above_the_majority_baseline(project):
    lucky = _scored_run(project, correct=7, n=10, baseline=0.5)  # 70 % of 10: interval reaches below 50 %
    promoted, reason = promotion_decide(project, lucky)
    assert not promoted and "majority-class share" in reason
    assert promotion_decide(project, _scored_run(project, correct=38, n=40, baseline=0.5))[0]


def test_promotion_refuses_a_run_worse_than_the_active_model_on_labels_neither_trained_on(project):
    h, v = project.label_classes.all()
    items = list(Item.objects.filter(project=project).order_by("id"))
    truth = {item.pk: item.known_label.label_id for item in items}
    current = _scored_run(project, correct=38, n=40)
    # The current model trained on none of these labels (no dataset file) and gets them all right.
    Prediction.objects.bulk_create(
        [Prediction(item=item, run=current, label_id=truth[item.pk], confidence=0.9) for item in items]
    )
    project.active_run = current
    project.save(update_fields=["active_run"])
    position = {h.pk: 0, v.pk: 1}
    wrong_on_ten = {str(item.pk): (1 - position[truth[item.pk]]) if n < 10 else position[truth[item.pk]]
                    for n, item in enumerate(items)}
    worse = _scored_run(project, correct=39, n=40, oof=wrong_on_ten)
    promoted, reason = promotion_decide(project, worse)
    n = len(items)
    assert not promoted and f"{n - 10} of {n} right against the active model's {n}" in reason
    as_good = _scored_run(project, correct=40, n=40, oof={str(item.pk): position[truth[item.pk]] for item in items})
    assert promotion_decide(project, as_good)[0]


def test_a_frozen_dataset_keeps_integer_item_ids_through_json_and_reads_the_older_object_form():
    from labeling.services.modeling import FrozenDataset

    dataset = FrozenDataset({12: 0, 3: 2})
    assert FrozenDataset.from_json(dataset.to_json()) == dataset
    assert FrozenDataset.from_json(b'{"human": {"12": 0, "3": 2}}') == dataset
