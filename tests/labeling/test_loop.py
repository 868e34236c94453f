"""The loop closes by itself: a new project imported from folders as a user would, then
a simulated crowd, and nobody pressing a button."""
import secrets
import uuid

import pytest
from django.conf import settings as django_settings

from labeling.bridge import digit_png
from labeling.crowd.accounts import crowd_accounts_provision, crowd_people
from labeling.crowd.clocks import Beat, VirtualClock
from labeling.crowd.connectors import client_connector
from labeling.crowd.simulation import CrowdSpec, SiteAccess, crowd_run
from labeling.crowd.transport import ClientTransport
from labeling.models import ItemEmbedding, PipelineKind, PipelineRun, RunStatus, Split, TrainingRun
from labeling.selectors import human_labels
from labeling.services.demo import demo_crowd_open
from labeling.services.imports import path_import
from labeling.services.projects import project_create
from labeling.services.selection import items_queue
from labeling.services.sites import site_create
from tests.labeling.outbox_support import broker  # noqa: F401


@pytest.fixture
def loop_settings(settings, celery_eager):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }
    settings.CROWDLOOP_CNN_MIN_LABELS_PER_CLASS = 10**6  # the CNN has tests of its own; this one takes seconds
    # 20 gold items at the default exposure budget run dry within this crowd's first
    # minutes; the control pool has tests of its own.
    settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 10**6
    settings.CROWDLOOP_CONTROL_MAX_SERVES = 10**6
    return settings


def user_folders(root):
    """300 unlabeled digits with random names, 2 gold per class in class folders, a
    held-out split of 100 in class folders."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for row in range(300):
        path = root / "pool" / f"{secrets.token_hex(6)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(digit_png(digits.images[row]))
    per_class = {}
    for row in range(300, 400):
        label = str(digits.target[row])
        if per_class.get(label, 0) < 2:
            per_class[label] = per_class.get(label, 0) + 1
            (root / "gold" / label).mkdir(parents=True, exist_ok=True)
            (root / "gold" / label / f"{row}.png").write_bytes(digit_png(digits.images[row]))
    for row in range(1400, 1500):
        (root / "test" / str(digits.target[row])).mkdir(parents=True, exist_ok=True)
        (root / "test" / str(digits.target[row]) / f"{row}.png").write_bytes(digit_png(digits.images[row]))


@pytest.mark.django_db(transaction=True)
def test_a_new_project_gets_representatives_then_models_from_its_crowd_with_no_manual_step(loop_settings, tmp_path):
    user_folders(tmp_path)
    project = project_create(name="Digits", labels=[str(k) for k in range(10)], image_size=8)

    path_import(project, tmp_path / "pool")
    cold = PipelineRun.objects.get(project=project, kind=PipelineKind.CLUSTER)
    assert cold.status == RunStatus.SUCCEEDED and cold.result["cold_start"] is True
    assert ItemEmbedding.objects.filter(item__project=project).count() == 300
    representatives = set(
        ItemEmbedding.objects.filter(item__project=project, is_representative=True).values_list("item_id", flat=True)
    )
    assert set(items_queue(project, 10)) <= representatives
    assert not TrainingRun.objects.filter(project=project).exists()

    path_import(project, tmp_path / "gold")
    path_import(project, tmp_path / "test", split=Split.HOLDOUT)
    first, measured = TrainingRun.objects.filter(project=project).order_by("created_at")
    assert first.status == measured.status == RunStatus.SUCCEEDED, (first.error, measured.error)
    assert first.metrics["human_labels"] == 20 and "eval_n" not in first.metrics
    assert measured.metrics["eval_n"] == 100  # the held-out split at once measures a model

    demo_crowd_open(project)
    site, secret = site_create(name="Shop", projects=[project], allowed_hostnames=["localhost"])
    spec = CrowdSpec(budget=300, workers=6, visitor_seats=3, shares={"honest": 0.9, "spammer": 0.1}, seed=1)
    workers = crowd_people(spec)
    ledger = crowd_run(
        spec, slug=project.slug, site=SiteAccess(site.sitekey, secret, ClientTransport(remote_addr="192.0.2.9", user_agent="shop server")),
        connect=client_connector(), clock=VirtualClock(), workers=workers,
        password=crowd_accounts_provision(project, workers), beat=Beat(django_settings.CELERY_BEAT_SCHEDULE),
        max_wall_s=240,
    )
    assert ledger.spent >= spec.budget, ledger.summary()
    assert ledger.error_count == 0, ledger.errors

    runs = TrainingRun.objects.filter(project=project, status=RunStatus.SUCCEEDED).order_by("created_at")
    assert runs.count() >= 3
    assert len(human_labels(project)) >= 40
    project.refresh_from_db()
    # Far above chance (10 %): the figure itself is the benchmark's business; on 300 items,
    # 20 gold and a noisy crowd that is served at random by the server, it varies by run.
    assert project.active_run is not None and project.active_run.metrics["eval_accuracy"] >= 0.5
    assert all(run.metrics["promotion"]["reason"] for run in runs)


@pytest.mark.django_db
def test_a_round_the_broker_cannot_take_is_kept_and_sent_when_it_is_back(
    settings, broker, django_capture_on_commit_callbacks
):
    """Counting labels runs after the answer's commit; a round the broker refuses stays
    in the outbox (the answer stands, nothing raises) and is sent once the broker is back."""
    from labeling.services import loop
    from labeling.services.outbox import outbox_flush
    from labeling.tasks import cpu_semisupervised_task

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}}
    settings.CROWDLOOP_PIPELINE_EVERY_LABELS = 1
    broker.down = True
    with django_capture_on_commit_callbacks(execute=True):
        assert loop.labels_arrived(12345, 3) is True
    assert broker.sent == []
    broker.down = False
    assert outbox_flush() == (1, 0)
    assert broker.args_of(cpu_semisupervised_task) == [[12345]]
