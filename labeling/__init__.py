"""The Django side of Crowdloop: data model, services, views, API and Celery tasks."""
from .celery import app as celery_app

__all__ = ["celery_app"]
