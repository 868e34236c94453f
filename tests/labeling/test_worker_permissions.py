"""Who may touch what, endpoint by endpoint: a worker only reaches projects they are
admitted to and their own leases and answers; an owner only manages their own projects.
Every refusal is a 403 (not signed in, or not a worker) or a 404 (not yours: it
might as well not exist), and a refused request writes nothing."""
import json

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from labeling.models import Answer, Lease, ProjectMembership
from labeling.services import workers as svc
from tests.labeling.crowd import crowd_project, local_cache, registered_worker  # noqa: F401
from tests.labeling.factories import png_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_cache")]


def client_for(user=None, csrf=False):
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def world(django_user_model):
    owner = django_user_model.objects.create_user("owner")
    rival = django_user_model.objects.create_user("rival")
    mine, _ = crowd_project(name="Mine", owner=owner, n_unknown=6, n_gold=0)
    theirs, _ = crowd_project(name="Theirs", owner=rival, open_to_all_workers=False, n_unknown=3, n_gold=0)
    also, _ = crowd_project(name="Also", owner=rival, open_to_all_workers=False, n_unknown=3, n_gold=0)
    ann, bob = registered_worker("ann"), registered_worker("bob")
    svc.membership_grant(also, ann)
    svc.membership_grant(theirs, bob)
    ann_lease = svc.tasks_next(worker=ann, project=mine, n=1).leases[0]
    bob_lease, bob_answered = svc.tasks_next(worker=bob, project=mine, n=2).leases
    for lease in (ann_lease, bob_lease):
        lease.item.image.save("n.png", ContentFile(png_bytes(seed=lease.item_id)))
    svc.task_answers_submit(
        worker=bob, project=mine, answers=[svc.TaskAnswer(bob_answered.public_id, "bob-key-0001", "a", 1500)]
    )
    return {
        "owner": owner, "rival": rival, "mine": mine, "theirs": theirs, "also": also, "ann": ann, "bob": bob,
        "ann_lease": ann_lease.public_id, "bob_lease": bob_lease.public_id,
    }


def answers(client, project, lease_id, key="ann-key-0001"):
    body = [{"id": lease_id, "label": "a", "key": key, "time_ms": 1200}]
    return client.post(
        reverse("api-task-answers", args=[project.slug]), data=json.dumps(body), content_type="application/json"
    )


CASES = {
    # name: (who, request, expected status)
    "next: a project the worker is not admitted to": (
        "ann", lambda c, w: c.get(reverse("api-task-next", args=[w["theirs"].slug])), 404),
    "next: no such project": ("ann", lambda c, w: c.get(reverse("api-task-next", args=["nope"])), 404),
    "answers: a project the worker is not admitted to": (
        "ann", lambda c, w: answers(c, w["theirs"], w["ann_lease"]), 404),
    "answers: another worker's lease": ("ann", lambda c, w: answers(c, w["mine"], w["bob_lease"]), 404),
    "answers: own lease sent to another project": ("ann", lambda c, w: answers(c, w["also"], w["ann_lease"]), 404),
    "undo: another worker's answer": (
        "ann", lambda c, w: c.post(reverse("api-answer-undo", args=["bob-key-0001"])), 404),
    "image: another worker's lease": (
        "ann", lambda c, w: c.get(reverse("api-task-image", args=[w["bob_lease"]])), 404),
    "label page: a project the worker is not admitted to": (
        "ann", lambda c, w: c.get(reverse("worker-label", args=[w["theirs"].slug])), 404),
    "rules page: a worker, not the owner": (
        "ann", lambda c, w: c.get(reverse("project-workers", args=[w["mine"].slug])), 404),
    "rules page: another owner's project": (
        "owner", lambda c, w: c.get(reverse("project-workers", args=[w["theirs"].slug])), 404),
    "rules form: another owner's project": (
        "owner",
        lambda c, w: c.post(reverse("project-workers", args=[w["theirs"].slug]), {"rules-action": "banned"}),
        404,
    ),
    "admit: another owner's project": (
        "owner",
        lambda c, w: c.post(reverse("project-worker-admit", args=[w["theirs"].slug]), {"username": "ann"}),
        404,
    ),
    "remove: another owner's project": (
        "owner", lambda c, w: c.post(reverse("project-worker-remove", args=[w["theirs"].slug, w["bob"].pk])), 404),
    "next: an account that is not a worker": (
        "owner", lambda c, w: c.get(reverse("api-task-next", args=[w["mine"].slug])), 403),
    "next: not signed in": (None, lambda c, w: c.get(reverse("api-task-next", args=[w["mine"].slug])), 403),
    "answers: not signed in": (None, lambda c, w: answers(c, w["mine"], w["ann_lease"]), 403),
    "undo: not signed in": (None, lambda c, w: c.post(reverse("api-answer-undo", args=["bob-key-0001"])), 403),
    "image: not signed in": (None, lambda c, w: c.get(reverse("api-task-image", args=[w["ann_lease"]])), 403),
    "label page: not signed in": (None, lambda c, w: c.get(reverse("worker-label", args=[w["mine"].slug])), 302),
    "rules page: not signed in": (None, lambda c, w: c.get(reverse("project-workers", args=[w["mine"].slug])), 302),
}

ALLOWED = {
    # The same requests made by whoever may make them.
    "next: own project": ("ann", lambda c, w: c.get(reverse("api-task-next", args=[w["mine"].slug])), 200),
    "next: admitted by name": ("ann", lambda c, w: c.get(reverse("api-task-next", args=[w["also"].slug])), 200),
    "image: own lease": ("bob", lambda c, w: c.get(reverse("api-task-image", args=[w["bob_lease"]])), 200),
    "label page: open project": ("ann", lambda c, w: c.get(reverse("worker-label", args=[w["mine"].slug])), 200),
    "rules page: own project": ("owner", lambda c, w: c.get(reverse("project-workers", args=[w["mine"].slug])), 302),
    "rules page: staff": ("staff", lambda c, w: c.get(reverse("project-workers", args=[w["theirs"].slug])), 302),
}


def run_case(world, django_user_model, who, request):
    if who == "staff":
        user = django_user_model.objects.create_user("staffer", is_staff=True)
    else:
        user = None if who is None else getattr(world[who], "user", world[who])
    return request(client_for(user), world)


@pytest.mark.parametrize("name", list(CASES))
def test_a_request_for_someone_elses_object_is_refused_and_writes_nothing(world, django_user_model, name):
    who, request, expected = CASES[name]
    before = (
        list(Answer.objects.order_by("id").values_list("id", "worker_id", "item_id", "label_id")),
        list(Lease.objects.order_by("id").values_list("id", "expires_at")),
        list(ProjectMembership.objects.order_by("id").values_list("id", flat=True)),
    )
    response = run_case(world, django_user_model, who, request)
    assert response.status_code == expected, response.content[:300]
    if expected == 404 and response.get("Content-Type", "").startswith("application/json"):
        assert response.json()["detail"] in {"Not found.", "No such project.", "Unknown task id.", "Unknown answer."}
    after = (
        list(Answer.objects.order_by("id").values_list("id", "worker_id", "item_id", "label_id")),
        list(Lease.objects.order_by("id").values_list("id", "expires_at")),
        list(ProjectMembership.objects.order_by("id").values_list("id", flat=True)),
    )
    assert after == before


@pytest.mark.parametrize("name", list(ALLOWED))
def test_the_same_requests_succeed_for_whoever_may_make_them(world, django_user_model, name):
    who, request, expected = ALLOWED[name]
    assert run_case(world, django_user_model, who, request).status_code == expected


def test_a_lease_stops_working_once_the_worker_is_no_longer_admitted(world):
    svc.tasks_next(worker=world["ann"], project=world["also"], n=1)
    lease = Lease.objects.filter(worker=world["ann"], item__project=world["also"]).first()
    svc.membership_revoke(world["also"], world["ann"])
    client = client_for(world["ann"].user)
    assert client.get(reverse("api-task-image", args=[lease.public_id])).status_code == 404
    assert answers(client, world["also"], lease.public_id).status_code == 404


def test_nothing_the_api_returns_names_an_item_a_gold_flag_or_another_workers_answer(world):
    client = client_for(world["ann"].user)
    data = client.get(reverse("api-task-next", args=[world["mine"].slug]), {"n": 5}).json()
    text = json.dumps(data)
    for word in ("item_id", "is_control", "gold", "known", "consensus", "bob", "checksum", "n.png"):
        assert word not in text
    reply = answers(client, world["mine"], data["items"][0]["id"]).json()
    assert set(reply) == {"results", "worker", "message"}
    assert set(reply["results"][0]) == {"id", "key", "status", "skipped", "feedback"}


def test_the_answer_api_needs_the_csrf_token_of_the_session(world):
    client = client_for(world["ann"].user, csrf=True)
    page = client.get(reverse("worker-label", args=[world["mine"].slug]))
    assert answers(client, world["mine"], world["ann_lease"]).status_code == 403
    token = page.cookies["csrftoken"].value
    body = [{"id": world["ann_lease"], "label": "a", "key": "with-token-1", "time_ms": 1000}]
    response = client.post(
        reverse("api-task-answers", args=[world["mine"].slug]), data=json.dumps(body),
        content_type="application/json", HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 200 and response.json()["results"][0]["status"] == "stored"
    assert client.get(reverse("api-task-next", args=[world["mine"].slug])).status_code == 200


def test_a_paused_worker_is_told_so_by_every_worker_endpoint_and_their_home_page(world):
    undo_me = svc.tasks_next(worker=world["ann"], project=world["mine"], n=2).leases[-1]
    svc.task_answers_submit(
        worker=world["ann"], project=world["mine"], answers=[svc.TaskAnswer(undo_me.public_id, "ann-key-0001", "a", 1500)]
    )
    svc.worker_status_change(world["ann"], "paused", reason="too many skips in a row (test)", project=world["mine"])
    client = client_for(world["ann"].user)
    responses = [
        client.get(reverse("api-task-next", args=[world["mine"].slug])),
        answers(client, world["mine"], world["ann_lease"]),
        client.post(reverse("api-answer-undo", args=["ann-key-0001"])),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert all(r.json()["status"] == "paused" for r in responses)
    home = client.get(reverse("worker-home")).content.decode()
    assert "too many skips in a row (test)" in home and "paused" in home
    label_page = client.get(reverse("worker-label", args=[world["mine"].slug])).content.decode()
    assert "label.js" not in label_page and "you cannot label for now" in label_page
