"""The Celery application.

Queues are named by resource so that worker hosts subscribe to what they have:
``default`` for light work, ``cpu`` for clustering and pseudo-labels, ``gpu`` for
training. Nothing connects to a broker at import time. A worker that is ready starts
the outbox flush (labeling/services/outbox.py).
"""
import logging
import os
import threading
import time

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")

app = Celery("labeling")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


@signals.worker_ready.connect
def _reaper_start(sender=None, **kwargs):
    """Every worker reaps runs whose worker was lost: once at start-up, then every
    ``CROWDLOOP_REAP_INTERVAL_S`` from a thread of its own, so that recovery needs no
    beat and no hand action (``labeling.services.runs.runs_reap``)."""
    from django.conf import settings

    interval = settings.CROWDLOOP_REAP_INTERVAL_S
    if interval > 0:
        threading.Thread(target=_reap_forever, args=(interval,), name="crowdloop-reaper", daemon=True).start()


def _reap_forever(interval):
    from django.db import close_old_connections, connection

    from labeling.services.runs import runs_reap

    while True:
        try:
            close_old_connections()
            report = runs_reap()
            if report.requeued or report.failed:
                logger.warning("reaper: %d runs queued again, %d failed", len(report.requeued), len(report.failed))
        except Exception:  # a database or broker outage: try again next time
            logger.warning("reaper: could not reap", exc_info=True)
            connection.close()
        time.sleep(interval)


@signals.worker_ready.connect
def _outbox_flush_start(**kwargs):
    """Send what the web could not (broker down) at start-up, then every few seconds."""
    from labeling.services.outbox import worker_flusher_start

    worker_flusher_start()


@signals.worker_shutdown.connect
def _outbox_flush_stop(**kwargs):
    from labeling.services.outbox import worker_flusher_stop

    worker_flusher_stop()
