"""A backing service that is down answers 503 with ``Retry-After``, never a 500.

PostgreSQL restarting, Redis or the broker unreachable: a request that cannot be served
without them gets ``503 {"detail": ..., "code": "service_unavailable"}`` and a
``Retry-After``, so that clients (the widget, a site's server calling siteverify, API
scripts) retry instead of treating it as a bug. Nothing is half-done by such a request:
it ran in one transaction, which the error rolled back. Three places apply it:

- :class:`ServiceUnavailableMiddleware`, for exceptions raised by views;
- :func:`server_error` (``handler500``), for those raised before a view (a session or
  user read from a database that is restarting) when ``DEBUG`` is off;
- the widget's own endpoints (``labeling.widget_api``), which add CORS headers.
"""
import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse
from django.views.defaults import server_error as django_server_error

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5


def outage_errors():
    """The exception classes that mean "a backing service is unreachable"."""
    import kombu.exceptions
    import redis

    return (
        OperationalError,
        InterfaceError,
        redis.ConnectionError,
        redis.TimeoutError,
        kombu.exceptions.OperationalError,
    )


def is_outage(exc):
    return isinstance(exc, outage_errors())


def unavailable_response(request, exc, extra=None):
    logger.warning("503 for %s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
    body = {"detail": "A backing service is briefly unavailable; retry shortly.", "code": "service_unavailable"}
    body.update(extra or {})
    response = JsonResponse(body, status=503)
    response["Retry-After"] = str(RETRY_AFTER_S)
    response["Cache-Control"] = "no-store"
    return response


class ServiceUnavailableMiddleware:
    """Turn a view's database, Redis or broker connection error into a JSON 503."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_outage(exception):
            return unavailable_response(request, exception)
        return None


def server_error(request, template_name="500.html"):
    """``handler500``: a 503 when the uncaught error is an outage, else Django's 500."""
    exc = sys.exc_info()[1]
    if exc is not None and is_outage(exc):
        return unavailable_response(request, exc)
    return django_server_error(request, template_name)
