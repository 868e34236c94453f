"""The owners' HTTP API (``/api/v1/``): each view validates input with a serializer,
calls one service or selector, and renders an output serializer.

Domain errors are not caught here: :func:`labeling.api_errors.api_exception_handler`
maps them to responses, the same way for every endpoint.
"""
from django.conf import settings
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import selectors
from labeling.api_errors import PayloadTooLarge
from labeling.api_serializers import (
    AuditDecisionOut,
    AuditOut,
    ExportIn,
    ImportIn,
    ImportJobOut,
    PredictionsOut,
    ProjectIn,
    ProjectOut,
    ProjectSettingsIn,
    TrainingRunIn,
    TrainingRunOut,
)
from labeling.services.exports import FORMATS, ExportOptions, export_stream
from labeling.services.jobs import import_job_create
from labeling.services.projects import project_update
from labeling.services.training import training_run_create

TAG_PROJECTS, TAG_DATA, TAG_MODELS = "projects", "data", "models"


def uploaded_file(request, cap, missing):
    """The multipart ``file`` of ``request``; an announced body over ``cap`` bytes is
    refused before it is read."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > cap:
        raise PayloadTooLarge(f"upload of {length} bytes, over the cap of {cap}")
    upload = request.data.get("file")
    if upload is None or not hasattr(upload, "read"):
        raise ValidationError({"file": missing})
    return upload


class ProjectListApi(APIView):
    """``GET`` the projects you manage; ``POST`` creates one you own (201)."""

    @extend_schema(tags=[TAG_PROJECTS], responses=ProjectOut(many=True))
    def get(self, request):
        projects = selectors.projects_managed_by(request.user).select_related("stats").prefetch_related("label_classes")
        return Response(ProjectOut(projects, many=True).data)

    @extend_schema(tags=[TAG_PROJECTS], request=ProjectIn, responses={201: ProjectOut})
    def post(self, request):
        if not selectors.user_may_create_projects(request.user):
            raise PermissionDenied(
                "you may not create projects (a token scoped to projects never may; ask staff for the permission)"
            )
        serializer = ProjectIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = serializer.save(owner=request.user)
        response = Response(ProjectOut(project).data, status=status.HTTP_201_CREATED)
        response["Location"] = reverse("api-project-detail", args=[project.slug])
        return response


class ProjectDetailApi(APIView):
    """``GET`` a project with its settings and counters; ``PATCH`` changes settings."""

    @extend_schema(tags=[TAG_PROJECTS], responses=ProjectOut)
    def get(self, request, slug):
        return Response(ProjectOut(selectors.project_get_managed(request.user, slug)).data)

    @extend_schema(tags=[TAG_PROJECTS], request=ProjectSettingsIn, responses=ProjectOut)
    def patch(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        body = ProjectSettingsIn(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(ProjectOut(project_update(project, **body.validated_data)).data)


class ImportCreateApi(APIView):
    """Upload a ``file`` to import, into the pool or (``split=holdout``) a labeled
    held-out split that is never served and measures every model.

    Returns 202 at once; the import runs on a worker and its progress is at ``url``.
    """

    parser_classes = [MultiPartParser]

    @extend_schema(tags=[TAG_DATA], request={"multipart/form-data": ImportIn}, responses={202: ImportJobOut})
    def post(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        upload = uploaded_file(request, settings.CROWDLOOP_MAX_UPLOAD_BYTES, "attach the file to import as 'file'")
        split = request.data.get("split") or "pool"
        job = import_job_create(project=project, upload=upload, user=request.user, split=split)
        return Response(ImportJobOut(job).data, status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(APIView):
    @extend_schema(tags=[TAG_DATA], responses=ImportJobOut)
    def get(self, request, job_id):
        return Response(ImportJobOut(selectors.import_job_get_managed(request.user, job_id)).data)


def export_response(project, params):
    """A streaming download of the project's labels (shared by the API and the page)."""
    options = ExportIn(data=params)
    options.is_valid(raise_exception=True)
    fmt = options.validated_data["format"]
    content_type, suffix = FORMATS[fmt]
    stream = export_stream(
        project,
        fmt,
        ExportOptions(
            only_labeled=not options.validated_data["all"],
            pseudo_min_confidence=options.validated_data.get("pseudo_min"),
            include_holdout=options.validated_data["include_holdout"],
        ),
    )
    response = StreamingHttpResponse(stream, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-labels.{suffix}"'
    return response


class ExportApi(APIView):
    """The project's labels as a download: CSV, JSONL, an image folder zip or Label
    Studio JSON."""

    @extend_schema(
        tags=[TAG_DATA], parameters=[ExportIn],
        responses={(200, content_type): OpenApiTypes.BINARY for content_type, _ in sorted(set(FORMATS.values()))},
    )
    def get(self, request, slug):
        return export_response(selectors.project_get_managed(request.user, slug), request.query_params)


class TrainingRunsApi(APIView):
    """``GET`` the project's runs; ``POST`` (optional JSON ``config``) queues a run, or
    returns the one already queued or running."""

    @extend_schema(tags=[TAG_MODELS], responses=TrainingRunOut(many=True))
    def get(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        return Response(TrainingRunOut(project.training_runs.select_related("project")[:50], many=True).data)

    @extend_schema(tags=[TAG_MODELS], request=TrainingRunIn, responses={202: TrainingRunOut})
    def post(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        body = TrainingRunIn(data=request.data)
        if not body.is_valid():
            raise ValidationError(body.errors)
        run = training_run_create(project, config=dict(body.validated_data.get("config", {})), user=request.user)
        return Response(TrainingRunOut(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(APIView):
    @extend_schema(tags=[TAG_MODELS], responses=TrainingRunOut)
    def get(self, request, run_id):
        return Response(TrainingRunOut(selectors.training_run_get_managed(request.user, run_id)).data)


class ModelDownloadApi(APIView):
    """The active model: a zip of the state dict and a JSON of classes and config."""

    @extend_schema(tags=[TAG_MODELS], responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        run = project.active_run
        if run is None or not run.artifact:
            raise Http404("this project has no trained model yet")
        return FileResponse(run.artifact.open("rb"), as_attachment=True, filename=f"{project.slug}-model.zip")


class PredictionsApi(APIView):
    """The active model's prediction for every item of the project (pool and held-out),
    as stored when it was trained: images and texts alike."""

    @extend_schema(
        tags=[TAG_MODELS],
        parameters=[OpenApiParameter("split", str, enum=["pool", "holdout"], description="only this split")],
        responses={200: PredictionsOut, 400: OpenApiResponse(description="no trained model yet")},
    )
    def get(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        rows = selectors.active_model_predictions(project, split=request.query_params.get("split"))
        return Response(PredictionsOut({"run": project.active_run_id, "results": rows}).data)


def audit_decision_payload(decision):
    return {
        "id": decision.pk, "item": decision.item_id, "kind": decision.kind, "action": decision.action,
        "given_label": decision.given_label.name, "model_label": decision.model_label.name,
        "score": decision.score, "outcome": decision.outcome,
        "final_label": decision.final_label.name if decision.final_label else None,
        "answers_since": [name for name, _ in getattr(decision, "followed", [])],
        "created_at": decision.created_at, "reversed_at": decision.reversed_at,
    }


class AuditApi(APIView):
    """``GET`` the label audit's counts and recent decisions; ``POST`` queues a round."""

    @extend_schema(tags=["audit"], responses={200: AuditOut})
    def get(self, request, slug):
        from labeling.dashboard.audit_selectors import audit_decisions, audit_summary

        project = selectors.project_get_managed(request.user, slug)
        summary = audit_summary(project)
        last = summary.pop("last_round")
        return Response({
            "counts": summary,
            "last_round": {"status": last.status, "result": last.result, "created_at": last.created_at} if last else None,
            "decisions": [audit_decision_payload(d) for d in audit_decisions(project)],
        })

    @extend_schema(tags=["audit"], request=None, responses={202: OpenApiResponse(description="a round is queued")})
    def post(self, request, slug):
        from labeling.services.audit import audit_queue

        project = selectors.project_get_managed(request.user, slug)
        audit_queue(project)
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)


class AuditReverseApi(APIView):
    """``POST`` reverses one audit decision."""

    @extend_schema(tags=["audit"], request=None, responses={200: AuditDecisionOut})
    def post(self, request, slug, decision_id):
        from labeling.dashboard.audit_selectors import audit_decision_get
        from labeling.services.audit import AuditRefused, decision_reverse

        project = selectors.project_get_managed(request.user, slug)
        try:
            decision = decision_reverse(audit_decision_get(project, decision_id), user=request.user)
        except AuditRefused as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(audit_decision_payload(decision))
