"""The Celery application.

Queues are named by resource so that worker hosts subscribe to what they have:
``default`` for light work, ``cpu`` for clustering and pseudo-labels, ``gpu`` for
training. Nothing connects to a broker at import time. A worker that is ready starts
the outbox flush (labeling/services/outbox.py).
"""
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")

app = Celery("labeling")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_ready.connect
def _outbox_flush_start(**kwargs):
    """Send what the web could not (broker down) at start-up, then every few seconds."""
    from labeling.services.outbox import worker_flusher_start

    worker_flusher_start()


@signals.worker_shutdown.connect
def _outbox_flush_stop(**kwargs):
    from labeling.services.outbox import worker_flusher_stop

    worker_flusher_stop()
