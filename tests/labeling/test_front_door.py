"""The front door: what an anonymous visitor, a crowd worker and an owner see first."""

import pytest
from django.contrib import admin
from django.urls import reverse

from labeling.models import LabelClass
from labeling.services.projects import project_create
from labeling.services.workers import worker_sign_up

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_an_anonymous_visitor_gets_a_landing_page_with_log_in_sign_up_and_docs(client):
    response = client.get("/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "labeled training data" in page
    for name in ("login", "worker-signup", "docs"):
        assert f'href="{reverse(name)}"' in page


def test_the_docs_page_shows_the_readme(client):
    page = client.get(reverse("docs")).content.decode()
    assert "The two commands" in page


def test_log_in_and_sign_up_link_to_each_other(client):
    login = client.get(reverse("login")).content.decode()
    signup = client.get(reverse("worker-signup")).content.decode()
    assert reverse("worker-signup") in login and 'class="card auth-form"' in login
    assert reverse("login") in signup and 'class="card auth-form"' in signup


def test_a_worker_sees_no_dashboard_link_and_the_dashboard_sends_them_to_their_home(client):
    user = worker_sign_up(username="ann", password="pw-ann-12345", email="")
    client.force_login(user)
    page = client.get(reverse("worker-home")).content.decode()
    assert reverse("dashboard:projects") not in page
    response = client.get(reverse("dashboard:projects"))
    assert response.status_code == 302 and response["Location"] == reverse("worker-home")


def test_an_owner_sees_the_dashboard_link(client, django_user_model):
    owner = django_user_model.objects.create_user("owner")
    project_create(name="Pets", labels=["cat", "dog"], owner=owner)
    client.force_login(owner)
    assert f'href="{reverse("dashboard:projects")}"' in client.get(reverse("worker-home")).content.decode()


def test_the_old_rules_page_redirects_to_the_one_workers_page(client, django_user_model):
    owner = django_user_model.objects.create_user("owner")
    project = project_create(name="Pets", labels=["cat", "dog"], owner=owner)
    client.force_login(owner)
    response = client.get(reverse("project-workers", args=[project.slug]))
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard:workers", args=[project.slug]) + "#rules"
    page = client.get(response["Location"]).content.decode()
    assert "Quality rules" in page and "Admitted workers" in page


def test_the_favicon_is_served_at_the_root(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(response.streaming_content)


def test_the_admin_is_branded_and_label_classes_are_plural():
    assert admin.site.site_header == "Crowdloop administration"
    assert LabelClass._meta.verbose_name_plural == "label classes"


def test_the_admin_index_says_crowdloop_administration(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="x"))
    page = client.get(reverse("admin:index")).content.decode()
    assert "Crowdloop administration" in page and "Django administration" not in page
