"""A worker's status belongs to a project: an owner's ban or a project's quality rules
never reach another owner's project; only staff act on the whole platform."""
import random

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from labeling import bridge
from labeling.models import Answer, QualityRules, Worker, WorkerDecision, WorkerProjectStatus, WorkerStatus
from labeling.services import workers as svc
from labeling.services.challenges import ChallengeRefused, challenge_issue
from labeling.services.worker_status import GlobalStatusRefused, worker_status_in
from tests.labeling.crowd import crowd_project, new_key, registered_worker, simulate
from tests.labeling.widget_support import VISITOR, project_make, site_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    """Two owners' projects; worker ``w`` has answered one item in each."""
    users = get_user_model().objects
    alice, bob = users.create_user("alice"), users.create_user("bob")
    staff = users.create_user("root", is_staff=True)
    a, _ = crowd_project(name="Alice's", owner=alice, n_unknown=10, n_gold=0)
    b, _ = crowd_project(name="Bob's", owner=bob, n_unknown=10, n_gold=0)
    w = registered_worker("w")
    for project in (a, b):
        lease = svc.tasks_next(worker=w, project=project, n=1).leases[0]
        svc.task_answers_submit(worker=w, project=project, answers=[svc.TaskAnswer(lease.public_id, new_key(), "a", 2000)])
    return {"alice": alice, "bob": bob, "staff": staff, "a": a, "b": b, "w": w}


def _status_url(project, worker):
    return reverse("dashboard:worker-status", args=[project.slug, worker.pk])


def _counted(project, worker):
    return bridge.counted_answers(project).filter(worker=worker).count()


def test_an_owners_ban_keeps_the_worker_out_of_that_project_only(world, client):
    w, a, b = world["w"], world["a"], world["b"]
    client.force_login(world["alice"])
    client.post(_status_url(a, w), {"status": "banned", "reason": "copies answers"})
    w.refresh_from_db()
    assert w.status == WorkerStatus.ACTIVE
    assert worker_status_in(w, a) == WorkerStatus.BANNED and worker_status_in(w, b) == WorkerStatus.ACTIVE
    with pytest.raises(svc.WorkerNotActive, match="You are banned"):
        svc.tasks_next(worker=w, project=a, n=1)
    assert svc.tasks_next(worker=w, project=b, n=1).leases
    assert _counted(a, w) == 0 and _counted(b, w) == 1
    assert a.items.filter(answers__worker=w).get().answer_count == 0
    assert b.items.filter(answers__worker=w).get().answer_count == 1
    decision = WorkerDecision.objects.get(worker=w)
    assert decision.project == a and decision.decided_by == world["alice"]


def test_an_owner_cannot_set_a_status_in_another_owners_project(world, client):
    client.force_login(world["alice"])
    response = client.post(_status_url(world["b"], world["w"]), {"status": "banned", "reason": "not mine"})
    assert response.status_code == 404
    assert not WorkerProjectStatus.objects.exists() and not WorkerDecision.objects.exists()


def test_an_owner_cannot_ban_platform_wide(world, client):
    client.force_login(world["alice"])
    response = client.post(_status_url(world["a"], world["w"]), {"status": "banned", "reason": "x", "everywhere": "on"})
    assert response.status_code == 403
    assert Worker.objects.get(pk=world["w"].pk).status == WorkerStatus.ACTIVE
    assert not WorkerDecision.objects.exists()
    with pytest.raises(GlobalStatusRefused):
        svc.worker_status_change(world["w"], WorkerStatus.BANNED, reason="x", by=world["alice"])


def test_a_staff_ban_holds_in_every_project_and_lifting_it_restores_the_counts(world, client):
    w, a, b = world["w"], world["a"], world["b"]
    client.force_login(world["staff"])
    client.post(_status_url(a, w), {"status": "banned", "reason": "bot farm", "everywhere": "on"})
    w.refresh_from_db()
    assert w.status == WorkerStatus.BANNED and not WorkerProjectStatus.objects.exists()
    for project in (a, b):
        assert worker_status_in(w, project) == WorkerStatus.BANNED and _counted(project, w) == 0
        with pytest.raises(svc.WorkerNotActive, match="Your account is banned"):
            svc.tasks_next(worker=w, project=project, n=1)
    decision = WorkerDecision.objects.get(worker=w)
    assert decision.project is None
    client.post(reverse("dashboard:decision-undo", args=[a.slug, decision.pk]))
    assert _counted(a, w) == 1 and _counted(b, w) == 1


def test_an_owner_cannot_undo_or_read_another_projects_decision(world, client):
    w, a, b = world["w"], world["a"], world["b"]
    decision = svc.worker_status_change(w, WorkerStatus.BANNED, reason="secret reason of alice", project=a, by=world["alice"])
    client.force_login(world["bob"])
    response = client.post(reverse("dashboard:decision-undo", args=[b.slug, decision.pk]))
    assert response.status_code == 404
    assert worker_status_in(w, a) == WorkerStatus.BANNED
    page = client.get(reverse("dashboard:worker", args=[b.slug, w.pk])).content.decode()
    assert "secret reason of alice" not in page


def test_quality_rules_pause_a_worker_in_their_own_project_only():
    strict, _ = crowd_project(name="Strict", labels=tuple("0123456789"), n_unknown=60, n_gold=30, gold_share=0.5)
    QualityRules.objects.create(project=strict, action="banned")
    other, _ = crowd_project(name="Other", n_unknown=5, n_gold=0)
    spammer = registered_worker("spammer")
    simulate(spammer, strict, {f"item {i}": str(i % 10) for i in range(90)}, p_correct=None, rng=random.Random(1))
    assert worker_status_in(spammer, strict) == WorkerStatus.BANNED
    assert Worker.objects.get(pk=spammer.pk).status == WorkerStatus.ACTIVE
    assert WorkerDecision.objects.get(worker=spammer).project == strict
    assert svc.tasks_next(worker=spammer, project=other, n=1).leases


def test_answers_count_unless_their_worker_is_banned_in_the_answers_project(world):
    w, a, b = world["w"], world["a"], world["b"]
    svc.worker_status_change(w, WorkerStatus.BANNED, reason="x", project=a)
    counted = set(Answer.objects.filter(worker=w).without_banned_workers().values_list("item__project", flat=True))
    assert counted == {b.pk}


def test_a_visitor_banned_in_one_project_is_challenged_only_from_the_others():
    mine, theirs = project_make(name="Mine"), project_make(name="Theirs")
    site = site_make(mine)[0]
    site.projects.add(theirs)
    visitor = challenge_issue(sitekey=site.sitekey, client=VISITOR).worker
    svc.worker_status_change(visitor, WorkerStatus.BANNED, reason="bot", project=mine)
    for _ in range(4):
        assert challenge_issue(sitekey=site.sitekey, client=VISITOR).project == theirs
    site.projects.remove(theirs)
    with pytest.raises(ChallengeRefused) as refused:
        challenge_issue(sitekey=site.sitekey, client=VISITOR)
    assert refused.value.code == "visitor-blocked"
