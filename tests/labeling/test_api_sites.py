"""The owners' API for widget sites and for items with their consensus."""
import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from labeling.models import Item, ItemStatus, KnownLabel
from labeling.services.owner_tokens import owner_token_create
from labeling.services.projects import project_create
from labeling.services.sites import site_create, site_get_by_secret

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner")


@pytest.fixture
def rival():
    return get_user_model().objects.create_user("rival")


@pytest.fixture
def project(owner):
    return project_create(name="Texts", labels=["a", "b"], data_kind="text", owner=owner)


def client_for(user, token=None):
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    else:
        client.force_authenticate(user)
    return client


def test_an_owner_creates_a_site_for_their_project_and_its_secret_works_once_shown(owner, project):
    body = {"name": "Blog", "projects": [project.slug], "allowed_hostnames": ["blog.example"], "control_items": 3}
    response = client_for(owner).post("/api/v1/sites/", body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert site_get_by_secret(data["secret"]).sitekey == data["sitekey"]
    assert data["projects"] == [project.slug] and data["control_items"] == 3
    listed = client_for(owner).get("/api/v1/sites/").json()
    assert [row["sitekey"] for row in listed] == [data["sitekey"]] and "secret" not in listed[0]


def test_a_site_for_someone_elses_project_is_refused(owner, rival, project):
    body = {"name": "Theirs", "projects": [project.slug], "allowed_hostnames": ["x.example"]}
    response = client_for(rival).post("/api/v1/sites/", body, format="json")
    assert response.status_code == 400 and project.slug in response.json()["projects"]


def test_a_site_needs_a_hostname_and_the_service_says_so(owner, project):
    body = {"name": "Blog", "projects": [project.slug], "allowed_hostnames": ["not a host name!"]}
    response = client_for(owner).post("/api/v1/sites/", body, format="json")
    assert response.status_code == 400


def test_rotating_a_secret_retires_the_old_one_and_only_the_owner_may(owner, rival, project):
    site, old = site_create(name="Blog", projects=[project], allowed_hostnames=["blog.example"], owner=owner)
    assert client_for(rival).post(f"/api/v1/sites/{site.sitekey}/rotate").status_code == 404
    response = client_for(owner).post(f"/api/v1/sites/{site.sitekey}/rotate")
    assert response.status_code == 200
    assert site_get_by_secret(old) is None and site_get_by_secret(response.json()["secret"]) == site


def test_a_token_scoped_to_projects_reaches_no_site(owner, project):
    site_create(name="Blog", projects=[project], allowed_hostnames=["blog.example"], owner=owner)
    _, token = owner_token_create(user=owner, projects=[project])
    client = client_for(owner, token)
    assert client.get("/api/v1/sites/").json() == []
    body = {"name": "Blog 2", "projects": [project.slug], "allowed_hostnames": ["blog.example"]}
    assert client.post("/api/v1/sites/", body, format="json").status_code == 403


def test_items_come_with_gold_and_pages(owner, project):
    items = Item.objects.bulk_create(
        [Item(project=project, text=f"text {i}", checksum=f"{i:064d}", source_name=f"{i}.txt") for i in range(5)]
    )
    KnownLabel.objects.create(item=items[0], label=project.label_classes.get(name="b"))
    Item.objects.filter(pk=items[0].pk).update(status=ItemStatus.LABELED)
    client = client_for(owner)
    page = client.get(f"/api/v1/projects/{project.slug}/items", {"limit": 2}).json()
    assert page["count"] == 5 and [row["id"] for row in page["results"]] == [items[0].pk, items[1].pk]
    assert page["results"][0]["gold"] == "b" and page["results"][1]["gold"] is None
    assert page["results"][1]["consensus"] is None and page["next"]
    labeled = client.get(f"/api/v1/projects/{project.slug}/items", {"status": "labeled"}).json()
    assert [row["id"] for row in labeled["results"]] == [items[0].pk]
    assert client.get(f"/api/v1/projects/{project.slug}/items", {"status": "nope"}).status_code == 400


def test_workers_of_a_project_come_with_their_record_here(owner, project):
    from labeling.services.workers import membership_grant, worker_for_user

    labeler = get_user_model().objects.create_user("labeler")
    worker = worker_for_user(labeler)
    membership_grant(project, worker)
    rows = client_for(owner).get(f"/api/v1/projects/{project.slug}/workers").json()
    assert rows["count"] == 1
    assert rows["results"][0] == {**rows["results"][0], "id": worker.pk, "name": "labeler", "status": "active"}
    assert rows["results"][0]["control_accuracy"] is None
