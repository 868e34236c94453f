import io
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from labeling.models import ImportJob, Item, KnownLabel, RunStatus
from labeling.services.projects import project_create
from tests.labeling.factories import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner", password="pw-owner-1")


@pytest.fixture
def stranger():
    return get_user_model().objects.create_user("stranger", password="pw-stranger-1")


@pytest.fixture
def project(owner):
    return project_create(name="Pets", labels=["cat", "dog"], owner=owner)


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def zip_upload(members, name="pets.zip"):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in members:
            archive.writestr(member, data)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="application/zip")


def test_an_upload_returns_at_once_and_a_worker_imports_it(project, owner, celery_eager, django_capture_on_commit_callbacks):
    upload = zip_upload([("cat/a.png", png_bytes(1)), ("dog/b.png", png_bytes(2)), ("dog/c.png", b"broken")])
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(f"/api/v1/projects/{project.slug}/imports", {"file": upload}, format="multipart")
    assert response.status_code == 202
    job = client_for(owner).get(response.json()["url"]).json()
    assert job["status"] == RunStatus.SUCCEEDED
    assert (job["report"]["created"], job["report"]["problem_count"], job["processed"], job["total"]) == (2, 1, 3, 3)
    assert job["report"]["problems"][0]["name"].endswith("dog/c.png")
    assert KnownLabel.objects.filter(item__project=project).count() == 2
    assert client_for(owner).get(f"/api/v1/projects/{project.slug}/").json()["stats"]["items_total"] == 2


def test_an_unsafe_zip_upload_fails_the_job_with_its_reason_and_creates_nothing(
    project, owner, celery_eager, django_capture_on_commit_callbacks
):
    upload = zip_upload([("cat/a.png", png_bytes(1)), ("../../escape.png", png_bytes(2))])
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(f"/api/v1/projects/{project.slug}/imports", {"file": upload}, format="multipart")
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert job.status == RunStatus.FAILED and "climbs out" in job.error
    assert Item.objects.count() == 0


def test_an_oversized_upload_is_refused_with_413(project, owner, settings):
    settings.CROWDLOOP_MAX_UPLOAD_BYTES = 1000
    upload = SimpleUploadedFile("big.csv", b"text\n" + b"x" * 5000)
    response = client_for(owner).post(f"/api/v1/projects/{project.slug}/imports", {"file": upload}, format="multipart")
    assert response.status_code == 413
    assert ImportJob.objects.count() == 0


def test_an_upload_of_an_unsupported_type_is_refused_with_400(project, owner):
    upload = SimpleUploadedFile("notes.exe", b"MZ")
    response = client_for(owner).post(f"/api/v1/projects/{project.slug}/imports", {"file": upload}, format="multipart")
    assert response.status_code == 400 and ".zip" in response.json()["file"]
    missing = client_for(owner).post(f"/api/v1/projects/{project.slug}/imports", {}, format="multipart")
    assert missing.status_code == 400


def test_another_users_project_and_import_are_not_found(project, owner, stranger):
    job = ImportJob.objects.create(project=project, source_name="x.zip", upload="imports/x.zip")
    other = client_for(stranger)
    assert other.get(f"/api/v1/projects/{project.slug}/").status_code == 404
    assert other.get(f"/api/v1/imports/{job.pk}").status_code == 404
    upload = SimpleUploadedFile("t.csv", b"text\nhi\n")
    assert other.post(f"/api/v1/projects/{project.slug}/imports", {"file": upload}, format="multipart").status_code == 404
    assert other.get("/api/v1/projects/").json() == []
    assert APIClient().get("/api/v1/projects/").status_code in (401, 403)


def test_the_web_upload_form_creates_a_job_and_shows_its_page(
    client, project, owner, celery_eager, django_capture_on_commit_callbacks
):
    client.force_login(owner)
    assert client.get(f"/projects/{project.slug}/").status_code == 200
    upload = SimpleUploadedFile("pets.csv", b"text\nhi\n")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/projects/{project.slug}/import", {"file": upload})
    assert response.status_code == 302
    page = client.get(response["Location"])
    assert page.status_code == 200
    # An image project refuses texts: the job fails with a readable reason on its page.
    assert b"image project" in page.content


def test_pages_escape_untrusted_names(client, owner):
    project = project_create(name="<script>alert(1)</script>", slug="xss", labels=["<img src=x onerror=alert(1)>"], owner=owner)
    client.force_login(owner)
    for url in ("/", f"/projects/{project.slug}/"):
        body = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in body and "<img src=x" not in body
        assert "&lt;" in body


def test_a_held_out_split_is_imported_through_the_api(project, owner, celery_eager, django_capture_on_commit_callbacks):
    from labeling.models import EvaluationTruth, Split

    upload = zip_upload([("cat/a.png", png_bytes(1)), ("dog/b.png", png_bytes(2))])
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(
            f"/api/v1/projects/{project.slug}/imports", {"file": upload, "split": "holdout"}, format="multipart"
        )
    assert response.status_code == 202 and response.json()["split"] == "holdout"
    assert set(Item.objects.values_list("split", flat=True)) == {Split.HOLDOUT}
    assert EvaluationTruth.objects.count() == 2 and not KnownLabel.objects.exists()
    bad = client_for(owner).post(
        f"/api/v1/projects/{project.slug}/imports", {"file": zip_upload([("a.png", png_bytes(3))]), "split": "test"},
        format="multipart",
    )
    assert bad.status_code == 400 and "split" in bad.json()


def test_the_web_upload_form_imports_a_held_out_split(client, project, owner, celery_eager, django_capture_on_commit_callbacks):
    from labeling.models import Split

    client.force_login(owner)
    assert b"Held-out split" in client.get(f"/projects/{project.slug}/").content
    upload = zip_upload([("cat/a.png", png_bytes(1)), ("dog/b.png", png_bytes(2))])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/projects/{project.slug}/import", {"file": upload, "split": "holdout"})
    assert response.status_code == 302
    assert ImportJob.objects.get().split == Split.HOLDOUT
    assert set(Item.objects.values_list("split", flat=True)) == {Split.HOLDOUT}
