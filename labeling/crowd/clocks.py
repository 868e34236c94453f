"""The clocks a crowd runs on.

On a :class:`VirtualClock` (in-process runs: tests, the label-efficiency benchmark)
seconds are simulated and the server's clock is the simulated one, so a person who
thinks for four seconds does not cost four seconds, and the server still sees those four
seconds (minimum solve times, leases, rate-limit windows, the Celery beat schedule, run
by :class:`Beat`). On a :class:`RealClock` (a running server) people wait for real.
"""
import time
from contextlib import contextmanager
from datetime import timedelta

from labeling import clock as server_clock


class VirtualClock:
    """Simulated seconds. :meth:`installed` makes the server's clock this one (see
    :mod:`labeling.clock`)."""

    def __init__(self, start=None):
        self.start = start or server_clock.now()
        self.t = 0.0

    def now(self):
        return self.t

    def wait_until(self, t, stop=None):
        self.t = max(self.t, t)
        return True

    def datetime(self):
        return self.start + timedelta(seconds=self.t)

    @contextmanager
    def installed(self):
        with server_clock.installed(self.datetime):
            yield self


class RealClock:
    """Wall-clock seconds since the run started; waiting sleeps (and wakes on ``stop``).
    ``speed`` > 1 makes people wait that many times less than they think (answer times
    they report stay what they thought; minimum solve times are then too short for
    honest people, so use it with a site that has none)."""

    def __init__(self, speed=1.0):
        self.started = time.monotonic()
        self.speed = float(speed)

    def now(self):
        return (time.monotonic() - self.started) * self.speed

    def wait_until(self, t, stop=None):
        delay = (t - self.now()) / self.speed
        if delay > 0:
            if stop is not None:
                return not stop.wait(delay)
            time.sleep(delay)
        return True

    @contextmanager
    def installed(self):
        yield self


class Beat:
    """Celery beat for a virtual clock: the entries of ``CELERY_BEAT_SCHEDULE``, applied
    when simulated time passes their period (in-process, with eager Celery)."""

    def __init__(self, schedule):
        self.entries = [(entry["task"], float(entry["schedule"])) for entry in schedule.values()]
        self.next_at = {task: period for task, period in self.entries}

    def tick(self, now):
        from labeling.celery import app

        for task, period in self.entries:
            while now >= self.next_at[task]:
                self.next_at[task] += period
                app.tasks[task].apply()
