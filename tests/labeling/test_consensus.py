import pytest

from labeling.models import (
    Answer,
    Consensus,
    Item,
    ItemStatus,
    KnownLabel,
    PipelineKind,
    PipelineRun,
    RunStatus,
    Worker,
    WorkerSkill,
    WorkerStatus,
)
from labeling.selectors.items import item_explain
from labeling.services.answers import AnswerInput, answers_record
from labeling.services.consensus import item_label_known, project_aggregate
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    project = project_create(name="Texts", labels=["a", "b", "c"], data_kind="text", answers_per_item=2, max_answers_per_item=4)
    Item.objects.bulk_create([Item(project=project, text=f"t{i}", checksum=f"{i:064d}") for i in range(6)])
    return project


@pytest.fixture
def labels(project):
    return {label.name: label for label in project.label_classes.all()}


def workers(n):
    return [Worker.objects.create() for _ in range(n)]


def answer(worker, item, label, ref="t"):
    return answers_record(worker=worker, inputs=[AnswerInput(item=item, label_id=label.pk, task_ref=ref)], source="worker")


def test_two_agreeing_answers_label_an_item_and_one_does_not(project, labels):
    item = project.items.first()
    w1, w2 = workers(2)
    answer(w1, item, labels["b"])
    item.refresh_from_db()
    assert item.status == ItemStatus.UNLABELED and item.answer_count == 1
    answer(w2, item, labels["b"])
    item.refresh_from_db()
    consensus = Consensus.objects.get(item=item)
    assert item.status == ItemStatus.LABELED
    assert consensus.label == labels["b"] and consensus.n_answers == 2 and consensus.confidence >= 0.9
    assert abs(sum(consensus.posterior) - 1) < 1e-4
    assert "labeled" in item_explain(item)


def test_a_disputed_item_stays_served_then_goes_to_review_at_the_cap(project, labels):
    item = project.items.first()
    for worker, name in zip(workers(4), ["a", "b", "c", "a"]):
        answer(worker, item, labels[name])
        item.refresh_from_db()
        if item.answer_count < 4:
            assert item.status == ItemStatus.UNLABELED
    assert item.status == ItemStatus.REVIEW
    assert "review" in item_explain(item)


def test_a_retried_answer_with_the_same_task_ref_is_stored_once(project, labels):
    item = project.items.first()
    (worker,) = workers(1)
    created, _ = answer(worker, item, labels["a"], ref="key-1")
    again, existing = answer(worker, item, labels["a"], ref="key-1")
    assert len(created) == 1 and again == [] and len(existing) == 1
    item.refresh_from_db()
    worker.refresh_from_db()
    assert Answer.objects.count() == 1 and item.answer_count == 1 and worker.answer_total == 1


def test_banned_workers_answers_stop_counting(project, labels):
    item = project.items.first()
    good, bad1, bad2 = workers(3)
    answer(bad1, item, labels["c"])
    answer(bad2, item, labels["c"])
    assert Consensus.objects.get(item=item).label == labels["c"]
    Worker.objects.filter(pk__in=[bad1.pk, bad2.pk]).update(status=WorkerStatus.BANNED)
    answer(good, item, labels["a"])
    consensus = Consensus.objects.get(item=item)
    assert consensus.label == labels["a"] and consensus.n_answers == 1


def test_settling_by_hand_makes_the_label_known(project, labels, django_user_model):
    item = project.items.first()
    admin = django_user_model.objects.create_user("boss")
    item_label_known(item, labels["c"], user=admin)
    item.refresh_from_db()
    assert item.status == ItemStatus.LABELED
    assert KnownLabel.objects.get(item=item).source == "settled"
    assert Consensus.objects.get(item=item).confidence == 1.0


def test_the_full_run_learns_worker_skill_from_gold_and_is_idempotent(project, labels):
    items = list(project.items.all())
    honest, liar = workers(2)
    for item in items[:3]:
        KnownLabel.objects.create(item=item, label=labels["a"])
    for item in items:
        answer(honest, item, labels["a"] if item in items[:3] else labels["b"])
        answer(liar, item, labels["c"])
    first = project_aggregate(project)
    assert first.status == RunStatus.SUCCEEDED and first.result["items"] == 6
    skills = dict(WorkerSkill.objects.values_list("worker_id", "accuracy"))
    assert skills[honest.pk] > skills[liar.pk]
    before = list(Consensus.objects.order_by("item_id").values_list("item_id", "label_id", "confidence"))
    assert {label for _, label, _ in before[3:]} == {labels["b"].pk}
    project_aggregate(project)
    after = list(Consensus.objects.order_by("item_id").values_list("item_id", "label_id", "confidence"))
    assert before == after


def test_a_second_full_run_does_not_start_while_one_is_running(project):
    from django.utils import timezone

    PipelineRun.objects.create(project=project, kind=PipelineKind.AGGREGATE, status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    assert project_aggregate(project) is None


def test_a_run_whose_worker_died_is_taken_over_and_finished(project):
    from datetime import timedelta

    from django.utils import timezone

    stale = PipelineRun.objects.create(
        project=project, kind=PipelineKind.AGGREGATE, status=RunStatus.RUNNING, attempts=1,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    run = project_aggregate(project)
    assert run.pk == stale.pk and run.attempts == 2
    stale.refresh_from_db()
    assert stale.status == RunStatus.SUCCEEDED
    assert PipelineRun.objects.filter(project=project).count() == 1


def test_every_n_answers_queue_a_full_run(project, labels, settings, celery_eager, django_capture_on_commit_callbacks):
    from django.core.cache import cache

    cache.clear()
    settings.CROWDLOOP_AGGREGATE_EVERY = 3
    items = list(project.items.all())
    ws = workers(3)
    with django_capture_on_commit_callbacks(execute=True):
        for worker in ws[:2]:
            answer(worker, items[0], labels["a"])
    assert not PipelineRun.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        answer(ws[2], items[1], labels["a"])
    assert PipelineRun.objects.get(kind=PipelineKind.AGGREGATE).status == RunStatus.SUCCEEDED


def _active_model_believing(project, label, confidence):
    from labeling.models import Prediction, Project, TrainingRun

    run = TrainingRun.objects.create(project=project, status=RunStatus.SUCCEEDED)
    Prediction.objects.bulk_create(
        [Prediction(item=item, run=run, label=label, confidence=confidence) for item in project.items.all()]
    )
    Project.objects.filter(pk=project.pk).update(active_run=run)


def test_one_answer_agreeing_with_a_confident_model_settles_and_a_disagreeing_one_asks_again(project, labels):
    _active_model_believing(project, labels["b"], 0.97)
    agreeing, disagreeing = project.items.all()[:2]
    (w1,) = workers(1)
    answer(w1, agreeing, labels["b"])
    answer(w1, disagreeing, labels["c"])
    agreeing.refresh_from_db()
    disagreeing.refresh_from_db()
    assert agreeing.status == ItemStatus.LABELED
    assert Consensus.objects.get(item=agreeing).label == labels["b"]
    assert disagreeing.status == ItemStatus.UNLABELED
    assert disagreeing.priority >= 2.0 and "one more answer" in disagreeing.priority_reason


def test_a_weak_model_belief_does_not_settle_on_one_answer(project, labels):
    _active_model_believing(project, labels["b"], 0.4)
    item = project.items.first()
    answer(workers(1)[0], item, labels["b"])
    item.refresh_from_db()
    assert item.status == ItemStatus.UNLABELED


def test_a_widget_visitor_starts_more_cautious_than_a_registered_worker(project, labels):
    from labeling.models import WorkerKind

    visitor = Worker.objects.create(kind=WorkerKind.VISITOR, visitor_key="v" * 64)
    registered = Worker.objects.create()
    first, second = project.items.all()[:2]
    answer(visitor, first, labels["a"])
    answer(registered, second, labels["a"])
    assert Consensus.objects.get(item=first).confidence < Consensus.objects.get(item=second).confidence
