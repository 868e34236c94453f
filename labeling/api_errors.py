"""The owners' API's one exception handler: the services' errors become responses here.

Views call services and let their exceptions rise; no view catches a domain error to
turn it into HTTP. Each domain error maps to a status and a body of the same shape as
DRF's own validation errors: ``{"<field>": "why"}`` when an input is at fault, else
``{"detail": "why", "code": "<code>"}``.
"""
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from labeling.services.jobs import UploadRejected
from labeling.services.media import ImageRejected
from labeling.services.predictions import PredictionRefused
from labeling.services.readers import ImportRefused
from labeling.services.training_config import TrainingConfigInvalid, TrainingRefused


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


def _config_invalid(exc):
    return {"config": {key: [message] for key, message in exc.errors.items()}}


def _upload_rejected(exc):
    return {exc.field: str(exc)}


def _detail(code):
    return lambda exc: {"detail": str(exc), "code": code}


def _validation(exc):
    if hasattr(exc, "error_dict"):
        return exc.message_dict
    return {"detail": " ".join(exc.messages), "code": "invalid"}


#: Domain error → (status, body). The first class that matches wins, so subclasses
#: come before their parents.
DOMAIN_ERRORS = (
    (TrainingConfigInvalid, status.HTTP_400_BAD_REQUEST, _config_invalid),
    (TrainingRefused, status.HTTP_400_BAD_REQUEST, _detail("training_refused")),
    (PredictionRefused, status.HTTP_400_BAD_REQUEST, _detail("no_model")),
    (UploadRejected, status.HTTP_400_BAD_REQUEST, _upload_rejected),
    (ImageRejected, status.HTTP_400_BAD_REQUEST, lambda exc: {"file": str(exc)}),
    (ImportRefused, status.HTTP_400_BAD_REQUEST, lambda exc: {"zip": str(exc)}),
    (DjangoValidationError, status.HTTP_400_BAD_REQUEST, _validation),
    (ObjectDoesNotExist, status.HTTP_404_NOT_FOUND, _detail("not_found")),
    (PermissionError, status.HTTP_403_FORBIDDEN, _detail("permission_denied")),
)


def api_exception_handler(exc, context):
    """DRF's ``EXCEPTION_HANDLER``: DRF's own exceptions, ``Http404`` and Django's
    ``PermissionDenied`` as DRF answers them; a domain error by :data:`DOMAIN_ERRORS`;
    anything else rises (a 500, logged)."""
    if isinstance(exc, DjangoPermissionDenied):
        return drf_exception_handler(exc, context)
    for error_class, code, body in DOMAIN_ERRORS:
        if isinstance(exc, error_class):
            return Response(body(exc), status=code)
    return drf_exception_handler(exc, context)
