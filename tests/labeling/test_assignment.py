import io
import json
import random
import threading
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from labeling.models import Answer, Consensus, Item, Lease, PseudoLabel, Worker
from labeling.services import selection
from labeling.services import workers as svc
from tests.labeling.crowd import crowd_project, local_cache, new_key, registered_worker  # noqa: F401
from tests.labeling.factories import png_bytes

pytestmark = pytest.mark.usefixtures("local_cache")


def api_client(worker):
    client = Client()
    client.force_login(worker.user)
    return client


def next_items(client, project, **params):
    response = client.get(reverse("api-task-next", args=[project.slug]), params)
    assert response.status_code == 200, response.content
    return response.json()


def post_answers(client, project, answers):
    return client.post(
        reverse("api-task-answers", args=[project.slug]), data=json.dumps(answers), content_type="application/json"
    )


def answer(lease, label, key=None, time_ms=2000):
    return svc.TaskAnswer(lease.public_id, key or new_key(), label, time_ms)


@pytest.mark.django_db
def test_next_hands_out_opaque_lease_ids_and_texts_never_item_ids_gold_flags_or_labels():
    project, _ = crowd_project(n_unknown=6, n_gold=3, gold_share=0.5)
    worker = registered_worker("ann")
    data = next_items(api_client(worker), project, n=6)
    assert data["labels"] == [{"name": "a", "key": "1"}, {"name": "b", "key": "2"}, {"name": "c", "key": "3"}]
    assert len(data["items"]) == 6 and data["target"] is None
    leases = {lease.public_id: lease for lease in Lease.objects.filter(worker=worker)}
    assert any(lease.is_control for lease in leases.values())
    for item in data["items"]:
        assert set(item) == {"id", "text", "expires_at"}
        assert leases[item["id"]].item.text == item["text"]
    assert set(data["worker"]) == {"status", "answers"}


@pytest.mark.django_db
def test_a_worker_never_gets_the_same_item_twice():
    project, truth = crowd_project(n_unknown=30, n_gold=10, gold_share=0.3)
    worker = registered_worker("ann")
    rng = random.Random(1)
    seen = []
    while True:
        batch = svc.tasks_next(worker=worker, project=project, n=4, rng=rng)
        if not batch.leases:
            break
        seen += [lease.item_id for lease in batch.leases]
        svc.task_answers_submit(
            worker=worker, project=project, answers=[answer(lease, truth[lease.item.text]) for lease in batch.leases]
        )
    assert len(seen) == len(set(seen))
    unknown = set(project.items.filter(known_label__isnull=True).values_list("id", flat=True))
    assert unknown <= set(seen)


@pytest.mark.django_db
def test_controls_are_interleaved_at_random_places_at_the_share_for_a_new_worker():
    project, truth = crowd_project(n_unknown=120, n_gold=40, gold_share=0.1)
    worker = registered_worker("ann")
    rng = random.Random(3)
    positions, total = [], 0
    for _ in range(8):
        batch = svc.tasks_next(worker=worker, project=project, n=10, rng=rng)
        positions += [i for i, lease in enumerate(batch.leases) if lease.is_control]
        total += len(batch.leases)
        # Right on unknown items, wrong on none: the worker stays "new" (under 10 controls
        # only at first) and honest.
        svc.task_answers_submit(
            worker=worker, project=project, answers=[answer(lease, truth[lease.item.text]) for lease in batch.leases]
        )
    assert total == 80
    assert 8 <= len(positions) <= 30  # 25 % while new, then the project's 10 %
    assert len(set(positions)) >= 5


@pytest.mark.django_db
def test_items_asked_for_one_at_a_time_still_include_controls():
    project, truth = crowd_project(n_unknown=30, n_gold=10, gold_share=0.3)
    worker = registered_worker("ann")
    rng = random.Random(5)
    kinds = []
    for _ in range(20):
        (lease,) = svc.tasks_next(worker=worker, project=project, n=1, rng=rng).leases
        kinds.append(lease.is_control)
        svc.task_answers_submit(worker=worker, project=project, answers=[answer(lease, truth[lease.item.text])])
    assert 3 <= sum(kinds) <= 17


@pytest.mark.django_db
def test_the_control_share_is_higher_for_new_or_doubtful_workers_and_lower_for_trusted_ones():
    project, _ = crowd_project(n_unknown=2, n_gold=40, gold_share=0.1)
    gold = list(project.items.filter(known_label__isnull=False).select_related("known_label"))
    new, doubtful, steady, trusted = (registered_worker(name) for name in ("new", "doubt", "steady", "trust"))

    def controls(worker, n_right, n_wrong):
        rows = [
            Answer(
                worker=worker, item=item, label_id=item.known_label.label_id, source="worker", task_ref=f"k{i}",
                is_control=True, correct=i < n_right,
            )
            for i, item in enumerate(gold[: n_right + n_wrong])
        ]
        Answer.objects.bulk_create(rows)

    controls(new, 3, 0)
    controls(doubtful, 8, 7)
    controls(steady, 12, 2)
    controls(trusted, 38, 1)
    shares = {w.user.username: svc.control_share_for(w, project) for w in (new, doubtful, steady, trusted)}
    assert shares == {"new": 0.25, "doubt": 0.25, "steady": 0.1, "trust": 0.05}


@pytest.mark.django_db
def test_answers_are_taken_only_for_this_workers_own_leases():
    project, _ = crowd_project(n_unknown=4, n_gold=0)
    ann, bob = registered_worker("ann"), registered_worker("bob")
    (lease,) = svc.tasks_next(worker=ann, project=project, n=1).leases
    (other,) = svc.tasks_next(worker=bob, project=project, n=1).leases
    with pytest.raises(svc.UnknownTask):
        svc.task_answers_submit(worker=ann, project=project, answers=[answer(lease, "a"), answer(other, "a")])
    assert not Answer.objects.exists()
    with pytest.raises(svc.UnknownTask):
        svc.task_answers_submit(worker=ann, project=project, answers=[svc.TaskAnswer("made-up", new_key(), "a")])


@pytest.mark.django_db
def test_an_abandoned_lease_returns_its_item_when_it_expires_and_the_late_answer_is_refused(settings):
    project, _ = crowd_project(n_unknown=1, n_gold=0, answers_per_item=1, max_answers_per_item=2)
    ann, bob = registered_worker("ann"), registered_worker("bob")
    now = timezone.now()
    (lease,) = svc.tasks_next(worker=ann, project=project, n=5, now=now).leases
    assert svc.tasks_next(worker=bob, project=project, n=5, now=now).leases == []
    later = now + timedelta(seconds=settings.CROWDLOOP_LEASE_TTL_S + 1)
    (again,) = svc.tasks_next(worker=bob, project=project, n=5, now=later).leases
    assert again.item_id == lease.item_id
    late = svc.task_answers_submit(worker=ann, project=project, answers=[answer(lease, "a")], now=later)
    assert late.outcomes[0].status == "expired"
    done = svc.task_answers_submit(worker=bob, project=project, answers=[answer(again, "a")], now=later)
    assert done.outcomes[0].status == "stored"
    assert Answer.objects.count() == 1
    # Ann was handed this item once: she never gets it again, even after it expired.
    assert svc.tasks_next(worker=ann, project=project, n=5, now=later).leases == []


@pytest.mark.django_db
def test_the_answer_cap_holds_even_for_leases_granted_past_it():
    project, _ = crowd_project(n_unknown=1, n_gold=0, answers_per_item=1, max_answers_per_item=2)
    item = project.items.get()
    workers = [registered_worker(name) for name in ("ann", "bob", "cy")]
    leases = [selection.leases_grant(worker=w, items=[item], ttl_seconds=60)[0] for w in workers]
    statuses = [
        svc.task_answers_submit(worker=w, project=project, answers=[answer(lease, "b")]).outcomes[0].status
        for w, lease in zip(workers, leases)
    ]
    assert statuses == ["stored", "stored", "expired"]
    item.refresh_from_db()
    assert item.answer_count == 2


@pytest.mark.django_db
def test_a_retried_submission_with_the_same_key_stores_one_answer():
    project, truth = crowd_project(n_unknown=3, n_gold=0)
    worker = registered_worker("ann")
    client = api_client(worker)
    item = next_items(client, project, n=1)["items"][0]
    body = [{"id": item["id"], "label": truth[item["text"]], "key": "retry-key-0001", "time_ms": 1500}]
    first = post_answers(client, project, body)
    again = post_answers(client, project, body)
    assert first.status_code == again.status_code == 200
    assert first.json()["results"][0]["status"] == "stored"
    assert again.json()["results"][0]["status"] == "duplicate"
    worker.refresh_from_db()
    stored = Answer.objects.get()
    assert Answer.objects.count() == 1 and stored.task_ref == "retry-key-0001" and stored.time_taken_ms == 1500
    assert stored.item.answer_count == 1 and worker.answer_total == 1
    # A skip retried is stored once too.
    skip = next_items(client, project, n=1)["items"][0]
    for _ in range(2):
        response = post_answers(client, project, [{"id": skip["id"], "label": None, "key": "skip-key-0001"}])
    assert response.json()["results"][0]["status"] == "duplicate"
    assert worker.skips.count() == 1


@pytest.mark.django_db
def test_undo_within_the_window_takes_the_answer_back_and_the_item_can_be_answered_again(monkeypatch, settings):
    project, _ = crowd_project(n_unknown=2, n_gold=0)
    worker = registered_worker("ann")
    client = api_client(worker)
    item = next_items(client, project, n=1)["items"][0]
    post_answers(client, project, [{"id": item["id"], "label": "a", "key": "first-answer", "time_ms": 900}])
    response = client.post(reverse("api-answer-undo", args=["first-answer"]))
    assert response.status_code == 200 and response.json()["id"] == item["id"]
    worker.refresh_from_db()
    assert not Answer.objects.exists() and worker.answer_total == 0
    assert Item.objects.get(text=item["text"]).answer_count == 0
    assert Consensus.objects.get(item__text=item["text"]).n_answers == 0
    result = post_answers(client, project, [{"id": item["id"], "label": "b", "key": "second-answer", "time_ms": 900}])
    assert result.json()["results"][0]["status"] == "stored"
    # Past the window the server refuses, whatever the client thinks.
    later = timezone.now() + timedelta(seconds=settings.CROWDLOOP_UNDO_WINDOW_S + 1)
    from labeling.services import submission

    monkeypatch.setattr(submission, "_now", lambda: later)
    refused = client.post(reverse("api-answer-undo", args=["second-answer"]))
    assert refused.status_code == 409 and "10 seconds" in refused.json()["detail"]
    assert Answer.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("allowed", [True, False])
def test_a_missed_control_item_is_never_explained_to_a_new_worker(allowed):
    project, truth = crowd_project(n_unknown=10, n_gold=10, gold_share=0.5, show_control_feedback=allowed)
    worker = registered_worker("ann")
    leases = svc.tasks_next(worker=worker, project=project, n=10, rng=random.Random(0)).leases
    assert sum(lease.is_control for lease in leases) == 5
    wrong = {"a": "b", "b": "c", "c": "a"}
    answers = [answer(lease, wrong[truth[lease.item.text]]) for lease in leases]
    outcomes = svc.task_answers_submit(worker=worker, project=project, answers=answers).outcomes
    assert all(outcome.feedback is None for outcome in outcomes)


@pytest.mark.django_db
def test_a_reloaded_page_gets_its_held_items_back_and_exclude_asks_for_new_ones():
    project, _ = crowd_project(n_unknown=10, n_gold=0)
    worker = registered_worker("ann")
    client = api_client(worker)
    first = [item["id"] for item in next_items(client, project, n=3)["items"]]
    assert [item["id"] for item in next_items(client, project, n=3)["items"]] == first
    more = [item["id"] for item in next_items(client, project, n=3, exclude=",".join(first))["items"]]
    assert len(more) == 3 and not set(more) & set(first)


@pytest.mark.django_db
def test_a_grid_batch_names_its_target_and_only_selected_tiles_vote():
    project, _ = crowd_project(n_unknown=4, n_gold=0)
    b = project.label_classes.get(name="b")
    for item in project.items.all():
        PseudoLabel.objects.create(item=item, label=b, confidence=0.8, source="propagation")
    worker = registered_worker("ann")
    client = api_client(worker)
    data = next_items(client, project, n=4, view="grid")
    assert data["target"] == "b"
    body = [
        {"id": item["id"], "label": "b", "verdict": i < 2, "key": f"grid-key-{i:04d}", "time_ms": 1000}
        for i, item in enumerate(data["items"])
    ]
    results = post_answers(client, project, body).json()["results"]
    assert [r["status"] for r in results] == ["stored"] * 4
    assert sorted(Answer.objects.values_list("verdict", flat=True)) == [False, False, True, True]
    # Every tile is evidence: a selected one names the target, an unselected one is a
    # "no" that lowers the target's probability without naming any label.
    position = list(project.label_classes.order_by("position")).index(b)
    consensus = {row.item_id: row for row in Consensus.objects.all()}
    verdicts = dict(Answer.objects.values_list("item_id", "verdict"))
    yes = [consensus[i] for i, v in verdicts.items() if v]
    no = [consensus[i] for i, v in verdicts.items() if not v]
    assert all(row.n_answers == 1 for row in consensus.values())
    assert all(row.label_id == b.pk for row in yes) and all(row.label_id is None for row in no)
    assert min(row.posterior[position] for row in yes) > 0.8 > max(row.posterior[position] for row in no)


@pytest.mark.django_db
def test_an_image_is_served_as_png_to_the_lease_holder_only():
    project, _ = crowd_project(n_unknown=1, n_gold=0)
    project.data_kind = "image"
    project.save()
    item = project.items.get()
    item.image.save("normalised.png", ContentFile(png_bytes(seed=4)))
    ann, bob = registered_worker("ann"), registered_worker("bob")
    data = next_items(api_client(ann), project, n=1)
    (task,) = data["items"]
    assert set(task) == {"id", "image", "expires_at"}
    assert task["image"] == f"/api/v1/tasks/{task['id']}/image" and "normalised" not in task["image"]
    response = api_client(ann).get(task["image"])
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    served = Image.open(io.BytesIO(response.content))
    assert served.size == Image.open(item.image.open("rb")).size, "a fresh rendering of this item's image"
    assert api_client(bob).get(task["image"]).status_code == 404
    assert Client().get(task["image"]).status_code == 403


@pytest.mark.django_db
def test_the_worker_api_is_rate_limited_per_worker(settings):
    settings.CROWDLOOP_RATE_LIMITS = {**settings.CROWDLOOP_RATE_LIMITS, "worker-next:worker": (2, 60)}
    project, _ = crowd_project(n_unknown=3, n_gold=0)
    client = api_client(registered_worker("ann"))
    url = reverse("api-task-next", args=[project.slug])
    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]
    assert int(client.get(url)["Retry-After"]) >= 1
    assert api_client(registered_worker("bob")).get(url).status_code == 200


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_twenty_workers_answering_at_once_never_overfill_an_item_nor_see_one_twice(postgres, settings):
    """Twenty threads, each a worker with its own client and database connection, label
    through the API until nothing is left; one keeps its first items and never answers
    them (a tab left open)."""
    project, truth = crowd_project(n_unknown=40, n_gold=5, answers_per_item=2, max_answers_per_item=3, gold_share=0.2)
    workers = [registered_worker(f"w{i:02d}") for i in range(20)]
    received = {worker.pk: [] for worker in workers}
    abandoned, errors = [], []
    start = threading.Barrier(len(workers))

    def work(worker, index):
        try:
            client = api_client(worker)
            start.wait(timeout=30)
            rng = random.Random(index)
            held, empty = [], 0
            for round_ in range(40):
                data = next_items(client, project, n=3, exclude=",".join(held))
                if not data["items"]:
                    empty += 1
                    if empty == 3:
                        break
                    continue
                received[worker.pk] += [item["text"] for item in data["items"]]
                if index == 0 and round_ == 0:
                    held = [item["id"] for item in data["items"]]
                    abandoned.extend(item["text"] for item in data["items"])
                    continue
                body = [
                    {
                        "id": item["id"], "label": truth[item["text"]], "key": new_key(),
                        "time_ms": rng.randint(1000, 3000),
                    }
                    for item in data["items"]
                ]
                response = post_answers(client, project, body)
                assert response.status_code == 200, response.content
        except Exception as exc:  # noqa: BLE001 -- reported below, in the main thread
            errors.append(f"{worker.user.username}: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(worker, i)) for i, worker in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(thread.is_alive() for thread in threads)

    assert len(abandoned) == 3 and sum(1 for texts in received.values() if texts) >= 15
    for texts in received.values():
        assert len(texts) == len(set(texts))  # nobody saw an item twice
    unknown = project.items.filter(known_label__isnull=True)
    for item in unknown:
        # Once certain, an item may serve as control in the pool: those answers test
        # the people, and only answers on it as an unknown item count to its cap.
        assert item.answers.filter(is_control=False).count() <= project.max_answers_per_item
    assert Answer.objects.values("worker", "item").distinct().count() == Answer.objects.count()
    assert all(Worker.objects.get(pk=w.pk).status == "active" for w in workers)

    # The abandoned leases still hold their items; once they expire, the items return.
    later = timezone.now() + timedelta(seconds=settings.CROWDLOOP_LEASE_TTL_S + 1)
    stuck = [text for text in abandoned if text in {i.text for i in unknown if i.answers.count() < 2}]
    late = registered_worker("late")
    assert not {l.item.text for l in svc.tasks_next(worker=late, project=project, n=20).leases} & set(stuck)
    handed = {l.item.text for l in svc.tasks_next(worker=late, project=project, n=20, now=later).leases}
    assert set(stuck) <= handed
