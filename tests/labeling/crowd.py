"""Builders for the crowd-worker tests: a small text project with gold, registered
workers, and simulated workers that answer through the services."""
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from labeling.models import Item, ItemStatus, KnownLabel, Worker, WorkerKind
from labeling.services import workers as svc
from labeling.services.projects import project_create


def crowd_project(*, labels=("a", "b", "c"), n_unknown=20, n_gold=5, name="Crowd", **options):
    """A text project open to all workers. Item ``i`` has text ``item i`` (which says
    nothing of its label) and true label ``labels[i % len(labels)]``; the first
    ``n_gold`` items are gold. Returns the project and ``{text: true label name}``."""
    options.setdefault("open_to_all_workers", True)
    project = project_create(name=name, labels=list(labels), data_kind="text", **options)
    label_rows = {label.name: label for label in project.label_classes.all()}
    truth = {f"item {i}": labels[i % len(labels)] for i in range(n_gold + n_unknown)}
    Item.objects.bulk_create(
        [Item(project=project, text=text, checksum=f"{project.pk}-{i}".rjust(64, "0")) for i, text in enumerate(truth)]
    )
    gold = list(project.items.order_by("id")[:n_gold])
    KnownLabel.objects.bulk_create([KnownLabel(item=item, label=label_rows[truth[item.text]]) for item in gold])
    Item.objects.filter(pk__in=[item.pk for item in gold]).update(status=ItemStatus.LABELED)
    return project, truth


def registered_worker(username, password=None):
    """A user with its registered worker; without a password (no slow hashing) unless given."""
    user = get_user_model().objects.create_user(username, password=password)
    return Worker.objects.create(user=user, kind=WorkerKind.REGISTERED)


def new_key():
    return uuid.uuid4().hex


def simulate(worker, project, truth, *, p_correct, rng, per_next=10, per_submit=1, stop_after_controls=None,
             max_answers=400, time_ms=(1200, 4000)):
    """Let ``worker`` answer through the services: right with probability ``p_correct``,
    otherwise a random wrong label (``p_correct=None``: a uniformly random label, a
    spammer). Answers go ``per_submit`` at a time (the rules run after each submission;
    the UI sends them one by one). Stops when paused, out of items, after
    ``stop_after_controls`` control answers or ``max_answers``. Returns the number of
    control answers given."""
    names = [label.name for label in project.label_classes.all()]
    given = 0
    while given < max_answers and svc.worker_status_in(worker, project) == "active":
        batch = svc.tasks_next(worker=worker, project=project, n=per_next, rng=rng)
        if not batch.leases:
            break
        answers = []
        for lease in batch.leases:
            right = truth[lease.item.text]
            if p_correct is None:
                label = rng.choice(names)
            elif rng.random() < p_correct:
                label = right
            else:
                label = rng.choice([name for name in names if name != right])
            answers.append(svc.TaskAnswer(lease.public_id, new_key(), label, rng.randint(*time_ms)))
        answers = answers[: max_answers - given]
        for start in range(0, len(answers), per_submit):
            chunk = answers[start : start + per_submit]
            result = svc.task_answers_submit(worker=worker, project=project, answers=chunk)
            given += len(chunk)
            worker.refresh_from_db()
            if result.status != "active" or given >= max_answers:
                break
        controls = worker.answers.filter(correct__isnull=False).count()
        if stop_after_controls is not None and controls >= stop_after_controls:
            break
    return worker.answers.filter(correct__isnull=False).count()


@pytest.fixture
def local_cache(settings):
    """A cache of this process only (rate-limit counters start at zero)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "crowd"}}
    cache.clear()
    return cache
