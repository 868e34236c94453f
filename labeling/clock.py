"""The server's clock: what time it is, for every part of the server at once.

Server code reads the time through :func:`now` (an aware datetime) or :func:`timestamp`
(epoch seconds), never ``timezone.now()`` or ``time.time()`` itself, so that a process
can run on another clock: ``with clock.installed(fn): ...`` makes ``fn`` the clock of
every thread of the process (the request threads of an in-process server included)
until the block ends. The simulated crowd runs the server on simulated seconds this
way (:class:`labeling.crowd.clocks.VirtualClock`). Without an installed clock the time is
``django.utils.timezone.now()``, looked up at each call.
"""
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from django.utils import timezone

_lock = threading.Lock()
# Installed clocks, innermost last, each under a token of its own; _current is the
# innermost one's function, read without the lock (one reference, read atomically).
_installed: list[tuple[object, Callable[[], datetime]]] = []
_current: Callable[[], datetime] | None = None


def now() -> datetime:
    """The current time: the installed clock's, else ``timezone.now()``."""
    fn = _current
    return timezone.now() if fn is None else fn()


def timestamp() -> float:
    """The current time in seconds since the epoch: the installed clock's, else
    ``time.time()``."""
    fn = _current
    return time.time() if fn is None else fn().timestamp()


def current() -> Callable[[], datetime] | None:
    """The installed clock, or ``None`` when the time is the real one."""
    return _current


@contextmanager
def installed(fn: Callable[[], datetime]) -> Iterator[Callable[[], datetime]]:
    """Make ``fn`` (returning aware datetimes) the clock of the whole process for the
    block. Installs nest: leaving a block restores the clock that was installed before
    it, whatever order blocks of different threads leave in."""
    global _current
    token = object()
    with _lock:
        _installed.append((token, fn))
        _current = fn
    try:
        yield fn
    finally:
        with _lock:
            _installed[:] = [entry for entry in _installed if entry[0] is not token]
            _current = _installed[-1][1] if _installed else None
