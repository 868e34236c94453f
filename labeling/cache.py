"""Cache backends that keep working when their store misbehaves.

- :class:`ResilientRedisCache`: Django's Redis cache, but a Redis that cannot be reached
  reads as a miss and a write that cannot be made is skipped (logged), so that every
  request that only *reads through* the cache (sites, labels, sessions) falls back to
  the database instead of failing. After an error Redis is left alone for
  ``DOWN_FOR_S`` seconds (a short circuit breaker), so an unreachable host costs one
  connect timeout, not one per call; it is tried again by itself afterwards.
- :class:`FileCache`: Django's file cache for the embedded default, without its two
  costs on every write: it lists the cache folder at most every ``CULL_EVERY_S``
  seconds (Django's lists it on every ``set``), and, with ``CULL_EXPIRED_ONLY``, it
  drops only expired entries (Django's drops random ones past ``MAX_ENTRIES``, which
  resets rate-limit counters). :meth:`FileCache.count` is an atomic cross-process
  counter (one locked file), the rate limiter's primitive there.
"""
import logging
import os
import pickle
import threading
import time
import zlib

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache
from django.core.files import locks

logger = logging.getLogger(__name__)


def redis_errors():
    """The exceptions that mean "Redis cannot be reached right now"."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError, OSError)


class RedisDown:
    """A process-wide note that Redis failed recently (shared by every alias on it)."""

    def __init__(self, down_for_s=2.0):
        self.down_for_s = down_for_s
        self._until = 0.0
        self._lock = threading.Lock()

    def is_down(self):
        return time.monotonic() < self._until

    def failed(self, exc, what):
        with self._lock:
            first = not self.is_down()
            self._until = time.monotonic() + self.down_for_s
        if first:
            logger.warning("Redis unreachable (%s: %s); falling back for %.0f s", what, exc, self.down_for_s)


REDIS_DOWN = RedisDown()


class ResilientRedisCache(RedisCache):
    """Redis as a cache that degrades to "always a miss, writes skipped" while Redis is
    unreachable. ``incr``/``decr`` raise ``ValueError`` then (what a missing key raises,
    which every caller already handles)."""

    _MISS = object()

    def _try(self, what, call, fallback):
        if REDIS_DOWN.is_down():
            return fallback()
        try:
            return call()
        except redis_errors() as exc:
            REDIS_DOWN.failed(exc, what)
            return fallback()

    def get(self, key, default=None, version=None):
        return self._try("get", lambda: super(ResilientRedisCache, self).get(key, default, version), lambda: default)

    def get_many(self, keys, version=None):
        return self._try("get_many", lambda: super(ResilientRedisCache, self).get_many(keys, version), dict)

    def has_key(self, key, version=None):
        return self._try("has_key", lambda: super(ResilientRedisCache, self).has_key(key, version), lambda: False)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._try(
            "add", lambda: super(ResilientRedisCache, self).add(key, value, timeout, version), lambda: False
        )

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._try("set", lambda: super(ResilientRedisCache, self).set(key, value, timeout, version), _none)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._try(
            "set_many", lambda: super(ResilientRedisCache, self).set_many(data, timeout, version), list
        )

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._try("touch", lambda: super(ResilientRedisCache, self).touch(key, timeout, version), _false)

    def delete(self, key, version=None):
        return self._try("delete", lambda: super(ResilientRedisCache, self).delete(key, version), _false)

    def delete_many(self, keys, version=None):
        return self._try("delete_many", lambda: super(ResilientRedisCache, self).delete_many(keys, version), _none)

    def incr(self, key, delta=1, version=None):
        result = self._try("incr", lambda: super(ResilientRedisCache, self).incr(key, delta, version), _missing)
        if result is self._MISS:
            raise ValueError(f"Key '{key}' not found (Redis unreachable)")
        return result

    def decr(self, key, delta=1, version=None):
        return self.incr(key, -delta, version)

    def clear(self):
        return self._try("clear", lambda: super(ResilientRedisCache, self).clear(), _false)


def _none():
    return None


def _false():
    return False


def _missing():
    return ResilientRedisCache._MISS


class FileCache(FileBasedCache):
    """The file cache of the embedded default (see the module docstring).

    Options: ``CULL_EVERY_S`` (default 60), ``CULL_EXPIRED_ONLY`` (default off) on top of
    Django's ``MAX_ENTRIES`` / ``CULL_FREQUENCY``.
    """

    def __init__(self, dir, params):
        super().__init__(dir, params)
        options = params.get("OPTIONS", {})
        self._cull_every_s = float(options.get("CULL_EVERY_S", 60))
        self._cull_expired_only = bool(options.get("CULL_EXPIRED_ONLY", False))
        self._next_cull = 0.0
        self._cull_lock = threading.Lock()

    def get(self, key, default=None, version=None):
        try:
            return super().get(key, default, version)
        except (EOFError, zlib.error, pickle.UnpicklingError):  # caught mid-rewrite by count()
            return default

    def _cull(self):
        now = time.monotonic()
        with self._cull_lock:
            if now < self._next_cull:
                return
            self._next_cull = now + self._cull_every_s
        filelist = self._list_cache_files()
        kept = []
        for fname in filelist:
            try:
                expired = self._remove_if_expired(fname)
            except (FileNotFoundError, EOFError, pickle.UnpicklingError):
                continue
            if not expired:
                kept.append(fname)
        if self._cull_expired_only or len(kept) < self._max_entries or self._cull_frequency == 0:
            return
        for fname in kept[: len(kept) // self._cull_frequency]:
            self._delete(fname)

    def count(self, key, timeout, version=None):
        """Add one to the counter ``key`` and return its new value, atomically across
        processes (an exclusive lock on the counter's file). A missing or expired
        counter starts again at 1 and lives ``timeout`` seconds."""
        self._createdir()
        fname = self._key_to_file(key, version)
        self._cull()
        while True:
            value = self._count_once(fname, timeout)
            if value is not None:
                return value

    def _remove_if_expired(self, fname):
        """Remove ``fname`` if it is expired, holding its lock (a counter being written is
        never removed under its writer; an empty file is one being created: kept)."""
        with open(fname, "rb") as f:
            locks.lock(f, locks.LOCK_EX)
            try:
                try:
                    expiry = pickle.load(f)
                except EOFError:
                    return False
                if expiry is not None and expiry < time.time():
                    os.remove(fname)
                    return True
                return False
            finally:
                locks.unlock(f)

    def _count_once(self, fname, timeout):
        """One try of :meth:`count`: ``None`` when the file was removed (culled as expired)
        between opening and locking it, so that the caller opens it again."""
        fd = os.open(fname, os.O_RDWR | os.O_CREAT, 0o600)
        with open(fd, "r+b") as f:
            locks.lock(f, locks.LOCK_EX)
            try:
                try:
                    linked = os.stat(fname).st_ino == os.fstat(f.fileno()).st_ino
                except FileNotFoundError:
                    linked = False
                if not linked:
                    return None
                value, expiry = 0, None
                try:
                    expiry = pickle.load(f)
                    if expiry is not None and expiry >= time.time():
                        value = pickle.loads(zlib.decompress(f.read()))
                    else:
                        expiry = None
                except (EOFError, zlib.error, pickle.UnpicklingError):
                    expiry = None
                value += 1
                f.seek(0)
                if expiry is None:
                    self._write_content(f, timeout, value)
                else:
                    f.write(pickle.dumps(expiry, self.pickle_protocol))
                    f.write(zlib.compress(pickle.dumps(value, self.pickle_protocol)))
                # Rewritten in place; truncated only past the new end (a growing count
                # never shrinks its file, and truncating to zero first costs a journal
                # commit per hit on ext4).
                f.truncate(f.tell())
                f.flush()
            finally:
                locks.unlock(f)
        return value
