"""The server's clock: real by default, one installed clock for every thread of the
process while its block runs."""
import threading
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from labeling import clock

NOON = datetime(2030, 1, 1, 12, tzinfo=UTC)


def _in_a_thread(fn):
    seen = []
    thread = threading.Thread(target=lambda: seen.append(fn()))
    thread.start()
    thread.join()
    return seen[0]


def test_without_an_installed_clock_the_time_is_the_real_one():
    before = timezone.now()
    assert before <= clock.now() <= timezone.now()
    assert abs(clock.timestamp() - timezone.now().timestamp()) < 5
    assert clock.current() is None


def test_an_installed_clock_is_the_clock_of_every_thread_until_its_block_ends():
    with clock.installed(lambda: NOON):
        assert clock.now() == NOON
        assert clock.timestamp() == NOON.timestamp()
        assert _in_a_thread(clock.now) == NOON
    assert clock.current() is None
    assert _in_a_thread(clock.now) != NOON


def test_leaving_a_nested_clock_gives_back_the_outer_one():
    later = NOON + timedelta(hours=1)
    with clock.installed(lambda: NOON):
        with clock.installed(lambda: later):
            assert clock.now() == later
        assert clock.now() == NOON
    assert clock.current() is None


def test_a_clock_is_uninstalled_when_its_block_raises():
    try:
        with clock.installed(lambda: NOON):
            raise RuntimeError
    except RuntimeError:
        pass
    assert clock.current() is None
