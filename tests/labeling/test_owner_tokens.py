from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from labeling.models import ImportJob, OwnerToken, RunStatus, TrainingRun
from labeling.services.owner_tokens import (
    owner_token_authenticate,
    owner_token_create,
    owner_token_revoke,
    token_hash,
)
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner")


@pytest.fixture
def rival():
    return get_user_model().objects.create_user("rival")


@pytest.fixture
def world(owner, rival):
    """Two projects of the owner (one in a token's scope, one out of it) and one of a
    rival, each with an import job and a finished run with a model."""
    projects = {
        "mine": project_create(name="Mine", labels=["a", "b"], owner=owner),
        "also_mine": project_create(name="Also mine", labels=["a", "b"], owner=owner),
        "theirs": project_create(name="Theirs", labels=["a", "b"], owner=rival),
    }
    rows = {}
    for key, project in projects.items():
        job = ImportJob.objects.create(project=project, source_name="x.zip", upload="imports/x.zip")
        run = TrainingRun.objects.create(project=project, status=RunStatus.SUCCEEDED)
        run.artifact.save(f"{run.pk}/model.zip", ContentFile(b"model"), save=True)
        project.active_run = run
        project.save(update_fields=["active_run"])
        rows[key] = {"slug": project.slug, "job": job.pk, "run": run.pk}
    return projects, rows


@pytest.fixture
def tokens(owner, rival, world):
    projects, _ = world
    revoked, revoked_raw = owner_token_create(user=owner, name="old")
    owner_token_revoke(revoked)
    return {
        "owner": owner_token_create(user=owner, name="all")[1],
        "scoped": owner_token_create(user=owner, name="one", projects=[projects["mine"]])[1],
        "rival": owner_token_create(user=rival)[1],
        "revoked": revoked_raw,
        "forged": "clo_" + "A" * 43,
        "none": None,
    }


def client_with(raw):
    client = APIClient()
    if raw is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


# (method, url, body, format, status when the caller may reach the project)
ENDPOINTS = [
    ("get", "/api/v1/projects/{slug}/", None, None, 200),
    ("post", "/api/v1/projects/{slug}/imports", {}, "multipart", 400),
    ("get", "/api/v1/imports/{job}", None, None, 200),
    ("get", "/api/v1/projects/{slug}/export?format=csv", None, None, 200),
    ("get", "/api/v1/projects/{slug}/runs", None, None, 200),
    ("post", "/api/v1/projects/{slug}/runs", {"config": "not an object"}, "json", 400),
    ("get", "/api/v1/runs/{run}", None, None, 200),
    ("get", "/api/v1/projects/{slug}/model", None, None, 200),
    ("post", "/api/v1/projects/{slug}/predict", {}, "multipart", 400),
    ("post", "/api/v1/projects/{slug}/predict/batch", {}, "multipart", 400),
    ("get", "/api/v1/projects/{slug}/predictions", None, None, 200),
    ("get", "/api/v1/projects/{slug}/items", None, None, 200),
    ("get", "/api/v1/projects/{slug}/workers", None, None, 200),
    ("patch", "/api/v1/projects/{slug}/", {"description": "by the API"}, "json", 200),
]

# (token, project it is tried on, expected: "reach" or a status code)
PRINCIPALS = [
    ("owner", "mine", "reach"),
    ("owner", "also_mine", "reach"),
    ("scoped", "mine", "reach"),
    ("scoped", "also_mine", 404),
    ("rival", "mine", 404),
    ("rival", "theirs", "reach"),
    ("owner", "theirs", 404),
    ("revoked", "mine", 401),
    ("forged", "mine", 401),
    ("none", "mine", 401),
]


@pytest.mark.parametrize("method,url,body,fmt,reachable", ENDPOINTS, ids=[e[1] + " " + e[0] for e in ENDPOINTS])
@pytest.mark.parametrize("who,target,expected", PRINCIPALS, ids=[f"{p[0]}-on-{p[1]}" for p in PRINCIPALS])
def test_owner_endpoints_admit_exactly_the_tokens_that_reach_the_project(
    world, tokens, method, url, body, fmt, reachable, who, target, expected
):
    _, rows = world
    client = client_with(tokens[who])
    kwargs = {"format": fmt} if fmt else {}
    response = getattr(client, method)(url.format(**rows[target]), body, **kwargs)
    assert response.status_code == (reachable if expected == "reach" else expected), response.content[:300]
    if expected == 401:
        assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    "who,slugs",
    [("owner", {"mine", "also-mine"}), ("scoped", {"mine"}), ("rival", {"theirs"})],
)
def test_the_project_list_shows_what_the_token_reaches(tokens, who, slugs):
    response = client_with(tokens[who]).get("/api/v1/projects/")
    assert response.status_code == 200
    assert {row["slug"] for row in response.json()} == slugs


@pytest.mark.parametrize("who", ["revoked", "forged", "none"])
def test_the_project_list_refuses_a_missing_or_dead_token_with_401(tokens, who):
    assert client_with(tokens[who]).get("/api/v1/projects/").status_code == 401


@pytest.mark.parametrize("header", ["Token", "Token a b", "Token clo_short", "Token ünïcode"])
def test_a_malformed_token_header_is_refused_with_401(header, owner):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/projects/").status_code == 401


def test_only_the_hash_is_stored_and_the_token_authenticates_its_user(owner):
    token, raw = owner_token_create(user=owner, name="ci")
    row = OwnerToken.objects.get(pk=token.pk)
    assert raw.startswith("clo_") and raw not in {row.key_hash, row.prefix, row.name}
    assert row.key_hash == token_hash(raw) and raw.startswith(row.prefix)
    assert owner_token_authenticate(raw).user == owner
    assert owner_token_authenticate(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None


def test_use_is_recorded_at_most_once_a_minute(owner):
    token, raw = owner_token_create(user=owner)
    t0 = token.created_at + timedelta(seconds=5)
    owner_token_authenticate(raw, now=t0)
    owner_token_authenticate(raw, now=t0 + timedelta(seconds=30))
    assert OwnerToken.objects.get(pk=token.pk).last_used_at == t0
    owner_token_authenticate(raw, now=t0 + timedelta(seconds=61))
    assert OwnerToken.objects.get(pk=token.pk).last_used_at == t0 + timedelta(seconds=61)


def test_revoking_twice_keeps_the_first_time(owner):
    token, raw = owner_token_create(user=owner)
    first = token.created_at + timedelta(minutes=1)
    assert owner_token_revoke(token, now=first) is True
    assert owner_token_revoke(token, now=first + timedelta(minutes=1)) is False
    assert token.revoked_at == first and owner_token_authenticate(raw) is None


def test_an_inactive_users_token_stops_working(owner):
    _, raw = owner_token_create(user=owner)
    owner.is_active = False
    owner.save()
    assert client_with(raw).get("/api/v1/projects/").status_code == 401


def test_a_token_cannot_be_scoped_to_a_project_its_user_does_not_manage(owner, world):
    projects, _ = world
    with pytest.raises(ValidationError, match="does not manage: theirs"):
        owner_token_create(user=owner, projects=[projects["mine"], projects["theirs"]])
    with pytest.raises(ValidationError, match="at least one project"):
        owner_token_create(user=owner, projects=[])
    assert not OwnerToken.objects.exists()


def test_a_scoped_token_whose_projects_are_deleted_reaches_nothing(owner, world):
    projects, _ = world
    _, raw = owner_token_create(user=owner, projects=[projects["mine"]])
    projects["mine"].delete()
    assert client_with(raw).get("/api/v1/projects/").json() == []


def test_token_create_prints_the_token_once_and_token_revoke_kills_it(owner, world, capsys):
    call_command("token_create", "--user", "owner", "--project", "mine", "--name", "nightly export")
    out, err = capsys.readouterr()
    raw = out.strip()
    token = OwnerToken.objects.get()
    assert token.name == "nightly export" and token.scoped and [p.slug for p in token.projects.all()] == ["mine"]
    assert f"Token {token.pk} for owner (mine)" in err and raw not in err
    assert client_with(raw).get("/api/v1/projects/mine/").status_code == 200
    assert client_with(raw).get("/api/v1/projects/also-mine/").status_code == 404

    call_command("token_revoke", str(token.pk))
    assert "is revoked" in capsys.readouterr().out
    assert client_with(raw).get("/api/v1/projects/mine/").status_code == 401
    call_command("token_revoke", str(token.pk))
    assert "already revoked" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--user", "nobody"], "no user named 'nobody'"),
        (["--user", "owner", "--project", "nope"], "no project with slug 'nope'"),
        (["--user", "owner", "--project", "theirs"], "does not manage: theirs"),
    ],
)
def test_token_create_refuses_bad_input_clearly(world, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("token_create", *args)


def test_token_revoke_of_an_unknown_id_is_an_error(db):
    with pytest.raises(CommandError, match="no token with id 999"):
        call_command("token_revoke", "999")


def test_the_token_page_shows_a_new_token_once_and_revokes_it(client, owner, world):
    projects, _ = world
    client.force_login(owner)
    page = client.get("/accounts/tokens/")
    assert page.status_code == 200 and b"No tokens yet" in page.content
    assert b'href="/accounts/tokens/"' in page.content  # reachable from the top bar

    created = client.post("/accounts/tokens/", {"name": "laptop", "projects": [projects["mine"].pk]})
    assert created.status_code == 201 and "no-store" in created["Cache-Control"]
    token = OwnerToken.objects.get()
    raw = created.content.decode().split('id="new-token">')[1].split("<")[0]
    assert token_hash(raw) == token.key_hash and token.scoped
    listing = client.get("/accounts/tokens/").content.decode()
    assert "laptop" in listing and token.prefix in listing and raw not in listing

    client.post(f"/accounts/tokens/{token.pk}/revoke")
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert client_with(raw).get("/api/v1/projects/").status_code == 401


def test_the_token_page_cannot_scope_to_or_revoke_what_is_not_yours(client, owner, rival, world):
    projects, _ = world
    rival_token, _ = owner_token_create(user=rival)
    client.force_login(owner)
    refused = client.post("/accounts/tokens/", {"name": "x", "projects": [projects["theirs"].pk]})
    assert refused.status_code == 400 and not OwnerToken.objects.filter(user=owner).exists()
    assert client.post(f"/accounts/tokens/{rival_token.pk}/revoke").status_code == 404
    rival_token.refresh_from_db()
    assert rival_token.revoked_at is None


def test_the_token_page_needs_a_login(client):
    response = client.get("/accounts/tokens/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_staff_revoke_tokens_in_the_admin_and_never_see_their_hash(client, owner):
    staff = get_user_model().objects.create_superuser("staff", "staff@example.com", None)
    token, raw = owner_token_create(user=owner, name="ci")
    client.force_login(staff)
    page = client.get(f"/admin/labeling/ownertoken/{token.pk}/change/")
    assert page.status_code == 200 and token.key_hash.encode() not in page.content
    client.post(
        "/admin/labeling/ownertoken/", {"action": "tokens_revoke", "_selected_action": [token.pk]}
    )
    assert owner_token_authenticate(raw) is None
