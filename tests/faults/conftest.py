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
    """Start Celery workers against the test database and the test's own Redis:
    ``worker_factory(env={...})`` returns a started :class:`CeleryWorker`. All are
    killed at the end of the test."""
    from django.db import connection

    started = []

    def start(**kwargs):
        kwargs.setdefault("database_url", database_url(connection))
        kwargs.setdefault("redis_url", redis_server.url())
        kwargs.setdefault("data_dir", tmp_path / "worker-data")
        worker = CeleryWorker(**kwargs).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=10)
