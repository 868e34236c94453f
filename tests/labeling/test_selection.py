from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.models import Consensus, Item, ItemStatus, KnownLabel, Lease, Worker
from labeling.services import selection
from labeling.services.answers import AnswerInput, answers_record
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    project = project_create(name="P", labels=["a", "b"], data_kind="text", answers_per_item=2, max_answers_per_item=3)
    Item.objects.bulk_create([Item(project=project, text=f"t{i}", checksum=f"{i:064d}") for i in range(8)])
    return project


def test_least_answered_comes_first_and_gold_is_never_unknown(project):
    project.selection_strategy = "least_answered"
    items = list(project.items.all())
    Item.objects.filter(pk=items[0].pk).update(answer_count=1)
    KnownLabel.objects.create(item=items[1], label=project.label_classes.first())
    picked = selection.unknown_items_pick(project, worker=None, n=8)
    assert items[1] not in picked
    assert picked[-1] == items[0]


def test_priority_strategy_orders_by_score(project):
    items = list(project.items.all())
    Item.objects.filter(pk=items[5].pk).update(priority=9.0)
    Item.objects.filter(pk=items[2].pk).update(priority=5.0)
    picked = selection.unknown_items_pick(project, worker=None, n=3)
    assert picked[:2] == [items[5], items[2]]


def test_an_unknown_strategy_is_a_clear_error(project):
    project.selection_strategy = "psychic"
    with pytest.raises(ValueError, match="unknown selection strategy 'psychic'"):
        selection.unknown_items_pick(project, worker=None, n=1)


def test_open_leases_leave_room_only_for_the_answers_still_needed(project):
    now = timezone.now()
    w1, w2, w3 = (Worker.objects.create() for _ in range(3))
    item = project.items.first()
    Item.objects.exclude(pk=item.pk).update(status=ItemStatus.LABELED)
    selection.leases_grant(worker=w1, items=[item], ttl_seconds=60, now=now)
    assert selection.unknown_items_pick(project, worker=w1, n=1, now=now) == []
    assert selection.unknown_items_pick(project, worker=w2, n=1, now=now) == [item]
    selection.leases_grant(worker=w2, items=[item], ttl_seconds=60, now=now)
    assert selection.unknown_items_pick(project, worker=w3, n=1, now=now) == []
    # Once the leases expire, the item returns.
    later = now + timedelta(seconds=61)
    assert selection.unknown_items_pick(project, worker=w3, n=1, now=later) == [item]


def test_leases_carry_random_opaque_ids_never_reused_for_the_same_item(project):
    first, second = Worker.objects.create(), Worker.objects.create()
    items = list(project.items.all()[:3])
    one = selection.leases_grant(worker=first, items=items, ttl_seconds=60)
    two = selection.leases_grant(worker=second, items=items, ttl_seconds=60)
    ids = {lease.public_id for lease in one + two}
    assert len(ids) == 6 and all(len(i) == 16 for i in ids)
    assert Lease.objects.count() == 6


def test_a_worker_is_never_given_an_item_they_answered(project):
    worker = Worker.objects.create()
    label = project.label_classes.first()
    items = list(project.items.all())
    answers_record(
        worker=worker, inputs=[AnswerInput(item=item, label_id=label.pk, task_ref="x") for item in items[:7]], source="worker"
    )
    assert selection.unknown_items_pick(project, worker=worker, n=8) == [items[7]]


def test_control_items_are_gold_or_certain_consensus_with_their_labels(project):
    a, b = project.label_classes.all()
    items = list(project.items.all())
    KnownLabel.objects.create(item=items[0], label=a)
    Item.objects.filter(pk=items[1].pk).update(status=ItemStatus.LABELED)
    Consensus.objects.create(item=items[1], label=b, confidence=0.999, n_answers=3, method="test")
    Consensus.objects.create(item=items[2], label=b, confidence=0.6, n_answers=3, method="test")
    picked = selection.control_items_pick(project, worker=None, n=5)
    assert set(picked) == {items[0], items[1]}
    assert selection.control_label_of(picked) == {items[0].pk: a.pk, items[1].pk: b.pk}
