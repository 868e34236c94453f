"""Owners manage their API tokens through the API; a scoped token manages none."""
import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from labeling.services.owner_tokens import owner_token_authenticate, owner_token_create
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner")


@pytest.fixture
def project(owner):
    return project_create(name="Pets", labels=["cat", "dog"], owner=owner)


def with_token(raw):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def test_a_token_makes_a_scoped_token_that_works_and_is_listed_without_its_value(owner, project):
    _, raw = owner_token_create(user=owner, name="laptop")
    response = with_token(raw).post("/api/v1/tokens/", {"name": "ci", "projects": [project.slug]}, format="json")
    assert response.status_code == 201, response.json()
    made = response.json()
    assert made["scoped"] is True and made["projects"] == [project.slug]
    assert owner_token_authenticate(made["token"]).pk == made["id"]
    listed = with_token(raw).get("/api/v1/tokens/").json()
    assert {row["name"] for row in listed} == {"laptop", "ci"} and all("token" not in row for row in listed)


def test_revoking_stops_a_token_at_once(owner, project):
    _, raw = owner_token_create(user=owner, name="laptop")
    other, other_raw = owner_token_create(user=owner, name="ci")
    response = with_token(raw).post(f"/api/v1/tokens/{other.pk}/revoke")
    assert response.status_code == 200 and response.json()["revoked_at"]
    assert with_token(other_raw).get("/api/v1/projects/").status_code == 401


def test_a_scoped_token_manages_no_token_and_nobody_revokes_anothers(owner, project):
    _, scoped = owner_token_create(user=owner, projects=[project])
    assert with_token(scoped).get("/api/v1/tokens/").status_code == 403
    assert with_token(scoped).post("/api/v1/tokens/", {"name": "wider"}, format="json").status_code == 403
    rival = get_user_model().objects.create_user("rival")
    mine, _ = owner_token_create(user=owner)
    _, theirs = owner_token_create(user=rival)
    assert with_token(theirs).post(f"/api/v1/tokens/{mine.pk}/revoke").status_code == 404


def test_a_token_for_someone_elses_project_is_refused(owner, project):
    rival = get_user_model().objects.create_user("rival")
    _, raw = owner_token_create(user=rival)
    response = with_token(raw).post("/api/v1/tokens/", {"projects": [project.slug]}, format="json")
    assert response.status_code == 400 and project.slug in response.json()["projects"]
