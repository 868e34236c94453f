"""Fixtures of the Django-side tests: every test writes its files to its own folder."""
import pytest


@pytest.fixture
def media_root_dir(tmp_path):
    """Where a test's files go; a module may override it to share files across tests."""
    return tmp_path / "media"


@pytest.fixture(autouse=True)
def _media_root(settings, media_root_dir):
    settings.MEDIA_ROOT = media_root_dir
    return settings.MEDIA_ROOT
