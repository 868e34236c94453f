"""The owners' prediction endpoints: one image, or a batch of files, a zip or item ids."""
from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import selectors
from labeling.api import PayloadTooLarge, uploaded_file
from labeling.services.media import ImageRejected
from labeling.services.predictions import PredictionRefused, images_predict, items_predict, model_predict
from labeling.services.readers import ImportRefused, read_zip


class PredictApi(APIView):
    """``POST`` an image as multipart ``file``: the active model's label and probabilities."""

    parser_classes = [MultiPartParser]

    def post(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        upload = uploaded_file(request, settings.CROWDLOOP_MAX_PREDICT_BYTES, "attach the image as 'file'")
        try:
            return Response(model_predict(project, upload.read(settings.CROWDLOOP_MAX_PREDICT_BYTES + 1)))
        except ImageRejected as exc:
            raise ValidationError({"file": str(exc)}) from exc
        except PredictionRefused as exc:
            raise ValidationError({"detail": str(exc)}) from exc


class ItemIdsSerializer(serializers.Serializer):
    items = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1)

    def validate_items(self, items):
        if len(items) > settings.CROWDLOOP_PREDICT_MAX_BATCH:
            raise ValidationError(f"{len(items)} items, over the batch cap of {settings.CROWDLOOP_PREDICT_MAX_BATCH}")
        return items


class PredictBatchApi(APIView):
    """``POST`` many images and get a label and probabilities for each, in order.

    Multipart: ``files`` (repeated), or one ``zip`` of images. JSON: ``{"items": [ids]}``
    of the project's stored items. Unreadable images get an ``error`` of their own.
    """

    parser_classes = [MultiPartParser, JSONParser]

    def post(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        cap = settings.CROWDLOOP_MAX_PREDICT_BATCH_BYTES
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > cap:
            raise PayloadTooLarge(f"request of {length} bytes, over the batch cap of {cap}")
        try:
            if request.content_type.startswith("application/json"):
                ids = ItemIdsSerializer(data=request.data)
                ids.is_valid(raise_exception=True)
                return Response(items_predict(project, ids.validated_data["items"]))
            images, unreadable = self.images(request)
            return Response(images_predict(project, images, unreadable=unreadable))
        except PredictionRefused as exc:
            raise ValidationError({"detail": str(exc)}) from exc

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
        try:
            entries, problems = read_zip(
                archive, max_total=settings.CROWDLOOP_MAX_PREDICT_BATCH_BYTES, max_entries=limit + 1000
            )
        except ImportRefused as exc:
            raise ValidationError({"zip": str(exc)}) from exc
        if len(entries) > limit:
            raise ValidationError({"zip": f"{len(entries)} images, over the batch cap of {limit}"})
        return [(entry.name, entry.data) for entry in entries], [(problem.name, problem.reason) for problem in problems]
