import io
import zipfile

import pytest
import torch
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from labeling.models import Item, RunStatus, TrainingRun
from labeling.services import predictions
from labeling.services.imports import ImportEntry, items_import
from labeling.services.projects import project_create
from tests.labeling.factories import bar_png, png_bytes

pytestmark = pytest.mark.django_db

IMAGES = [(f"{kind}{i}.png", bar_png(kind, i)) for kind in "hv" for i in (1, 4, 6)]


@pytest.fixture(autouse=True)
def _fresh_cache():
    predictions.predictions_cache_clear()
    yield
    predictions.predictions_cache_clear()


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner")


@pytest.fixture
def project(owner):
    project = project_create(name="Bars", labels=["h", "v"], owner=owner, image_size=8)
    items_import(project, [ImportEntry(name=name, data=data) for name, data in IMAGES])
    return project


@pytest.fixture
def client(owner):
    client = APIClient()
    client.force_authenticate(owner)
    return client


def promote(project, *, seed=0, favour=None):
    """A succeeded run with an untrained net (seeded), made the project's active model;
    ``favour`` (a class index) makes that class win on every input."""
    from ml.inference import export_model
    from ml.nets import build_model, model_config

    config = model_config({"arch": "cnn", "n_classes": 2, "in_channels": 1, "image_size": 8, "width": 8})
    torch.manual_seed(seed)
    state = build_model(config).state_dict()
    if favour is not None:
        state["head.weight"].zero_()
        state["head.bias"].copy_(torch.tensor([10.0 if i == favour else 0.0 for i in range(2)]))
    run = TrainingRun.objects.create(project=project, status=RunStatus.SUCCEEDED)
    run.artifact.save(f"{run.pk}/model.zip", ContentFile(export_model(state, config, ["h", "v"])), save=True)
    project.active_run = run
    project.save(update_fields=["active_run"])
    return run


def batch_url(project):
    return f"/api/v1/projects/{project.slug}/predict/batch"


def files_body(images):
    return {"files": [SimpleUploadedFile(name, data) for name, data in images]}


def zip_upload(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return SimpleUploadedFile("batch.zip", buffer.getvalue(), content_type="application/zip")


def assert_same_predictions(a, b):
    assert a["label"] == b["label"]
    assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_single_batch_zip_and_stored_item_predictions_agree(project, client):
    run = promote(project, seed=3)
    single = []
    for name, data in IMAGES:
        response = client.post(
            f"/api/v1/projects/{project.slug}/predict", {"file": SimpleUploadedFile(name, data)}, format="multipart"
        )
        assert response.status_code == 200
        single.append(response.json())
    assert {row["run"] for row in single} == {str(run.pk)}

    files = client.post(batch_url(project), files_body(IMAGES), format="multipart").json()
    archive = client.post(batch_url(project), {"zip": zip_upload(IMAGES)}, format="multipart").json()
    ids = [Item.objects.get(project=project, source_name=name).pk for name, _ in IMAGES]
    stored = client.post(batch_url(project), {"items": ids}, format="json").json()

    for answer in (files, archive, stored):
        assert answer["run"] == str(run.pk) and answer["classes"] == ["h", "v"]
        assert len(answer["results"]) == len(IMAGES)
        for expected, got in zip(single, answer["results"], strict=True):
            assert_same_predictions(expected, got)
    assert [row["name"] for row in files["results"]] == [name for name, _ in IMAGES]
    assert [row["item"] for row in stored["results"]] == ids


def test_the_model_is_loaded_once_per_process_and_again_after_a_promotion(project, client, monkeypatch):
    import ml.inference

    loads = []
    real_load = ml.inference.load_model
    monkeypatch.setattr(ml.inference, "load_model", lambda data, *a, **k: loads.append(1) or real_load(data, *a, **k))
    promote(project, favour=0)
    for _ in range(3):
        answer = client.post(batch_url(project), files_body(IMAGES[:2]), format="multipart").json()
        assert [row["label"] for row in answer["results"]] == ["h", "h"]
    assert len(loads) == 1

    new_run = promote(project, favour=1)
    answer = client.post(batch_url(project), files_body(IMAGES[:2]), format="multipart").json()
    assert answer["run"] == str(new_run.pk) and [row["label"] for row in answer["results"]] == ["v", "v"]
    assert len(loads) == 2


def test_the_cache_keeps_only_the_most_recently_used_models(owner, settings, monkeypatch):
    import ml.inference

    settings.CROWDLOOP_PREDICT_CACHED_MODELS = 1
    loads = []
    real_load = ml.inference.load_model
    monkeypatch.setattr(ml.inference, "load_model", lambda data, *a, **k: loads.append(1) or real_load(data, *a, **k))
    first = project_create(name="One", labels=["h", "v"], owner=owner, image_size=8)
    second = project_create(name="Two", labels=["h", "v"], owner=owner, image_size=8)
    promote(first, favour=0)
    promote(second, favour=1)
    for project in (first, second, first):
        predictions.model_predict(project, IMAGES[0][1])
    assert len(loads) == 3


def test_an_unreadable_image_gets_its_own_error_and_the_rest_are_predicted(project, client):
    promote(project, favour=1)
    body = files_body([IMAGES[0], ("broken.png", b"not an image"), ("empty.png", b""), IMAGES[1]])
    rows = client.post(batch_url(project), body, format="multipart").json()["results"]
    assert [row.get("label") for row in rows] == ["v", None, None, "v"]
    assert "not an image" in rows[1]["error"] and "empty" in rows[2]["error"]

    archive = zip_upload([IMAGES[0], ("notes.csv", b"text"), ("odd.png", b"garbage")])
    rows = client.post(batch_url(project), {"zip": archive}, format="multipart").json()["results"]
    assert {row["name"]: row.get("label") or row["error"] for row in rows} == {
        "h1.png": "v", "odd.png": "not an image (unrecognised or corrupt data)",
        "notes.csv": "text files inside a zip are not imported",
    }

    other = project_create(name="Other", labels=["h", "v"], owner=project.owner)
    items_import(other, [ImportEntry(name="x.png", data=png_bytes(5))])
    foreign = Item.objects.get(project=other).pk
    mine = Item.objects.filter(project=project).first().pk
    rows = client.post(batch_url(project), {"items": [mine, foreign]}, format="json").json()["results"]
    assert rows[0]["label"] == "v" and rows[1] == {"item": foreign, "error": "no image item with this id in the project"}


def test_a_batch_may_hold_more_files_than_djangos_default_of_a_hundred(project, client):
    promote(project, favour=0)
    images = [(f"b{i}.png", IMAGES[i % len(IMAGES)][1]) for i in range(150)]
    response = client.post(batch_url(project), files_body(images), format="multipart")
    assert response.status_code == 200 and len(response.json()["results"]) == 150


@pytest.mark.parametrize(
    "body,fmt,field,message",
    [
        ({}, "multipart", "files", "'files' (repeated) or one 'zip'"),
        ("both", "multipart", "files", "not both"),
        ({"items": []}, "json", "items", "at least 1"),
        ({"items": ["x"]}, "json", "items", "valid integer"),
        ("three", "multipart", "files", "3 files, over the batch cap of 2"),
        ({"items": [1, 2, 3]}, "json", "items", "3 items, over the batch cap of 2"),
        ("climbing zip", "multipart", "zip", "climbs out"),
    ],
)
def test_bad_batches_are_refused_with_the_field_named(project, client, settings, body, fmt, field, message):
    settings.CROWDLOOP_PREDICT_MAX_BATCH = 2
    promote(project)
    body = {
        "both": {**files_body(IMAGES[:1]), "zip": zip_upload(IMAGES[:1])},
        "three": files_body(IMAGES[:3]),
        "climbing zip": {"zip": zip_upload([("../up.png", IMAGES[0][1])])},
    }.get(body, body) if isinstance(body, str) else body
    response = client.post(batch_url(project), body, format=fmt)
    assert response.status_code == 400
    assert message in str(response.json()[field])


def test_a_batch_over_the_byte_cap_is_refused_before_it_is_read(project, client, settings):
    settings.CROWDLOOP_MAX_PREDICT_BATCH_BYTES = 1000
    promote(project)
    response = client.post(batch_url(project), files_body([("big.png", b"x" * 5000)]), format="multipart")
    assert response.status_code == 413


def test_without_a_model_nothing_is_predicted(project, client):
    response = client.post(batch_url(project), files_body(IMAGES[:1]), format="multipart")
    assert response.status_code == 400 and "no trained model" in response.json()["detail"]
    single = client.post(
        f"/api/v1/projects/{project.slug}/predict", {"file": SimpleUploadedFile("x.png", IMAGES[0][1])},
        format="multipart",
    )
    assert single.status_code == 400 and "no trained model" in single.json()["detail"]
