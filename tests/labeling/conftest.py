"""Fixtures of the Django-side tests: every test writes its files to its own folder."""
import zlib

import pytest


@pytest.fixture
def media_root_dir(tmp_path):
    """Where a test's files go; a module may override it to share files across tests."""
    return tmp_path / "media"


@pytest.fixture(autouse=True)
def _media_root(settings, media_root_dir):
    settings.MEDIA_ROOT = media_root_dir
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def _ratelimit_clock(monkeypatch, request):
    """Rate-limit windows are fixed in time: freeze their clock so that no window rolls
    over in the middle of a test (a flaky 429), at a time of each test's own, so that no
    two tests share a counter in a shared cache such as Redis. A clock installed for the
    process (a simulated crowd's) still runs them."""
    from labeling import clock
    from labeling.services import ratelimit

    frozen = 10**9 + (zlib.crc32(request.node.nodeid.encode()) % 100_000) * 3600 + 30
    monkeypatch.setattr(ratelimit, "_now", lambda: float(frozen) if clock.current() is None else clock.timestamp())


@pytest.fixture(autouse=True)
def _control_pool_fresh(settings):
    """The control pool follows gold and consensus at once (no refresh interval)."""
    settings.CROWDLOOP_CONTROL_POOL_REFRESH_S = 0
