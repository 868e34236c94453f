import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from labeling.models import DataKind, Project
from labeling.services.owner_tokens import owner_token_create
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    """An owner: someone who already owns a project."""
    user = get_user_model().objects.create_user("owner")
    project_create(name="First", labels=["a", "b"], owner=user)
    return user


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_an_owner_creates_a_project_through_the_api(owner):
    response = client_for(owner).post(
        "/api/v1/projects/",
        {"name": "Pets and more", "labels": ["cat", "dog", "bird"], "kind": "text", "open_to_all_workers": True},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["slug"] == "pets-and-more" and body["labels"] == ["cat", "dog", "bird"] and body["data_kind"] == "text"
    assert response["Location"] == "/api/v1/projects/pets-and-more/"
    project = Project.objects.get(slug="pets-and-more")
    assert project.owner == owner and project.open_to_all_workers and project.data_kind == DataKind.TEXT
    assert client_for(owner).get(response["Location"]).status_code == 200


@pytest.mark.parametrize(
    "payload,field,message",
    [
        ({"labels": ["a", "b"]}, "name", "required"),
        ({"name": "X"}, "labels", "required"),
        ({"name": "X", "labels": ["a"]}, "labels", "at least 2"),
        ({"name": "X", "labels": ["a", "a"]}, "labels", "unique"),
        ({"name": "X", "labels": "a,b"}, "labels", "list"),
        ({"name": "X", "labels": ["a", "b"], "kind": "video"}, "kind", "not a valid choice"),
        ({"name": "!!!", "labels": ["a", "b"]}, "slug", "gives no slug"),
        ({"name": "First", "labels": ["a", "b"]}, "slug", "already exists"),
        ({"name": "X", "slug": "has space", "labels": ["a", "b"]}, "slug", "valid"),
        ({"name": "X", "labels": ["a", "b"], "gold_share": 2}, "gold_share", "less than or equal to 1"),
        ({"name": "X", "labels": ["a", "b"], "answers_per_item": 5, "max_answers_per_item": 3}, "max_answers_per_item", "at least"),
        ({"name": "X", "labels": ["a", "b"], "answers_per_item": 7}, "max_answers_per_item", "at least"),
    ],
)
def test_bad_project_input_is_a_400_naming_the_field(owner, payload, field, message):
    response = client_for(owner).post("/api/v1/projects/", payload, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert field in errors and message in str(errors[field]), errors
    assert Project.objects.count() == 1


def test_a_worker_without_projects_may_not_create_one_but_a_granted_user_may():
    user = get_user_model().objects.create_user("someone")
    payload = {"name": "Mine", "labels": ["a", "b"]}
    assert client_for(user).post("/api/v1/projects/", payload, format="json").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="add_project"))
    user = get_user_model().objects.get(pk=user.pk)
    assert client_for(user).post("/api/v1/projects/", payload, format="json").status_code == 201


def test_a_token_creates_projects_unless_it_is_scoped(owner):
    first = Project.objects.get(slug="first")
    _, full = owner_token_create(user=owner)
    _, scoped = owner_token_create(user=owner, projects=[first])
    payload = {"name": "By token", "labels": ["a", "b"]}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {scoped}")
    assert client.post("/api/v1/projects/", payload, format="json").status_code == 403
    client.credentials(HTTP_AUTHORIZATION=f"Token {full}")
    assert client.post("/api/v1/projects/", payload, format="json").status_code == 201
    assert Project.objects.get(slug="by-token").owner == owner
    assert APIClient().post("/api/v1/projects/", payload, format="json").status_code == 401


def test_project_create_command_creates_the_project_with_its_labels_in_order(owner, capsys):
    call_command(
        "project_create", "--name", "Street signs", "--labels", "stop, yield ,speed", "--kind", "image",
        "--open-to-all-workers", "--owner", "owner",
    )
    project = Project.objects.get(slug="street-signs")
    assert list(project.label_classes.values_list("name", flat=True)) == ["stop", "yield", "speed"]
    assert project.owner == owner and project.open_to_all_workers and project.data_kind == DataKind.IMAGE
    assert "import_items street-signs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--name", "X", "--labels", "a,a"], "labels: label names must be unique"),
        (["--name", "X", "--labels", "a,,b"], "labels: #1: This field may not be blank"),
        (["--name", "First", "--labels", "a,b"], "slug: a project with slug 'first' already exists"),
        (["--name", "X", "--labels", "a,b", "--owner", "ghost"], "no user named 'ghost'"),
    ],
)
def test_project_create_command_refuses_bad_input_clearly(owner, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("project_create", *args)
    assert Project.objects.count() == 1


def test_the_service_refuses_bad_labels_with_the_field_named(db):
    for labels, message in ([["a", " "], "empty"], [["a", "a "], "unique"], [["x" * 101], "100"]):
        with pytest.raises(ValidationError, match=message) as caught:
            project_create(name="X", labels=labels)
        assert "labels" in caught.value.message_dict
