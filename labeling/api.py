"""HTTP API (``/api/v1/``): validates input, calls one service, renders JSON."""
from django.conf import settings
from django.urls import reverse
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import selectors
from labeling.services.jobs import UploadRejected, import_job_create


class PayloadTooLarge(APIException):
    status_code = 413
    default_code = "payload_too_large"


class ProjectSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    data_kind = serializers.CharField()
    labels = serializers.SerializerMethodField()
    answers_per_item = serializers.IntegerField()
    gold_share = serializers.FloatField()
    consensus_threshold = serializers.FloatField()
    stats = serializers.SerializerMethodField()

    def get_labels(self, project):
        return [label.name for label in project.label_classes.all()]

    def get_stats(self, project):
        stats = getattr(project, "stats", None)
        if stats is None:
            return None
        return {
            "items_total": stats.items_total,
            "items_by_status": stats.items_by_status,
            "known_total": stats.known_total,
            "answers_total": stats.answers_total,
            "refreshed_at": stats.refreshed_at,
        }


def import_job_payload(job):
    return {
        "id": str(job.pk),
        "project": job.project.slug,
        "source_name": job.source_name,
        "status": job.status,
        "total": job.total,
        "processed": job.processed,
        "report": job.report,
        "error": job.error,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "url": reverse("api-import-detail", args=[job.pk]),
    }


class ProjectListApi(APIView):
    def get(self, request):
        projects = selectors.projects_managed_by(request.user).select_related("stats").prefetch_related("label_classes")
        return Response(ProjectSerializer(projects, many=True).data)


class ProjectDetailApi(APIView):
    def get(self, request, slug):
        return Response(ProjectSerializer(selectors.project_get_managed(request.user, slug)).data)


class ImportCreateApi(APIView):
    """``POST`` a ``file`` (multipart): a zip of images or a CSV/JSONL of texts.

    Returns 202 at once; the import runs on a worker and its progress is at ``url``.
    """

    parser_classes = [MultiPartParser]

    def post(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.CROWDLOOP_MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"upload of {length} bytes, over the cap of {settings.CROWDLOOP_MAX_UPLOAD_BYTES}")
        upload = request.data.get("file")
        if upload is None or not hasattr(upload, "read"):
            raise ValidationError({"file": "attach the file to import as 'file'"})
        try:
            job = import_job_create(project=project, upload=upload, user=request.user)
        except UploadRejected as exc:
            raise ValidationError({"file": str(exc)}) from exc
        return Response(import_job_payload(job), status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(APIView):
    def get(self, request, job_id):
        return Response(import_job_payload(selectors.import_job_get_managed(request.user, job_id)))
