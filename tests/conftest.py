"""Shared fixtures. Tests that need a real PostgreSQL or Redis skip without one, with
the reason; ``CROWDLOOP_REQUIRE_SERVICES=1`` (set by ``.ci/run``) makes that a failure."""
import os
import socket
from urllib.parse import urlparse

import pytest

REQUIRE_SERVICES = os.environ.get("CROWDLOOP_REQUIRE_SERVICES") == "1"


def service_missing(reason):
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (CROWDLOOP_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture
def redis_url():
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=1).close()
    except OSError:
        service_missing(f"no Redis server at {parsed.hostname}:{parsed.port or 6379}")
    return url


@pytest.fixture
def postgres(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        service_missing("needs PostgreSQL: set DATABASE_URL=postgres://...")
    return connection


@pytest.fixture
def celery_eager():
    from labeling.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False
