import pytest
from django.test import override_settings

from labeling.models import (
    EvaluationTruth,
    Item,
    ItemEmbedding,
    ItemStatus,
    PipelineKind,
    PipelineRun,
    PseudoLabel,
    RunStatus,
    Worker,
)
from labeling.services.answers import AnswerInput, answers_record
from labeling.services.demo import demo_project_create
from labeling.services.semisupervised import project_semisupervised

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def media_root_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def digits_round(django_db_setup, django_db_blocker, media_root_dir):
    """The digits demo after one semi-supervised round, built once for this module."""
    with override_settings(MEDIA_ROOT=media_root_dir), django_db_blocker.unblock():
        # Six human labels per class: with fewer, no class may accept pseudo-labels.
        project, _ = demo_project_create(gold_per_class=6)
        run = project_semisupervised(project)
    yield project, run
    with django_db_blocker.unblock():
        project.delete()


def test_a_round_on_digits_gives_accurate_accepted_pseudo_labels(digits_round):
    project, run = digits_round
    assert run.status == RunStatus.SUCCEEDED and run.result["human_labels"] == 60
    truth = dict(EvaluationTruth.objects.filter(item__project=project).values_list("item_id", "label_id"))
    accepted = list(PseudoLabel.objects.filter(item__project=project, accepted=True).values_list("item_id", "label_id"))
    assert len(accepted) >= 100
    precision = sum(truth[i] == label for i, label in accepted) / len(accepted)
    assert precision >= 0.95
    assert Item.objects.filter(project=project, status=ItemStatus.PSEUDO_LABELED).count() == len(accepted)
    assert ItemEmbedding.objects.filter(item__project=project).count() == 1400
    assert "calibration" in run.result and run.result["representation"]


def test_uncovered_clusters_come_first_in_the_serving_order(digits_round):
    project, _ = digits_round
    served = list(Item.objects.filter(project=project, status__in=["unlabeled", "pseudo_labeled"]).order_by("-priority", "id"))
    coverage = [item for item in served if item.priority_reason.startswith("uncovered cluster")]
    assert coverage and served[: len(coverage)] == coverage
    covered = set(Item.objects.filter(project=project, known_label__isnull=False).values_list("embedding__cluster", flat=True))
    clusters = [item.embedding.cluster for item in coverage]
    assert len(set(clusters)) == len(clusters) and not covered & set(clusters)
    assert all(item.embedding.is_representative for item in coverage)


def test_a_second_round_gives_the_same_rows(digits_round):
    project, _ = digits_round
    before = list(PseudoLabel.objects.filter(item__project=project).order_by("item_id").values_list("item_id", "label_id", "confidence", "accepted"))
    project_semisupervised(project)
    after = list(PseudoLabel.objects.filter(item__project=project).order_by("item_id").values_list("item_id", "label_id", "confidence", "accepted"))
    assert before == after
    assert PipelineRun.objects.filter(project=project, kind=PipelineKind.CLUSTER, status=RunStatus.SUCCEEDED).count() == 2


def test_verify_confirmations_promote_and_a_rejection_demotes(digits_round):
    project, _ = digits_round
    first, second = PseudoLabel.objects.filter(item__project=project, accepted=True).select_related("item")[:2]
    for n in range(3):
        answers_record(
            worker=Worker.objects.create(),
            inputs=[AnswerInput(item=first.item, label_id=first.label_id, task_ref=f"c{n}", verdict=True)],
            source="widget",
        )
    first.item.refresh_from_db()
    assert first.item.status == ItemStatus.LABELED
    answers_record(
        worker=Worker.objects.create(),
        inputs=[AnswerInput(item=second.item, label_id=second.label_id, task_ref="r", verdict=False)],
        source="widget",
    )
    second.refresh_from_db()
    second.item.refresh_from_db()
    assert second.accepted is False and second.item.status == ItemStatus.UNLABELED


def test_a_model_that_disagrees_with_propagation_draws_human_attention(digits_round):
    from labeling.models import Prediction, TrainingRun

    project, _ = digits_round
    run = TrainingRun.objects.create(project=project, status=RunStatus.SUCCEEDED)
    pseudo = dict(PseudoLabel.objects.filter(item__project=project).values_list("item_id", "label_id"))
    labels = list(project.label_classes.values_list("id", flat=True))
    Prediction.objects.bulk_create(
        [
            Prediction(item_id=item_id, run=run, confidence=0.99,
                       label_id=labels[(labels.index(label) + 1) % 10] if n % 7 == 0 else label)
            for n, (item_id, label) in enumerate(pseudo.items())
        ]
    )
    project.active_run = run
    project.save(update_fields=["active_run"])
    project_semisupervised(project)
    reasons = list(Item.objects.filter(project=project).values_list("priority_reason", flat=True))
    assert any("model says" in reason for reason in reasons)

