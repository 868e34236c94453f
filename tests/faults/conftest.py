"""The fault suite: real processes killed and restarted (its own redis-server and Celery
workers, see :mod:`tests.faults.procs`). Slow, so skipped unless ``CROWDLOOP_FAULTS=1``;
CI runs ``CROWDLOOP_FAULTS=1 ./crowdloop test tests/faults`` on PostgreSQL."""
import os
from pathlib import Path

import pytest

from tests.faults.procs import CeleryWorker, RedisServer, database_url

FAULTS = os.environ.get("CROWDLOOP_FAULTS") == "1"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    skip = pytest.mark.skip(reason="fault suite: set CROWDLOOP_FAULTS=1 to run it")
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)
            if not FAULTS:
                item.add_marker(skip)


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of the test's own, on a free port; stopped and removed after."""
    with RedisServer(directory=tmp_path / "redis") as server:
        yield server


@pytest.fixture
def worker_factory(tmp_path, redis_server):
    """Start Celery workers against the test database, the test's own Redis and this
    process's ``MEDIA_ROOT``: ``worker_factory(env={...})`` returns a started
    :class:`CeleryWorker`. All are killed at the end of the test."""
    from django.conf import settings
    from django.db import connection

    started = []

    def start(**kwargs):
        kwargs.setdefault("database_url", database_url(connection))
        kwargs.setdefault("redis_url", redis_server.url())
        kwargs.setdefault("data_dir", tmp_path / "worker-data")
        kwargs.setdefault("media_root", settings.MEDIA_ROOT)
        worker = CeleryWorker(**kwargs).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=10)


# Short clocks for the fault suite: a lost worker's run is stale after 10 s and a
# surviving worker's reaper looks every 2 s (production: 120 s and 30 s).
FAST_RECOVERY = {
    "CROWDLOOP_HEARTBEAT_TIMEOUT_S": 10,
    "CROWDLOOP_HEARTBEAT_INTERVAL_S": 1,
    "CROWDLOOP_REAP_INTERVAL_S": 2,
    "CROWDLOOP_AUDIT_AFTER_TRAINING": 0,
    "CROWDLOOP_TEXT_EMBEDDINGS": 0,
    "OMP_NUM_THREADS": 1,  # one worker process per core, as on a small host
}


@pytest.fixture
def shared_media(tmp_path, settings):
    """``MEDIA_ROOT`` of the test process and of every worker it starts: one folder,
    as a shared volume (NFS, a bucket mount) is between hosts."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture
def broker(redis_server):
    """Point this process's Celery app at the test's own Redis, so that what the
    services enqueue reaches the test's workers; restored after."""
    from labeling.celery import app

    def reset_pools():
        app.pool.force_close_all()
        app._pool = None
        app.amqp._producer_pool = None

    before = app.conf.broker_url, app.conf.result_backend
    reset_pools()
    app.conf.broker_url = redis_server.url()
    app.conf.result_backend = None
    yield app
    reset_pools()
    app.conf.broker_url, app.conf.result_backend = before


def random_png(seed, size=8):
    """A small grey PNG of random pixels: each seed gives content of its own."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
