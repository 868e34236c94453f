"""The label audit sends suspect labels back to people, logs each decision and lets the
owner reverse it. A small text project whose words give the class away, so that the
cheap candidates are sure of every item and the flipped labels stand out."""
import pytest
from django.urls import reverse

from labeling.models import (
    AuditAction,
    AuditDecision,
    AuditKind,
    AuditOutcome,
    Consensus,
    ControlPoolEntry,
    Item,
    ItemStatus,
    KnownLabel,
    PipelineKind,
    PseudoLabel,
    PseudoLabelSource,
    RunStatus,
    Worker,
)
from labeling.services import audit
from labeling.services.answers import AnswerInput, answers_record
from labeling.services.control_pool import pool_refresh
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db

WORDS = {
    "cat": "cat kitten meow whiskers purr feline litter",
    "dog": "dog puppy bark fetch leash canine kennel",
    "bird": "bird feather wing beak nest tweet flock",
}


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("owner", password="pw")


@pytest.fixture
def project(owner):
    """90 items, 30 per class: 24 per class labeled by consensus, 3 gold, 3 pseudo."""
    project = project_create(
        name="Pets", labels=list(WORDS), data_kind="text", owner=owner, answers_per_item=2, max_answers_per_item=8
    )
    labels = {label.name: label for label in project.label_classes.all()}
    n = 0
    for name, words in WORDS.items():
        for i in range(30):
            item = Item.objects.create(project=project, text=f"{words} {i}", checksum=f"{n:064d}")
            n += 1
            if i < 3:
                KnownLabel.objects.create(item=item, label=labels[name])
                Item.objects.filter(pk=item.pk).update(status=ItemStatus.LABELED)
            elif i < 6:
                PseudoLabel.objects.create(item=item, label=labels[name], confidence=0.99,
                                           source=PseudoLabelSource.PROPAGATION, accepted=True)
                Item.objects.filter(pk=item.pk).update(status=ItemStatus.PSEUDO_LABELED)
            else:
                Consensus.objects.create(item=item, label=labels[name], confidence=0.99, n_answers=2, method="test")
                Item.objects.filter(pk=item.pk).update(status=ItemStatus.LABELED)
    return project


@pytest.fixture
def labels(project):
    return {label.name: label for label in project.label_classes.all()}


def _item(project, name, i):
    return Item.objects.get(project=project, text=f"{WORDS[name]} {i}")


def _answer(item, label):
    worker = Worker.objects.create()
    answers_record(worker=worker, inputs=[AnswerInput(item=item, label_id=label.pk, task_ref="t")], source="worker")


@pytest.fixture
def flipped(project, labels):
    """A dog item two workers called a cat, a bird gold item filed as a dog, and a cat
    item pseudo-labeled as a bird."""
    consensus_item = _item(project, "dog", 10)
    Consensus.objects.filter(item=consensus_item).delete()
    Item.objects.filter(pk=consensus_item.pk).update(status=ItemStatus.UNLABELED)
    _answer(consensus_item, labels["cat"])
    _answer(consensus_item, labels["cat"])
    gold_item = _item(project, "bird", 1)
    KnownLabel.objects.filter(item=gold_item).update(label=labels["dog"])
    pseudo_item = _item(project, "cat", 4)
    PseudoLabel.objects.filter(item=pseudo_item).update(label=labels["bird"])
    consensus_item.refresh_from_db()
    assert consensus_item.status == ItemStatus.LABELED
    pool_refresh(project)
    return {"consensus": consensus_item, "gold": gold_item, "pseudo": pseudo_item}


def test_each_kind_of_suspect_goes_back_to_people_and_nothing_else_does(project, labels, flipped):
    run = audit.project_audit(project)
    assert run.kind == PipelineKind.AUDIT and run.status == RunStatus.SUCCEEDED, run.error
    decisions = {d.item_id: d for d in AuditDecision.objects.filter(project=project)}
    assert set(decisions) == {item.pk for item in flipped.values()}

    reopened = decisions[flipped["consensus"].pk]
    assert (reopened.kind, reopened.action, reopened.outcome) == (AuditKind.CONSENSUS, AuditAction.REOPENED, AuditOutcome.PENDING)
    assert (reopened.given_label, reopened.model_label) == (labels["cat"], labels["dog"])
    assert 0 <= reopened.score < 0.5 and reopened.answers_before == 2
    item = Item.objects.get(pk=flipped["consensus"].pk)
    assert item.status == ItemStatus.UNLABELED and item.priority == audit.AUDIT_PRIORITY
    assert Consensus.objects.get(item=item).label == labels["cat"]  # nothing deleted

    suspended = decisions[flipped["gold"].pk]
    assert (suspended.kind, suspended.action) == (AuditKind.GOLD, AuditAction.SUSPENDED)
    assert KnownLabel.objects.get(item=flipped["gold"]).suspended_at is not None
    pool_refresh(project)
    in_pool = set(ControlPoolEntry.objects.filter(project=project).values_list("item_id", flat=True))
    gold = set(KnownLabel.objects.filter(item__project=project).values_list("item_id", flat=True))
    assert flipped["gold"].pk not in in_pool and gold - {flipped["gold"].pk} <= in_pool  # the other gold stays
    assert flipped["consensus"].pk not in in_pool

    demoted = decisions[flipped["pseudo"].pk]
    assert (demoted.kind, demoted.action) == (AuditKind.PSEUDO, AuditAction.DEMOTED)
    assert not PseudoLabel.objects.get(item=flipped["pseudo"]).accepted
    assert Item.objects.get(pk=flipped["pseudo"].pk).status == ItemStatus.UNLABELED


def test_a_second_round_does_not_send_the_same_labels_back_again(project, flipped):
    audit.project_audit(project)
    run = audit.project_audit(project)
    assert run.result["acted"] == 0
    assert AuditDecision.objects.filter(project=project).count() == 3


def test_a_reopened_item_needs_new_answers_and_then_records_the_change(project, labels, flipped):
    audit.project_audit(project)
    item = flipped["consensus"]
    from labeling.services.consensus import project_aggregate

    project_aggregate(project)  # a full truth-inference run does not settle it again
    item.refresh_from_db()
    assert item.status == ItemStatus.UNLABELED
    for _ in range(6):
        _answer(item, labels["dog"])
        item.refresh_from_db()
        if item.status == ItemStatus.LABELED:
            break
    decision = AuditDecision.objects.get(item=item)
    assert item.status == ItemStatus.LABELED and Consensus.objects.get(item=item).label == labels["dog"]
    assert (decision.outcome, decision.final_label) == (AuditOutcome.CHANGED, labels["dog"])
    assert decision.resolved_at is not None


def test_agreeing_answers_confirm_a_reopened_label(project, labels):
    item = _item(project, "cat", 12)
    acted = audit.suspects_act(project, [(item.pk, labels["cat"].pk, labels["dog"].pk, 0.2)], audit.given_labels(project), budget=5)
    assert acted == 1
    _answer(item, labels["cat"])
    item.refresh_from_db()
    assert item.status == ItemStatus.UNLABELED  # one new answer is not enough
    _answer(item, labels["cat"])
    item.refresh_from_db()
    decision = AuditDecision.objects.get(item=item)
    assert item.status == ItemStatus.LABELED
    assert (decision.outcome, decision.final_label) == (AuditOutcome.CONFIRMED, labels["cat"])


def test_people_settle_a_demoted_pseudo_label_which_no_round_accepts_meanwhile(project, labels, flipped):
    from labeling.services.audit import held_items

    audit.project_audit(project)
    item = flipped["pseudo"]
    assert held_items([item.pk]) == {item.pk: {}}  # what the round checks before accepting
    for _ in range(4):  # the demoted pseudo-label still weighs as a prior: it takes a few answers
        _answer(item, labels["cat"])
        item.refresh_from_db()
        if item.status == ItemStatus.LABELED:
            break
    decision = AuditDecision.objects.get(item=item)
    assert item.status == ItemStatus.LABELED
    assert (decision.outcome, decision.final_label) == (AuditOutcome.CHANGED, labels["cat"])


def test_a_suspect_with_no_answer_left_goes_to_review_for_the_owner(project, labels):
    item = _item(project, "cat", 13)
    Item.objects.filter(pk=item.pk).update(answer_count=project.max_answers_per_item)
    audit.suspects_act(project, [(item.pk, labels["cat"].pk, labels["dog"].pk, 0.2)], audit.given_labels(project), budget=5)
    decision = AuditDecision.objects.get(item=item)
    assert decision.outcome == AuditOutcome.REVIEW and decision.resolved_at is not None
    assert Item.objects.get(pk=item.pk).status == ItemStatus.REVIEW


def test_each_decision_can_be_reversed(project, labels, flipped, owner):
    audit.project_audit(project)
    for decision in AuditDecision.objects.filter(project=project):
        audit.decision_reverse(decision, user=owner)
        decision.refresh_from_db()
        assert decision.outcome == AuditOutcome.REVERSED and decision.reversed_at and decision.decided_by == owner
    assert Item.objects.get(pk=flipped["consensus"].pk).status == ItemStatus.LABELED
    assert KnownLabel.objects.get(item=flipped["gold"]).suspended_at is None
    assert PseudoLabel.objects.get(item=flipped["pseudo"]).accepted
    assert Item.objects.get(pk=flipped["pseudo"].pk).status == ItemStatus.PSEUDO_LABELED
    pool_refresh(project)
    assert ControlPoolEntry.objects.filter(item=flipped["gold"]).exists()
    with pytest.raises(audit.AuditRefused, match="already reversed"):
        audit.decision_reverse(decision, user=owner)
    assert audit.project_audit(project).result["acted"] == 0  # a reversed label is not sent back again


def test_the_owner_fixes_a_suspended_gold_item(project, labels, flipped, owner):
    audit.project_audit(project)
    decision = AuditDecision.objects.get(item=flipped["gold"])
    audit.gold_resolve(decision, labels["bird"], user=owner)
    decision.refresh_from_db()
    known = KnownLabel.objects.get(item=flipped["gold"])
    assert (known.label, known.suspended_at) == (labels["bird"], None)
    assert (decision.outcome, decision.final_label) == (AuditOutcome.CHANGED, labels["bird"])
    pool_refresh(project)
    assert ControlPoolEntry.objects.get(item=flipped["gold"]).label == labels["bird"]
    with pytest.raises(audit.AuditRefused, match="pending suspended gold"):
        audit.gold_resolve(decision, labels["bird"], user=owner)


def test_a_round_with_few_labels_acts_on_nothing(owner):
    project = project_create(name="Tiny", labels=["a", "b"], data_kind="text", owner=owner)
    run = audit.project_audit(project)
    assert run.result["acted"] == 0 and "fewer than" in run.result["skipped"]


def test_a_successful_training_run_queues_an_audit_unless_turned_off(
    project, settings, django_capture_on_commit_callbacks
):
    from labeling import tasks
    from labeling.models import OutboxMessage

    with django_capture_on_commit_callbacks(execute=True):
        assert audit.audit_after_training(project)
        settings.CROWDLOOP_AUDIT_AFTER_TRAINING = False
        assert not audit.audit_after_training(project)
    queued = OutboxMessage.objects.filter(task=tasks.cpu_audit_task.name)
    assert [message.args for message in queued] == [[project.pk]]


# --- Who may see and act ------------------------------------------------------------------------


@pytest.fixture
def audited(project, flipped):
    audit.project_audit(project)
    return AuditDecision.objects.get(item=flipped["consensus"])


def _urls(project, decision):
    return {
        "page": reverse("dashboard:audit", args=[project.slug]),
        "start": reverse("dashboard:audit-start", args=[project.slug]),
        "reverse": reverse("dashboard:audit-reverse", args=[project.slug, decision.pk]),
        "gold": reverse("dashboard:audit-gold", args=[project.slug, decision.pk]),
        "api": reverse("api-audit", args=[project.slug]),
        "api-reverse": reverse("api-audit-reverse", args=[project.slug, decision.pk]),
    }


def test_the_owner_sees_the_suspects_and_the_overview_counts(client, owner, project, audited, labels):
    client.force_login(owner)
    html = client.get(_urls(project, audited)["page"]).content.decode()
    assert f"#{audited.item_id}" in html and "Back to the crowd for more answers" in html
    assert "Control use stopped" in html and "Pseudo-label demoted" in html
    AuditDecision.objects.filter(pk=audited.pk).update(outcome=AuditOutcome.CHANGED)
    overview = client.get(reverse("dashboard:overview", args=[project.slug])).content.decode()
    assert "1 labels changed and 0 confirmed" in overview
    payload = client.get(_urls(project, audited)["api"]).json()
    assert payload["counts"]["changed"] == 1 and len(payload["decisions"]) == 3


def test_the_page_costs_the_same_queries_for_more_decisions(client, owner, project, audited, django_assert_max_num_queries):
    client.force_login(owner)
    url = _urls(project, audited)["page"]
    client.get(url)
    with django_assert_max_num_queries(14):
        client.get(url)


def test_the_owner_reverses_on_the_dashboard_and_through_the_api(client, owner, project, audited, flipped):
    client.force_login(owner)
    urls = _urls(project, audited)
    assert client.post(urls["reverse"]).status_code == 302
    audited.refresh_from_db()
    assert audited.outcome == AuditOutcome.REVERSED
    gold = AuditDecision.objects.get(item=flipped["gold"])
    response = client.post(reverse("api-audit-reverse", args=[project.slug, gold.pk]))
    assert response.status_code == 200 and response.json()["outcome"] == "reversed"
    assert client.post(reverse("api-audit-reverse", args=[project.slug, gold.pk])).status_code == 400


def test_staff_may_see_and_act(client, django_user_model, project, audited):
    client.force_login(django_user_model.objects.create_user("staff", is_staff=True))
    urls = _urls(project, audited)
    assert client.get(urls["page"]).status_code == 200
    assert client.post(urls["reverse"]).status_code == 302
    audited.refresh_from_db()
    assert audited.outcome == AuditOutcome.REVERSED


def test_another_owner_and_anonymous_visitors_can_neither_see_nor_act(client, django_user_model, project, audited, labels):
    other = django_user_model.objects.create_user("other")
    project_create(name="Theirs", labels=["x", "y"], data_kind="text", owner=other)
    urls = _urls(project, audited)
    for name in ("page",):
        response = client.get(urls[name])
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    for name in ("start", "reverse", "gold"):
        assert client.post(urls[name], {"label": labels["dog"].pk}).status_code == 302
    assert client.get(urls["api"]).status_code in (401, 403)
    client.force_login(other)
    assert client.get(urls["page"]).status_code == 404
    for name in ("start", "reverse", "gold"):
        assert client.post(urls[name], {"label": labels["dog"].pk}).status_code == 404
    assert client.get(urls["api"]).status_code == 404
    assert client.post(urls["api"]).status_code == 404
    assert client.post(urls["api-reverse"]).status_code == 404
    theirs = reverse("dashboard:audit-reverse", args=["theirs", audited.pk])  # their slug, our decision
    assert client.post(theirs).status_code == 404
    audited.refresh_from_db()
    assert audited.outcome == AuditOutcome.PENDING and audited.reversed_at is None
    assert not AuditDecision.objects.filter(reversed_at__isnull=False).exists()


def test_the_audit_runs_from_the_command_line(project, flipped, capsys):
    from django.core.management import CommandError, call_command

    call_command("audit_run", project.slug)
    assert '"acted": 3' in capsys.readouterr().out
    with pytest.raises(CommandError, match="no project"):
        call_command("audit_run", "nope")
