"""Every Celery task is sent through here: recorded first, sent after the commit.

:func:`task_send` writes an :class:`~labeling.models.OutboxMessage` in the caller's
transaction (the one that creates the job the task runs), and sends it once that
transaction commits. A message the broker refuses (Redis down) is not lost and not left
to a job stuck ``queued``: it stays unsent, and :func:`outbox_flush` sends it when the
broker is back. Flushes run

- in every Celery worker, at start-up and every ``CROWDLOOP_OUTBOX_FLUSH_S`` seconds (a
  thread of the worker's main process, no beat: :func:`worker_flusher_start`);
- in a web process, after its next successful send, when one of its own sends failed.

A message may be sent twice (sent, then the process died before marking it), so every
task it carries is idempotent: it works out from its rows what is still to do.

With Celery in eager mode (tests, and the embedded default's in-process runs) nothing is
recorded: the task runs after the commit, as ``transaction.on_commit(task.delay)`` does.
"""
import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F

from labeling import clock
from labeling.models import OutboxMessage

logger = logging.getLogger(__name__)

#: A fresh message belongs to the process that wrote it this long (it sends it after
#: the commit); a flush claims a message for this long while it sends it.
GRACE_S = 30
#: Sent messages are kept this long (for the operator), then deleted by a flush.
KEEP_SENT = timedelta(days=1)

_backlog = threading.Event()  # set when a send of this process failed


def _now() -> datetime:
    return clock.now()


def _eager() -> bool:
    from labeling.celery import app

    return bool(app.conf.task_always_eager)


def task_send(task: Any, *args: Any, countdown: float | None = None, **kwargs: Any) -> OutboxMessage | None:
    """Send ``task(*args, **kwargs)`` (``countdown`` seconds later) once the current
    transaction commits, through the outbox. Outside a transaction it is recorded and
    sent at once. Returns the :class:`OutboxMessage` (``None`` in eager mode)."""
    if _eager():
        transaction.on_commit(lambda: task.apply_async(args, kwargs, countdown=countdown))
        return None
    message = OutboxMessage.objects.create(
        task=task.name,
        args=list(args),
        kwargs=kwargs,
        countdown=float(countdown or 0),
        available_at=_now() + timedelta(seconds=GRACE_S),
    )
    transaction.on_commit(lambda: _send_after_commit(message))
    return message


def _send_after_commit(message: OutboxMessage) -> None:
    """Never raises: the caller's transaction is committed, its response must follow."""
    try:
        if _deliver(message) and _backlog.is_set():
            outbox_flush()
    except Exception:  # the database went away meanwhile: a worker's flush sends it
        logger.warning("outbox message %s left to the next flush", message.pk, exc_info=True)


def _deliver(message: OutboxMessage, *, now: datetime | None = None) -> bool:
    """Hand ``message`` to the broker; mark it sent, or due for the next flush."""
    from labeling.celery import app

    now = now or _now()
    remaining = message.countdown - (now - message.created_at).total_seconds() if message.created_at else 0
    try:
        app.send_task(
            message.task,
            args=message.args,
            kwargs=message.kwargs,
            countdown=max(remaining, 0) or None,
            task_id=f"outbox-{message.pk}",
            retry=False,  # fail fast: the flush is the retry
            ignore_result=True,  # no result subscription (nothing reads task results)
        )
    except Exception as exc:
        _backlog.set()
        try:
            OutboxMessage.objects.filter(pk=message.pk, sent_at__isnull=True).update(
                available_at=now, attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:1000]
            )
        except Exception:  # the database is down too: the grace period hands it to a flush
            logger.warning("could not note the failed send of outbox message %s", message.pk, exc_info=True)
        logger.warning("broker refused %s (outbox message %s); it is sent when the broker is back",
                       message.task, message.pk)
        return False
    OutboxMessage.objects.filter(pk=message.pk, sent_at__isnull=True).update(
        sent_at=_now(), attempts=F("attempts") + 1, last_error=""
    )
    return True


def outbox_flush(*, limit: int = 500, now: datetime | None = None) -> tuple[int, int]:
    """Send the unsent messages that are due, oldest first; stop at the first the broker
    refuses. Each is claimed first (one conditional ``UPDATE``), so that concurrent
    flushes never send the same message. Returns ``(sent, left)``."""
    now = now or _now()
    sent = 0
    due = list(
        OutboxMessage.objects.filter(sent_at__isnull=True, available_at__lte=now).order_by("pk")[:limit]
    )
    for message in due:
        claimed = OutboxMessage.objects.filter(
            pk=message.pk, sent_at__isnull=True, available_at__lte=now
        ).update(available_at=now + timedelta(seconds=GRACE_S))
        if not claimed:
            continue
        if not _deliver(message, now=now):
            break
        sent += 1
    left = OutboxMessage.objects.filter(sent_at__isnull=True).count()
    if not left:
        _backlog.clear()
    OutboxMessage.objects.filter(sent_at__lt=now - KEEP_SENT).delete()
    if sent:
        logger.info("outbox: sent %d delayed message(s), %d left", sent, left)
    return sent, left


def outbox_pending() -> tuple[int, datetime | None]:
    """How many messages wait for the broker (and how old the oldest is), for operators."""
    unsent = OutboxMessage.objects.filter(sent_at__isnull=True)
    oldest = unsent.order_by("created_at").values_list("created_at", flat=True).first()
    return unsent.count(), oldest


class _Flusher(threading.Thread):
    def __init__(self, every_s: float) -> None:
        super().__init__(name="crowdloop-outbox", daemon=True)
        self.every_s = every_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            close_old_connections()
            try:
                outbox_flush()
            except Exception:  # the database restarting: try again next time
                logger.warning("outbox flush failed; retrying in %s s", self.every_s, exc_info=True)
            finally:
                close_old_connections()
            if self.stopped.wait(self.every_s):
                return


_flusher = None


def worker_flusher_start(every_s: float | None = None) -> _Flusher:
    """Start this process's flush thread (idempotent); called when a worker is ready."""
    global _flusher
    if _flusher is not None and _flusher.is_alive():
        return _flusher
    _flusher = _Flusher(every_s if every_s is not None else settings.CROWDLOOP_OUTBOX_FLUSH_S)
    _flusher.start()
    return _flusher


def worker_flusher_stop() -> None:
    global _flusher
    if _flusher is not None:
        _flusher.stopped.set()
        _flusher.join(timeout=5)
        _flusher = None
