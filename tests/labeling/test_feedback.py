"""Feedback on missed control items: only for trusted workers, a few a day, and an
explained item stops being control for that worker."""
import random
from datetime import timedelta

import pytest

from labeling.models import Answer, ChallengeKind, ControlExposure, Item
from labeling.services import workers as svc
from labeling.services.challenge_answers import challenge_answer
from labeling.services.challenges import challenge_issue
from labeling.services.feedback import feedback_trusted
from tests.labeling.crowd import crowd_project, local_cache, new_key, registered_worker  # noqa: F401
from tests.labeling.widget_support import VISITOR, fresh_cache, project_make, site_make, solution  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_cache")]
WRONG = {"a": "b", "b": "c", "c": "a"}


def trusted_worker(project, name="ann", controls=40):
    """A worker with ``controls`` right control answers in ``project`` (on items of their own)."""
    worker = registered_worker(name)
    label = project.label_classes.first()
    items = Item.objects.bulk_create(
        [
            Item(project=project, text=f"history {name} {i}", checksum=f"h-{name}-{i}".rjust(64, "0"))
            for i in range(controls)
        ]
    )
    Answer.objects.bulk_create(
        [
            Answer(
                worker=worker, item=item, label=label, source="worker", task_ref=new_key(), is_control=True,
                correct=True,
            )
            for item in items
        ]
    )
    return worker


def miss_controls(worker, project, truth, n=10, seed=0):
    """Answer a batch of ``n`` items, every one wrong; returns (leases, outcomes)."""
    leases = svc.tasks_next(worker=worker, project=project, n=n, rng=random.Random(seed)).leases
    answers = [svc.TaskAnswer(lease.public_id, new_key(), WRONG[truth[lease.item.text]], 2000) for lease in leases]
    return leases, svc.task_answers_submit(worker=worker, project=project, answers=answers).outcomes


@pytest.mark.parametrize(
    ("controls", "correct", "trusted"), [(0, 0, False), (10, 10, False), (40, 40, True), (40, 30, False)]
)
def test_only_workers_with_enough_right_control_answers_are_trusted(controls, correct, trusted):
    assert feedback_trusted(controls=controls, correct=correct) is trusted


def test_a_trusted_worker_is_told_a_few_missed_control_items_a_day(settings):
    settings.CROWDLOOP_FEEDBACK_PER_DAY = 2
    project, truth = crowd_project(n_unknown=20, n_gold=20, gold_share=0.5)
    worker = trusted_worker(project)
    leases, outcomes = miss_controls(worker, project, truth)
    assert sum(lease.is_control for lease in leases) >= 3
    told = [(lease, o.feedback) for lease, o in zip(leases, outcomes, strict=True) if o.feedback]
    assert len(told) == 2
    for lease, feedback in told:
        assert lease.is_control and feedback["label"] == truth[lease.item.text]
    explained = ControlExposure.objects.filter(worker=worker, explained_at__isnull=False)
    explained = set(explained.values_list("item_id", flat=True))
    assert explained == {lease.item_id for lease, _ in told}
    _, more = miss_controls(worker, project, truth, seed=1)
    assert all(o.feedback is None for o in more), "the day's feedback is spent"


def test_nothing_is_explained_when_the_project_turns_feedback_off():
    project, truth = crowd_project(n_unknown=20, n_gold=20, gold_share=0.5, show_control_feedback=False)
    worker = trusted_worker(project)
    _, outcomes = miss_controls(worker, project, truth)
    assert all(o.feedback is None for o in outcomes)
    assert not ControlExposure.objects.filter(explained_at__isnull=False).exists()


def test_an_explained_item_is_no_longer_control_for_that_worker():
    project, truth = crowd_project(n_unknown=20, n_gold=20, gold_share=0.5)
    worker = trusted_worker(project)
    leases, outcomes = miss_controls(worker, project, truth, n=6)
    lease, outcome = next((lease, o) for lease, o in zip(leases, outcomes, strict=True) if o.feedback)
    svc.answer_undo(worker=worker, key=outcome.key)
    retry = svc.TaskAnswer(lease.public_id, new_key(), outcome.feedback["label"], 2000)
    again = svc.task_answers_submit(worker=worker, project=project, answers=[retry]).outcomes[0]
    assert again.status == "stored" and again.feedback is None
    row = Answer.objects.get(worker=worker, task_ref=again.key)
    assert row.correct is None and row.is_control is False


def test_a_retried_batch_repeats_only_feedback_that_was_given():
    project, truth = crowd_project(n_unknown=20, n_gold=20, gold_share=0.5)
    worker = trusted_worker(project)
    leases = svc.tasks_next(worker=worker, project=project, n=10, rng=random.Random(0)).leases
    answers = [svc.TaskAnswer(lease.public_id, new_key(), WRONG[truth[lease.item.text]], 2000) for lease in leases]
    first = svc.task_answers_submit(worker=worker, project=project, answers=answers).outcomes
    retry = svc.task_answers_submit(worker=worker, project=project, answers=answers).outcomes
    assert [o.status for o in retry] == ["duplicate"] * len(answers)
    assert [o.feedback for o in retry] == [o.feedback for o in first]


def test_a_failed_widget_challenge_says_nothing_about_which_tile_was_wrong():
    site = site_make(project_make(gold_per_class=6))[0]
    challenge = challenge_issue(sitekey=site.sitekey, client=VISITOR, kind=ChallengeKind.CHOICE)
    outcome = challenge_answer(
        challenge_id=str(challenge.pk), data=solution(challenge, right=False), client=VISITOR,
        now=challenge.issued_at + timedelta(seconds=5),
    )
    assert not outcome.passed and outcome.reason == "control-items-wrong" and outcome.token is None
    assert not ControlExposure.objects.filter(explained_at__isnull=False).exists()
