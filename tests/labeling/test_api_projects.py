"""Changing a project's settings through the owners' API."""
import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner")


@pytest.fixture
def project(owner):
    return project_create(name="Pets", labels=["cat", "dog"], owner=owner)


def patch(user, project, body):
    client = APIClient()
    client.force_authenticate(user)
    return client.patch(f"/api/v1/projects/{project.slug}/", body, format="json")


def test_an_owner_changes_settings_and_gets_the_project_back(owner, project):
    response = patch(owner, project, {"answers_per_item": 3, "open_to_all_workers": True, "name": "Pets 2"})
    assert response.status_code == 200, response.json()
    assert response.json()["answers_per_item"] == 3 and response.json()["open_to_all_workers"] is True
    project.refresh_from_db()
    assert (project.answers_per_item, project.name, project.slug) == (3, "Pets 2", "pets")


@pytest.mark.parametrize(
    "body,field",
    [
        ({"slug": "other"}, "slug"),
        ({"data_kind": "text"}, "data_kind"),
        ({"gold_share": 2}, "gold_share"),
        ({"answers_per_item": 9, "max_answers_per_item": 4}, None),
    ],
)
def test_what_is_not_a_setting_or_breaks_a_rule_is_refused_and_nothing_changes(owner, project, body, field):
    response = patch(owner, project, body)
    assert response.status_code == 400
    if field:
        assert field in response.json()
    project.refresh_from_db()
    assert (project.slug, project.data_kind, project.answers_per_item, project.gold_share) == ("pets", "image", 2, 0.1)


def test_someone_elses_project_is_not_found(project):
    stranger = get_user_model().objects.create_user("stranger")
    assert patch(stranger, project, {"name": "Mine now"}).status_code == 404
