"""The simulated crowd's clocks: on a virtual clock the server sees simulated time, and
only while the crowd runs."""
from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import clock
from labeling.crowd.clocks import VirtualClock
from labeling.services import ratelimit, selection, submission
from labeling.services.projects import project_create


@pytest.mark.django_db
def test_the_server_sees_a_virtual_clock_while_it_is_installed_and_the_real_one_after():
    real_now = timezone.now
    virtual = VirtualClock()
    with virtual.installed():
        virtual.wait_until(7200.0)
        simulated = virtual.start + timedelta(hours=2)
        assert submission._now() == selection._now() == simulated
        assert ratelimit._now() == simulated.timestamp()
        project = project_create(name="Clocked", labels=["a", "b"])
        assert project.created_at == simulated
        assert timezone.now is real_now and timezone.now() < simulated - timedelta(hours=1)
    assert clock.current() is None
    assert timezone.now is real_now
    assert abs(submission._now() - timezone.now()) < timedelta(minutes=1)
    assert project_create(name="Unclocked", labels=["a", "b"]).created_at < simulated - timedelta(hours=1)
