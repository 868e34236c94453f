"""The one exception handler of the owners' API: each domain error, one answer."""
import pytest
from django.core.exceptions import ValidationError
from django.http import Http404

from labeling.api_errors import api_exception_handler
from labeling.services.jobs import UploadRejected
from labeling.services.media import ImageRejected
from labeling.services.predictions import PredictionRefused
from labeling.services.readers import ImportRefused
from labeling.services.training_config import TrainingConfigInvalid, TrainingRefused


@pytest.mark.parametrize(
    "error,status,body",
    [
        (TrainingConfigInvalid({"lr": "too big"}), 400, {"config": {"lr": ["too big"]}}),
        (TrainingRefused("one class"), 400, {"detail": "one class", "code": "training_refused"}),
        (PredictionRefused("no model"), 400, {"detail": "no model", "code": "no_model"}),
        (UploadRejected("bad split", field="split"), 400, {"split": "bad split"}),
        (UploadRejected("not a zip"), 400, {"file": "not a zip"}),
        (ImageRejected("not an image"), 400, {"file": "not an image"}),
        (ImportRefused("symlink"), 400, {"zip": "symlink"}),
        (ValidationError({"labels": "repeated"}), 400, {"labels": ["repeated"]}),
        (ValidationError("plain"), 400, {"detail": "plain", "code": "invalid"}),
        (PermissionError("staff only"), 403, {"detail": "staff only", "code": "permission_denied"}),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_a_domain_error_becomes_its_status_and_body(error, status, body):
    response = api_exception_handler(error, {})
    assert (response.status_code, response.data) == (status, body)


def test_http_404_is_answered_as_drf_answers_it():
    response = api_exception_handler(Http404("No such project"), {})
    assert response.status_code == 404 and response.data["detail"] == "No such project"


def test_an_unknown_error_is_not_swallowed():
    assert api_exception_handler(RuntimeError("bug"), {}) is None
