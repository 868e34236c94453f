"""The owners' prediction endpoints: one image, or a batch of files, a zip or item ids.

Domain errors (no model, an unreadable image or zip) rise to
:func:`labeling.api_errors.api_exception_handler`.
"""
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import selectors
from labeling.api import TAG_MODELS, uploaded_file
from labeling.api_errors import PayloadTooLarge
from labeling.api_serializers import PredictBatchOut, PredictFilesIn, PredictIn, PredictItemsIn, PredictOut
from labeling.services.predictions import images_predict, items_predict, model_predict
from labeling.services.readers import read_zip


class PredictApi(APIView):
    """``POST`` an image as multipart ``file``: the active model's label and probabilities."""

    parser_classes = [MultiPartParser]

    @extend_schema(tags=[TAG_MODELS], request={"multipart/form-data": PredictIn}, responses=PredictOut)
    def post(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        upload = uploaded_file(request, settings.CROWDLOOP_MAX_PREDICT_BYTES, "attach the image as 'file'")
        return Response(PredictOut(model_predict(project, upload.read(settings.CROWDLOOP_MAX_PREDICT_BYTES + 1))).data)


class PredictBatchApi(APIView):
    """``POST`` many images and get a label and probabilities for each, in order.

    Multipart: ``files`` (repeated), or one ``zip`` of images. JSON: ``{"items": [ids]}``
    of the project's stored items. Unreadable images get an ``error`` of their own.
    """

    parser_classes = [MultiPartParser, JSONParser]

    @extend_schema(
        tags=[TAG_MODELS],
        request={"multipart/form-data": PredictFilesIn, "application/json": PredictItemsIn},
        responses=PredictBatchOut,
    )
    def post(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        cap = settings.CROWDLOOP_MAX_PREDICT_BATCH_BYTES
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > cap:
            raise PayloadTooLarge(f"request of {length} bytes, over the batch cap of {cap}")
        if request.content_type.startswith("application/json"):
            ids = PredictItemsIn(data=request.data)
            ids.is_valid(raise_exception=True)
            return Response(PredictBatchOut(items_predict(project, ids.validated_data["items"])).data)
        images, unreadable = self.images(request)
        return Response(PredictBatchOut(images_predict(project, images, unreadable=unreadable)).data)

    def images(self, request):
        """``([(name, bytes)], [(name, reason)])`` from the multipart ``files`` or ``zip``
        (one of them): the images, and zip entries that could not be read."""
        files = request.FILES.getlist("files")
        archive = request.FILES.get("zip")
        if bool(files) == bool(archive):
            raise ValidationError({"files": "attach the images as 'files' (repeated) or one 'zip', not both"})
        limit = settings.CROWDLOOP_PREDICT_MAX_BATCH
        if archive is None:
            if len(files) > limit:
                raise ValidationError({"files": f"{len(files)} files, over the batch cap of {limit}"})
            return [(upload.name, upload.read(settings.CROWDLOOP_MAX_PREDICT_BYTES + 1)) for upload in files], []
        entries, problems = read_zip(
            archive, max_total=settings.CROWDLOOP_MAX_PREDICT_BATCH_BYTES, max_entries=limit + 1000
        )
        if len(entries) > limit:
            raise ValidationError({"zip": f"{len(entries)} images, over the batch cap of {limit}"})
        return [(entry.name, entry.data) for entry in entries], [(problem.name, problem.reason) for problem in problems]
