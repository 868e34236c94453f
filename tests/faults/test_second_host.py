"""A second host: a Celery worker in a network namespace of its own, joined to this one
by a veth pair, reaching PostgreSQL and Redis over it (not over loopback), with
``MEDIA_ROOT`` on storage both hosts mount. It imports, runs a clustering round and a
training run; killed mid-training, another such host finishes the run on its own."""
import logging
import time
from urllib.parse import urlparse, urlunparse

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from labeling.models import ImportJob, PipelineKind, PipelineRun, RunStatus, TrainingRun
from labeling.services.jobs import import_job_create
from labeling.services.projects import project_create
from tests.faults.conftest import FAST_RECOVERY, random_png
from tests.faults.procs import (
    RedisServer,
    SecondHost,
    database_url,
    netns_available,
    nothing_left_running,
    wait_for,
)
from tests.labeling.test_api_imports import zip_upload

pytestmark = pytest.mark.django_db(transaction=True)
logger = logging.getLogger(__name__)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)


@pytest.fixture
def second_host():
    reason = netns_available()
    if reason:
        pytest.skip(f"no second host on this machine: {reason}")
    if connection.vendor != "postgresql":
        pytest.skip("a second host needs a database server (SQLite is a local file): set DATABASE_URL=postgres://...")
    with SecondHost() as host:
        yield host


@pytest.fixture
def redis_server(tmp_path, second_host):
    """The test's own Redis, on loopback for this process and on the veth for the host."""
    with RedisServer(bind=f"127.0.0.1 {second_host.host_ip}", directory=tmp_path / "redis") as server:
        yield server


@pytest.fixture
def remote_worker(second_host, redis_server, worker_factory):
    """Start a worker on the second host: PostgreSQL through a relay on the veth address
    (the shared server listens on 127.0.0.1 only), Redis on the veth address."""
    local = urlparse(database_url(connection))
    relay_port = local.port or 5432
    second_host.forward(relay_port, local.hostname, relay_port)
    remote_db = urlunparse(local._replace(netloc=local.netloc.replace(local.hostname, second_host.host_ip)))
    assert second_host.reaches(second_host.host_ip, relay_port)
    assert not second_host.reaches("127.0.0.1", relay_port), "the namespace must not share this host's loopback"

    def start(hostname):
        return worker_factory(
            netns=second_host.name, hostname=hostname, database_url=remote_db,
            redis_url=redis_server.url(host=second_host.host_ip), env=FAST_RECOVERY,
        ).wait_ready(timeout=90)

    return start


def status_of(model, **filters):
    return model.objects.filter(**filters).values_list("status", flat=True).first()


def test_a_worker_on_a_second_host_imports_clusters_trains_and_its_loss_is_survived(
    shared_media, broker, remote_worker
):
    owner = get_user_model().objects.create_user("owner")
    project = project_create(name="Second host", labels=["a", "b"], owner=owner, image_size=8)
    first = remote_worker("crowdloop-host-a")
    n = 200
    job = import_job_create(project=project, upload=zip_upload([(f"{'ab'[i % 2]}/{i}.png", random_png(i)) for i in range(n)]))
    wait_for(lambda: status_of(ImportJob, pk=job.pk) in FINISHED, 90, what=f"import\n{first.log()[-2000:]}")
    job.refresh_from_db()
    assert job.status == RunStatus.SUCCEEDED and job.report["created"] == n, job.error
    assert job.worker.startswith("crowdloop-host-a:")

    # The import starts a clustering round, whose end queues a training run.
    round_done = lambda: status_of(PipelineRun, project=project, kind=PipelineKind.CLUSTER) in FINISHED  # noqa: E731
    wait_for(round_done, 90, what=f"clustering round\n{first.log()[-2000:]}")
    cluster = PipelineRun.objects.get(project=project, kind=PipelineKind.CLUSTER)
    assert cluster.status == RunStatus.SUCCEEDED, cluster.error
    wait_for(lambda: TrainingRun.objects.filter(project=project, epoch__gte=2).exists()
             or status_of(TrainingRun, project=project) in FINISHED, 120, what=f"training\n{first.log()[-2000:]}")
    run = TrainingRun.objects.get(project=project)
    assert run.status == RunStatus.RUNNING, (run.status, run.error, run.metrics.get("kind"))

    first.kill9()
    killed_at = time.monotonic()
    second = remote_worker("crowdloop-host-b")  # another machine: it learns of the loss by the heartbeat
    wait_for(lambda: status_of(TrainingRun, pk=run.pk) in FINISHED, 120, what=f"the run after the kill\n{second.log()[-3000:]}")
    recovery = time.monotonic() - killed_at
    logger.warning("second host: training killed after epoch %d, finished %.1f s after the kill", run.epoch, recovery)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempts == 2 and recovery < 120
    assert run.worker.startswith("crowdloop-host-b:")
    assert "resuming from epoch" in second.log()
    nothing_left_running()
