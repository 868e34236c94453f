"""Answers from a passed challenge weigh what the pass proves: a lucky pass with few
control tiles moves a label less than a pass that no blind guesser would make."""
import random
from datetime import timedelta

import numpy as np
import pytest

from labeling import bridge
from labeling.models import Answer, ChallengeKind, Consensus, Item, Worker, WorkerKind
from labeling.services import difficulty
from labeling.services.answers import AnswerInput, answers_record
from labeling.services.challenge_answers import challenge_answer
from labeling.services.challenges import ClientInfo, challenge_issue
from tests.labeling.widget_support import HOST, fresh_cache, project_make, site_make, solution  # noqa: F401

pytestmark = pytest.mark.django_db


def test_the_weight_is_how_sure_a_pass_makes_us_that_the_visitor_looked():
    lucky = difficulty.looked_probability(ChallengeKind.GRID, 10, 1, 1)  # a coin flip won
    two = difficulty.looked_probability(ChallengeKind.GRID, 10, 2, 2)
    sure = difficulty.looked_probability(ChallengeKind.GRID, 10, 8, 8)
    one_miss = difficulty.looked_probability(ChallengeKind.GRID, 10, 8, 7)
    choice = difficulty.looked_probability(ChallengeKind.CHOICE, 10, 2, 2)
    assert lucky == pytest.approx(0.9 / 1.4)
    assert lucky < two < one_miss < sure < 1
    assert two == pytest.approx(0.764, abs=1e-3) and choice > 0.98 and sure > 0.99
    assert difficulty.looked_probability(ChallengeKind.CHOICE, 3, 0, 0) == 0.5


def test_a_blind_answer_leaves_the_prior_and_a_sure_one_is_the_workers_own():
    confusion = bridge.aggregation._confusion(0.9, 3)
    assert np.allclose(bridge.blind_mix(confusion, 1.0), confusion)
    assert np.allclose(bridge.blind_mix(confusion, 0.0), np.full((3, 3), 1 / 3))


def _visitor(name):
    return Worker.objects.create(kind=WorkerKind.VISITOR, visitor_key=name * 64)


def test_with_the_same_record_a_lightly_weighted_answer_moves_a_label_less():
    project = project_make(data_kind="text", gold_per_class=1, unknown=4)
    label = project.label_classes.first()
    first, second = Item.objects.filter(project=project, known_label__isnull=True)[:2]
    for worker, item, weight in ((_visitor("a"), first, 0.64), (_visitor("b"), second, 0.99)):
        answers_record(
            worker=worker, source="widget",
            inputs=[AnswerInput(item=item, label_id=label.pk, task_ref="c", evidence_weight=weight)],
        )
    lucky, sure = Consensus.objects.get(item=first), Consensus.objects.get(item=second)
    assert lucky.label_id == sure.label_id == label.pk
    assert 1 / 3 < lucky.confidence < sure.confidence


def _pass(site, ip, unknown):
    client = ClientInfo(ip=ip, user_agent="ua", hostname=HOST)
    challenge = challenge_issue(sitekey=site.sitekey, client=client, kind=ChallengeKind.CHOICE,
                                rng=random.Random(ip))
    outcome = challenge_answer(
        challenge_id=str(challenge.pk), data=solution(challenge, unknown=unknown), client=client,
        now=challenge.issued_at + timedelta(seconds=5),
    )
    assert outcome.passed
    return challenge


def test_a_lucky_pass_with_one_control_moves_a_label_less_than_a_pass_with_four():
    project = project_make(gold_per_class=10, unknown=8)
    lucky_site = site_make(project, control_items=1)[0]
    sure_site = site_make(project, control_items=4)[0]
    lucky = _pass(lucky_site, "198.51.100.1", "2")
    sure = _pass(sure_site, "198.51.100.2", "2")
    weights = {}
    for challenge in (lucky, sure):
        rows = Answer.objects.filter(task_ref=str(challenge.pk), is_control=False)
        weights[challenge.pk] = sorted(rows.values_list("evidence_weight", flat=True))
        assert rows.count() == 2
    assert weights[lucky.pk] == pytest.approx([difficulty.looked_probability(ChallengeKind.CHOICE, 3, 1, 1)] * 2)
    assert weights[sure.pk] == pytest.approx([difficulty.looked_probability(ChallengeKind.CHOICE, 3, 4, 4)] * 2)
    lucky_items = Answer.objects.filter(task_ref=str(lucky.pk), is_control=False).values_list("item_id", flat=True)
    sure_items = Answer.objects.filter(task_ref=str(sure.pk), is_control=False).values_list("item_id", flat=True)
    lucky_confidence = max(Consensus.objects.filter(item_id__in=lucky_items).values_list("confidence", flat=True))
    sure_confidence = min(Consensus.objects.filter(item_id__in=sure_items).values_list("confidence", flat=True))
    assert lucky_confidence < sure_confidence


def test_full_truth_inference_weighs_each_answer_by_its_evidence():
    """The full fit (worker parameters, class priors) counts a weightless answer as if it
    were never given, the same as the cheap path does for each item."""
    project = project_make(data_kind="text", gold_per_class=2, unknown=6)
    labels = list(project.label_classes.order_by("pk"))
    unknown = list(Item.objects.filter(project=project, known_label__isnull=True).order_by("pk"))
    honest = [_visitor(name) for name in "hij"]
    for worker in honest:
        answers_record(worker=worker, source="widget", inputs=[
            AnswerInput(item=item, label_id=labels[i % 3].pk, task_ref="h", evidence_weight=1.0)
            for i, item in enumerate(unknown)
        ])
    before = bridge.aggregate_fit(project, "dawid_skene")
    bots = [_visitor(name) for name in "uvwxyz"]
    for bot in bots:
        answers_record(worker=bot, source="widget", inputs=[
            AnswerInput(item=item, label_id=labels[0].pk, task_ref="b", evidence_weight=0.0) for item in unknown
        ])
    after = bridge.aggregate_fit(project, "dawid_skene")
    assert np.allclose(after.class_priors, before.class_priors)
    assert np.allclose(np.asarray(after.posteriors)[: len(before.item_ids)], before.posteriors, atol=1e-6)
    Answer.objects.filter(worker__in=bots).update(evidence_weight=1.0)
    counted = bridge.aggregate_fit(project, "dawid_skene")
    assert not np.allclose(counted.class_priors, before.class_priors, atol=1e-3)
