"""Training configs: transfer only from a tenant's own successful runs; every value checked."""
import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from rest_framework.test import APIClient

from labeling.models import RunStatus, TrainingRun
from labeling.services.imports import ImportEntry, items_import
from labeling.services.projects import project_create
from labeling.services.training import TrainingConfigInvalid, training_run_create, training_run_execute
from tests.labeling.factories import bar_png

pytestmark = pytest.mark.django_db
TINY = {"epochs": 3, "patience": 3, "width": 8, "batch_size": 16}


def _user(name, **extra):
    return get_user_model().objects.create_user(name, **extra)


def _project(owner, name):
    project = project_create(name=name, labels=["h", "v"], owner=owner, image_size=8)
    items_import(project, [ImportEntry(name=f"{k}{i}", data=bar_png(k, i), label=k) for k in "hv" for i in range(4)])
    return project


def _finished_run(project, status=RunStatus.SUCCEEDED):
    run = TrainingRun.objects.create(project=project, status=status, config={"epochs": 1})
    run.artifact.save(f"{run.pk}/model.zip", ContentFile(b"not read by these tests"))
    return run


@pytest.fixture
def alice():
    return _user("alice")


@pytest.fixture
def bob():
    return _user("bob")


def _post_run(user, project, config):
    client = APIClient()
    client.force_authenticate(user)
    return client.post(f"/api/v1/projects/{project.slug}/runs", {"config": config}, format="json")


def test_transfer_from_another_tenants_run_is_refused_by_the_api_and_nothing_is_queued(alice, bob):
    mine, theirs = _project(alice, "Mine"), _project(bob, "Theirs")
    source = _finished_run(theirs)
    response = _post_run(alice, mine, {**TINY, "transfer_from": str(source.pk)})
    assert response.status_code == 400
    assert "a project you own" in response.json()["config"]["transfer_from"][0]
    assert not TrainingRun.objects.filter(project=mine).exists()


def test_transfer_from_a_run_of_another_project_of_the_same_owner_is_queued(alice):
    mine, other = _project(alice, "Mine"), _project(alice, "Other")
    source = _finished_run(other)
    response = _post_run(alice, mine, {**TINY, "transfer_from": str(source.pk)})
    assert response.status_code == 202, response.json()
    assert TrainingRun.objects.get(pk=response.json()["id"]).requested_by == alice


def test_staff_may_transfer_from_any_tenants_run(alice, bob):
    staff = _user("root", is_staff=True)
    mine, theirs = _project(alice, "Mine"), _project(bob, "Theirs")
    source = _finished_run(theirs)
    run = training_run_create(mine, config={**TINY, "transfer_from": str(source.pk)}, user=staff)
    assert run.config["transfer_from"] == str(source.pk)


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.RUNNING])
def test_transfer_from_an_unfinished_or_failed_run_is_refused(alice, status):
    mine = _project(alice, "Mine")
    source = _finished_run(mine, status=status)
    with pytest.raises(TrainingConfigInvalid, match="no successful training run") as refused:
        training_run_create(mine, config={**TINY, "transfer_from": str(source.pk)}, user=alice)
    assert set(refused.value.errors) == {"transfer_from"}


def test_without_a_user_transfer_is_judged_as_the_projects_owner(alice, bob):
    mine, theirs = _project(alice, "Mine"), _project(bob, "Theirs")
    source = _finished_run(theirs)
    with pytest.raises(TrainingConfigInvalid, match="transfer_from"):
        training_run_create(mine, config={**TINY, "transfer_from": str(source.pk)})


def test_a_queued_run_naming_another_tenants_run_fails_in_the_task_without_loading_it(alice, bob, monkeypatch):
    mine, theirs = _project(alice, "Mine"), _project(bob, "Theirs")
    source = _finished_run(theirs)
    run = TrainingRun.objects.create(
        project=mine, requested_by=alice, config={**TINY, "transfer_from": str(source.pk)}, n_epochs=3
    )
    import ml.inference

    def load_model(*args, **kwargs):
        raise AssertionError("another tenant's model was loaded")

    monkeypatch.setattr(ml.inference, "load_model", load_model)
    run = training_run_execute(run.pk)
    assert run.status == RunStatus.FAILED
    assert "transfer_from" in run.error and "a project you own" in run.error


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epochs", "abc"),
        ("epochs", -5),
        ("epochs", [1]),
        ("epochs", 10_000),
        ("epochs", 2.5),
        ("lr", "fast"),
        ("lr", 0),
        ("batch_size", {"n": 2}),
        ("val_share", 2),
        ("use_pseudo_labels", "maybe"),
        ("augment", [1]),
        ("transfer_from", "run-7"),
        ("epochz", 3),
    ],
)
def test_a_bad_config_value_is_a_400_naming_the_key_and_queues_nothing(alice, key, value):
    project = _project(alice, "Mine")
    response = _post_run(alice, project, {**TINY, key: value})
    assert response.status_code == 400
    assert key in response.json()["config"]
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("config", [["epochs", 3], "epochs=3", None])
def test_a_config_that_is_not_an_object_is_a_400(alice, config):
    project = _project(alice, "Mine")
    response = _post_run(alice, project, config)
    assert response.status_code == 400 and "config" in response.json()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epochs", "abc"),
        ("epochs", True),
        ("epochs", -5),
        ("epochs", [1]),
        ("epochs", 501),
        ("lr", float("nan")),
        ("lr", -1.0),
        ("width", 0),
        ("dropout", 1.0),
        ("monitor", "val_f1"),
        ("augment", {"shift": -1}),
        ("augment", {"spin": 1}),
        ("freeze_backbone", "no"),
        ("pseudo_min_confidence", 1.5),
        ("n_classes", 7),
        ("image_size", 64),
    ],
)
def test_the_service_refuses_every_bad_value_with_the_key_named(alice, key, value):
    project = _project(alice, "Mine")
    with pytest.raises(TrainingConfigInvalid) as refused:
        training_run_create(project, config={**TINY, key: value}, user=alice)
    assert list(refused.value.errors) == [key]
    assert not TrainingRun.objects.exists()


def test_every_bad_key_is_reported_at_once(alice):
    project = _project(alice, "Mine")
    with pytest.raises(TrainingConfigInvalid) as refused:
        training_run_create(project, config={"epochs": "abc", "lr": "x", "val_share": -1}, user=alice)
    assert set(refused.value.errors) == {"epochs", "lr", "val_share"}


def test_a_value_is_judged_against_the_chosen_arch(alice):
    project = _project(alice, "Mine")
    with pytest.raises(TrainingConfigInvalid, match="mlp") as refused:
        training_run_create(project, config={"arch": "mlp", "augment": {"shift": 2}}, user=alice)
    assert set(refused.value.errors) == {"augment"}


def test_the_dashboard_form_refuses_a_bad_epochs_value_with_a_message(client, alice):
    project = _project(alice, "Mine")
    client.force_login(alice)
    response = client.post(f"/dashboard/{project.slug}/training/start", {"epochs": "abc"}, follow=True)
    assert response.status_code == 200
    assert "Epochs must be a whole number" in response.content.decode()
    assert not TrainingRun.objects.exists()
