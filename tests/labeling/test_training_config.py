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
