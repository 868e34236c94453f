"""The Celery application.

Queues are named by resource so that worker hosts subscribe to what they have:
``default`` for light work, ``cpu`` for clustering and pseudo-labels, ``gpu`` for
training. Nothing connects to a broker at import time.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")

app = Celery("labeling")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
