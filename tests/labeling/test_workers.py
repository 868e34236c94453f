import random

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from labeling.models import (
    Answer,
    Consensus,
    Item,
    ItemStatus,
    Lease,
    ProjectMembership,
    QualityRules,
    WorkerDecision,
    WorkerSkill,
)
from labeling.selectors import workers as worker_selectors
from labeling.services import workers as svc
from labeling.services.consensus import project_aggregate
from labeling.services.demo import demo_crowd_open, demo_worker_create
from labeling.worker_api import label_hotkeys
from tests.labeling.crowd import (  # noqa: F401
    crowd_project,
    local_cache,
    new_key,
    registered_worker,
    simulate,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_cache")]

DIGITS = tuple(str(k) for k in range(10))


def answer_lease(worker, project, lease, label, time_ms=2000):
    return svc.task_answers_submit(
        worker=worker, project=project, answers=[svc.TaskAnswer(lease.public_id, new_key(), label, time_ms)]
    )


# --- Accounts and admission -------------------------------------------------------------------


def test_sign_up_creates_a_registered_worker_and_refuses_weak_passwords_and_taken_names():
    user = svc.worker_sign_up(username="ann", password="correct horse battery", email="ann@example.org")
    assert user.check_password("correct horse battery")
    assert user.worker.kind == "registered" and user.worker.status == "active"
    with pytest.raises(ValidationError, match="too common|too short"):
        svc.worker_sign_up(username="bob", password="password")
    with pytest.raises(ValidationError, match="taken"):
        svc.worker_sign_up(username="ANN", password="another good passphrase")
    assert get_user_model().objects.count() == 1


def test_the_sign_up_page_logs_the_new_worker_in_and_shows_their_projects():
    project, _ = crowd_project(name="Open texts")
    client = Client()
    response = client.post(
        reverse("worker-signup"),
        {"username": "ann", "email": "", "password": "correct horse battery", "password2": "correct horse battery"},
    )
    assert response.status_code == 302 and response["Location"] == reverse("worker-home")
    home = client.get(reverse("worker-home"))
    assert home.status_code == 200
    html = home.content.decode()
    assert "Open texts" in html and reverse("worker-label", args=[project.slug]) in html
    mismatch = Client().post(
        reverse("worker-signup"), {"username": "bob", "password": "correct horse battery", "password2": "other"}
    )
    assert mismatch.status_code == 400 and "differ" in mismatch.content.decode()


def test_a_worker_sees_open_projects_and_those_they_are_admitted_to():
    open_project, _ = crowd_project(name="Open")
    closed, _ = crowd_project(name="Closed", open_to_all_workers=False)
    worker = registered_worker("ann")
    assert list(svc.projects_for_worker(worker)) == [open_project]
    svc.membership_grant(closed, worker)
    assert set(svc.projects_for_worker(worker)) == {open_project, closed}
    lease = svc.tasks_next(worker=worker, project=closed, n=1).leases[0]
    svc.membership_revoke(closed, worker)
    assert list(svc.projects_for_worker(worker)) == [open_project]
    lease.refresh_from_db()
    assert lease.expires_at <= timezone.now()  # the item went back to the queue


def test_the_labeling_page_has_hotkeyed_buttons_and_no_inline_script():
    project, _ = crowd_project(labels=DIGITS, name="Digits")
    client = Client()
    client.force_login(registered_worker("ann").user)
    response = client.get(reverse("worker-label", args=[project.slug]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert html.count("<script") == html.count('<script src="/static/worker/label.js" defer>') == 1
    assert 'aria-keyshortcuts="1"' in html and 'aria-keyshortcuts="0"' in html and "style=" not in html
    assert reverse("api-task-next", args=[project.slug]) in html


@pytest.mark.parametrize(
    "names, keys",
    [
        (DIGITS, list(DIGITS)),
        (("cat", "dog"), ["1", "2"]),
        (("3", "7", "x"), ["1", "2", "3"]),
        (tuple(f"l{i}" for i in range(12)), list("1234567890") + [None, None]),
    ],
)
def test_digit_labels_keep_their_own_key_and_others_are_numbered_by_position(names, keys):
    assert label_hotkeys(names) == keys


# --- Rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_a_spammer_is_paused_within_ten_control_answers_and_honest_workers_are_not(seed):
    project, truth = crowd_project(labels=DIGITS, n_unknown=300, n_gold=60, gold_share=0.3)
    rng = random.Random(seed)
    spammer = registered_worker("spammer")
    honest = [registered_worker(f"honest{i}") for i in range(3)]

    controls = simulate(spammer, project, truth, p_correct=None, rng=rng)
    assert svc.worker_status_in(spammer, project) == "paused" and controls <= 10
    decision = spammer.decisions.get()
    assert decision.automatic and decision.project == project and decision.reason.startswith("accuracy")

    for worker in honest:
        given = simulate(worker, project, truth, p_correct=0.85, rng=rng, per_submit=10, stop_after_controls=40)
        assert svc.worker_status_in(worker, project) == "active" and given >= 40
    assert not WorkerDecision.objects.filter(worker__in=honest).exists()


def test_too_many_fast_answers_pause_a_worker():
    project, truth = crowd_project(n_unknown=40, n_gold=0)
    QualityRules.objects.create(project=project, control_window=10, min_answer_ms=800, max_fast_share=0.5)
    worker = registered_worker("quick")
    simulate(worker, project, truth, p_correct=1.0, rng=random.Random(0), time_ms=(200, 700), max_answers=9)
    assert svc.worker_status_in(worker, project) == "active"  # the window is not full yet
    simulate(worker, project, truth, p_correct=1.0, rng=random.Random(0), time_ms=(200, 700), max_answers=1)
    assert svc.worker_status_in(worker, project) == "paused"
    assert worker.decisions.get().reason == "10 of the last 10 answers faster than 800 ms (more than 50%)"


def test_too_many_skips_in_a_row_pause_a_worker_but_an_answer_resets_the_count():
    project, _ = crowd_project(n_unknown=20, n_gold=0)
    QualityRules.objects.create(project=project, max_skips_in_row=4)
    worker = registered_worker("skipper")
    leases = svc.tasks_next(worker=worker, project=project, n=12).leases
    skip = [svc.TaskAnswer(lease.public_id, new_key(), None) for lease in leases]
    svc.task_answers_submit(worker=worker, project=project, answers=skip[:3])
    answer_lease(worker, project, leases[3], "a")
    svc.task_answers_submit(worker=worker, project=project, answers=skip[4:7])
    assert svc.worker_status_in(worker, project) == "active"
    result = svc.task_answers_submit(worker=worker, project=project, answers=skip[7:8])
    assert result.status == "paused" and result.decision.reason == "4 skips in a row (limit 4)"
    with pytest.raises(svc.WorkerNotActive):
        svc.tasks_next(worker=worker, project=project, n=1)
    # Pausing gave the remaining leases back.
    assert not Lease.objects.filter(worker=worker, expires_at__gt=timezone.now()).exists()


# --- Bans and decisions -----------------------------------------------------------------------


def test_a_ban_takes_answers_out_of_consensus_and_returns_items_and_lifting_it_restores_them(django_user_model):
    project, _ = crowd_project(n_unknown=1, n_gold=0, answers_per_item=2, max_answers_per_item=3)
    item = project.items.get()
    bad, other, fresh = registered_worker("bad"), registered_worker("other"), registered_worker("fresh")
    for worker in (bad, other):
        answer_lease(worker, project, svc.tasks_next(worker=worker, project=project, n=1).leases[0], "c")
    item.refresh_from_db()
    assert item.status == ItemStatus.LABELED and item.answer_count == 2
    assert svc.tasks_next(worker=fresh, project=project, n=1).leases == []

    admin = django_user_model.objects.create_superuser("boss", password=None)
    ban = svc.worker_status_change(bad, "banned", reason="copied answers", by=admin)
    item.refresh_from_db()
    consensus = Consensus.objects.get(item=item)
    assert item.status == ItemStatus.UNLABELED and item.answer_count == 1 and consensus.n_answers == 1
    assert [lease.item for lease in svc.tasks_next(worker=fresh, project=project, n=1).leases] == [item]
    with pytest.raises(svc.WorkerNotActive):
        svc.tasks_next(worker=bad, project=project, n=1)

    lifted = svc.worker_decision_reverse(ban, by=admin)
    item.refresh_from_db()
    assert lifted.new_status == "active" and not lifted.automatic and lifted.decided_by == admin
    assert item.status == ItemStatus.LABELED and item.answer_count == 2
    assert Consensus.objects.get(item=item).n_answers == 2


def test_the_rules_can_ban_and_a_banned_spammers_answers_stop_counting():
    project, truth = crowd_project(labels=DIGITS, n_unknown=60, n_gold=20, gold_share=0.3)
    QualityRules.objects.create(project=project, action="banned")
    spammer = registered_worker("spammer")
    simulate(spammer, project, truth, p_correct=None, rng=random.Random(7))
    assert svc.worker_status_in(spammer, project) == "banned"
    answered = Item.objects.filter(answers__worker=spammer, known_label__isnull=True)
    assert answered.exists()
    assert all(item.answer_count == 0 and item.consensus.n_answers == 0 for item in answered)


def test_an_admin_reverses_a_pause_once_and_the_rules_judge_only_later_answers(django_user_model):
    project, truth = crowd_project(labels=DIGITS, n_unknown=60, n_gold=30, gold_share=0.5)
    spammer = registered_worker("spammer")
    simulate(spammer, project, truth, p_correct=None, rng=random.Random(1))
    decision = WorkerDecision.objects.get(worker=spammer)
    admin = django_user_model.objects.create_superuser("boss", password=None)
    client = Client()
    client.force_login(admin)
    response = client.post(
        reverse("admin:labeling_workerdecision_changelist"),
        {"action": "decisions_reverse", "_selected_action": [decision.pk]},
    )
    assert response.status_code == 302
    decision.refresh_from_db()
    assert svc.worker_status_in(spammer, project) == "active" and decision.reversed_at is not None
    reversal = WorkerDecision.objects.exclude(pk=decision.pk).get()
    assert reversal.reason.startswith(f"Reverses decision {decision.pk}") and reversal.decided_by == admin
    with pytest.raises(svc.DecisionError, match="already reversed"):
        svc.worker_decision_reverse(decision)
    # A fresh start: the old wrong answers no longer count, so one more is no reason to pause.
    lease = svc.tasks_next(worker=spammer, project=project, n=4, rng=random.Random(0)).leases[0]
    assert answer_lease(spammer, project, lease, "0").decision is None
    svc.worker_status_change(spammer, "banned", reason="manual", project=project)
    with pytest.raises(svc.DecisionError, match="no longer"):
        svc.worker_decision_reverse(reversal)


# --- Reputation -------------------------------------------------------------------------------


def test_one_right_control_answer_is_not_full_accuracy_and_the_interval_says_so():
    assert worker_selectors.wilson_interval(0, 0) == (0.0, 1.0)
    low, high = worker_selectors.wilson_interval(1, 1)
    assert low < 0.25 and high == 1.0
    low, high = worker_selectors.wilson_interval(85, 100)
    assert low < 0.85 < high and high - low < 0.15
    project, truth = crowd_project(n_unknown=4, n_gold=4, gold_share=0.5)
    worker = registered_worker("ann")
    leases = svc.tasks_next(worker=worker, project=project, n=2, rng=random.Random(0)).leases
    control = next(lease for lease in leases if lease.is_control)
    answer_lease(worker, project, control, truth[control.item.text])
    reputation = worker_selectors.worker_reputation(worker, project)
    assert reputation.controls == reputation.controls_correct == 1
    assert 0.7 < reputation.accuracy < 0.8 and reputation.interval[0] < 0.25


def test_reputation_reports_answer_times_agreement_and_the_estimated_confusion_matrix(django_user_model):
    owner = django_user_model.objects.create_user("owner")
    project, truth = crowd_project(n_unknown=12, n_gold=6, gold_share=0.3, owner=owner)
    rng = random.Random(2)
    workers = [registered_worker(f"w{i}") for i in range(3)]
    for worker in workers:
        simulate(worker, project, truth, p_correct=1.0, rng=rng, time_ms=(500, 1500))
    project_aggregate(project)
    reputation = worker_selectors.worker_reputation(workers[0], project)
    assert reputation.answers == Answer.objects.filter(worker=workers[0]).count() > 10
    assert 500 <= reputation.median_ms <= 1500 and 0 < reputation.fast_share < 1 and reputation.min_answer_ms == 800
    assert reputation.agreement == 1.0 and reputation.agreement_n > 0
    assert reputation.skill == WorkerSkill.objects.get(worker=workers[0]).accuracy
    assert len(reputation.confusion) == 3 and reputation.labels == ["a", "b", "c"]


def _owners_page_queries(project):
    with CaptureQueriesContext(connection) as queries:
        rows = worker_selectors.project_workers(project)
    return len(queries), rows


def test_project_workers_costs_the_same_queries_for_two_workers_as_for_five(django_user_model):
    owner = django_user_model.objects.create_user("owner")
    project, truth = crowd_project(n_unknown=40, n_gold=6, gold_share=0.3, owner=owner)
    rng = random.Random(3)
    workers = [registered_worker(f"w{i}") for i in range(5)]
    for worker in workers[:2]:
        simulate(worker, project, truth, p_correct=0.9, rng=rng, max_answers=6, time_ms=(500, 1500))
    project_aggregate(project)
    few, rows = _owners_page_queries(project)
    assert len(rows) == 2
    for worker in workers[2:]:
        simulate(worker, project, truth, p_correct=0.9, rng=rng, max_answers=6, time_ms=(500, 1500))
    project_aggregate(project)
    many, rows = _owners_page_queries(project)
    assert len(rows) == 5
    assert many == few
    for worker, reputation in rows:
        assert reputation == worker_selectors.worker_reputation(worker, project)
        assert worker.status_here == "active"
    client = Client()
    client.force_login(owner)
    page = client.get(reverse("project-workers", args=[project.slug]), follow=True).content.decode()
    assert "w0" in page
    detail = client.get(reverse("dashboard:worker", args=[project.slug, workers[0].pk])).content.decode()
    assert "Estimated confusion matrix" in detail


# --- Project owners ---------------------------------------------------------------------------


def test_an_owner_sets_the_rules_admits_and_removes_workers_on_their_project(django_user_model):
    owner = django_user_model.objects.create_user("owner")
    project, _ = crowd_project(owner=owner, open_to_all_workers=False)
    worker = registered_worker("ann")
    client = Client()
    client.force_login(owner)
    url = reverse("project-workers", args=[project.slug])
    assert client.get(url).status_code == 302
    form = {
        "crowd-open_to_all_workers": "", "crowd-show_control_feedback": "on", "crowd-gold_share": "0.2",
        "rules-control_window": "30", "rules-min_control_answers": "12", "rules-min_control_accuracy": "0.55",
        "rules-min_answer_ms": "600", "rules-max_fast_share": "0.4", "rules-max_skips_in_row": "15",
        "rules-action": "banned",
    }
    assert client.post(url, form).status_code == 302
    rules = QualityRules.objects.get(project=project)
    assert (rules.control_window, rules.min_control_answers, rules.action) == (30, 12, "banned")
    project.refresh_from_db()
    assert project.gold_share == 0.2
    assert client.post(url, {**form, "rules-min_control_accuracy": "1.5"}).status_code == 400
    assert client.post(url, {**form, "rules-min_control_answers": "31"}).status_code == 400
    assert QualityRules.objects.get(project=project).min_control_answers == 12
    client.post(reverse("project-worker-admit", args=[project.slug]), {"username": "ann"})
    assert ProjectMembership.objects.filter(project=project, worker=worker).exists()
    assert "ann" in client.get(url, follow=True).content.decode()
    client.post(reverse("project-worker-remove", args=[project.slug, worker.pk]))
    assert not ProjectMembership.objects.exists()


def test_the_demo_project_is_open_to_all_and_has_a_demo_worker():
    project, _ = crowd_project(open_to_all_workers=False)
    demo_crowd_open(project)
    password = demo_worker_create()
    user = get_user_model().objects.get(username="worker")
    assert password and user.check_password(password)
    assert list(svc.projects_for_worker(user.worker)) == [project]
    assert QualityRules.objects.get(project=project).min_answer_ms == 300
    assert demo_worker_create() is None
