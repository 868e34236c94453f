"""HTTP API (``/api/v1/``): validates input, calls one service, renders JSON."""
from django.conf import settings
from django.core.exceptions import ValidationError as ModelValidationError
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.urls import reverse
from django.utils.text import slugify
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, PermissionDenied, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling import selectors
from labeling.models import DataKind, Project
from labeling.services.exports import FORMATS, ExportOptions, export_stream
from labeling.services.jobs import UploadRejected, import_job_create
from labeling.services.projects import MAX_LABEL_CHARS, project_create
from labeling.services.training import TrainingConfigInvalid, TrainingRefused, training_run_create
from labeling.services.training_config import MAX_EPOCHS, MODEL_KINDS


class PayloadTooLarge(APIException):
    status_code = 413
    default_code = "payload_too_large"


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
        "split": job.split,
        "status": job.status,
        "total": job.total,
        "processed": job.processed,
        "report": job.report,
        "error": job.error,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "url": reverse("api-import-detail", args=[job.pk]),
    }


class ProjectCreateSerializer(serializers.Serializer):
    """What a new project needs; the rest of its settings keep their defaults."""

    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100, required=False, help_text="default: the slugified name")
    labels = serializers.ListField(
        child=serializers.CharField(max_length=MAX_LABEL_CHARS), min_length=2, max_length=1000,
        help_text="label names, in order",
    )
    kind = serializers.ChoiceField(choices=DataKind.values, default=DataKind.IMAGE)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    open_to_all_workers = serializers.BooleanField(default=False)
    answers_per_item = serializers.IntegerField(required=False, min_value=1, max_value=50)
    max_answers_per_item = serializers.IntegerField(required=False, min_value=1, max_value=100)
    gold_share = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    consensus_threshold = serializers.FloatField(required=False, min_value=0.5, max_value=1.0)
    image_size = serializers.IntegerField(required=False, min_value=4, max_value=512)

    def validate_labels(self, labels):
        if len(set(labels)) != len(labels):
            raise ValidationError("label names must be unique")
        return labels

    def validate(self, data):
        slug = data.get("slug") or slugify(data["name"])
        if not slug:
            raise ValidationError({"slug": "the name gives no slug; give one (letters, digits, - and _)"})
        if Project.objects.filter(slug=slug).exists():
            raise ValidationError({"slug": f"a project with slug {slug!r} already exists"})
        field = Project._meta.get_field
        wanted = data.get("answers_per_item", field("answers_per_item").default)
        if data.get("max_answers_per_item", field("max_answers_per_item").default) < wanted:
            raise ValidationError({"max_answers_per_item": f"must be at least answers_per_item ({wanted})"})
        return {**data, "slug": slug}

    def create(self, validated_data):
        fields = dict(validated_data)
        try:
            return project_create(data_kind=fields.pop("kind"), **fields)
        except ModelValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}) from exc


class ProjectListApi(APIView):
    """``GET`` the projects you manage; ``POST`` creates one you own (201)."""

    def get(self, request):
        projects = selectors.projects_managed_by(request.user).select_related("stats").prefetch_related("label_classes")
        return Response(ProjectSerializer(projects, many=True).data)

    def post(self, request):
        if not selectors.user_may_create_projects(request.user):
            raise PermissionDenied(
                "you may not create projects (a token scoped to projects never may; ask staff for the permission)"
            )
        serializer = ProjectCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = serializer.save(owner=request.user)
        response = Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)
        response["Location"] = reverse("api-project-detail", args=[project.slug])
        return response


class ProjectDetailApi(APIView):
    def get(self, request, slug):
        return Response(ProjectSerializer(selectors.project_get_managed(request.user, slug)).data)


class ImportCreateApi(APIView):
    """``POST`` a ``file`` (multipart): a zip of images or a CSV/JSONL of texts, and
    optionally ``split=holdout`` for a labeled held-out split (never served; models are
    measured on it).

    Returns 202 at once; the import runs on a worker and its progress is at ``url``.
    """

    parser_classes = [MultiPartParser]

    def post(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        upload = uploaded_file(request, settings.CROWDLOOP_MAX_UPLOAD_BYTES, "attach the file to import as 'file'")
        try:
            job = import_job_create(
                project=project, upload=upload, user=request.user, split=request.data.get("split") or "pool"
            )
        except UploadRejected as exc:
            field = "split" if str(exc).startswith("split") else "file"
            raise ValidationError({field: str(exc)}) from exc
        return Response(import_job_payload(job), status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(APIView):
    def get(self, request, job_id):
        return Response(import_job_payload(selectors.import_job_get_managed(request.user, job_id)))


class ExportOptionsSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=sorted(FORMATS), default="csv")
    all = serializers.BooleanField(default=False, help_text="include items without a label")
    pseudo_min = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    include_holdout = serializers.BooleanField(default=False)


def export_response(project, params):
    """A streaming download of the project's labels (shared by the API and the page)."""
    options = ExportOptionsSerializer(data=params)
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
    """``GET ?format=csv|jsonl|imagefolder|labelstudio&all=&pseudo_min=&include_holdout=``"""

    def get(self, request, slug):
        return export_response(selectors.project_get_managed(request.user, slug), request.query_params)


def training_run_payload(run):
    return {
        "id": str(run.pk),
        "project": run.project.slug,
        "status": run.status,
        "device": run.device,
        "epoch": run.epoch,
        "n_epochs": run.n_epochs,
        "history": run.history,
        "metrics": run.metrics,
        "error": run.error,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }


class TrainingConfigSerializer(serializers.Serializer):
    """A training config at the API edge: each key typed and bounded, unknown keys
    refused. The service checks the rest (rules across keys, whose run may be a
    ``transfer_from``)."""

    model = serializers.ChoiceField(choices=MODEL_KINDS, required=False)
    arch = serializers.CharField(max_length=20, required=False)
    epochs = serializers.IntegerField(min_value=1, max_value=MAX_EPOCHS, required=False)
    patience = serializers.IntegerField(min_value=1, max_value=MAX_EPOCHS, required=False)
    start_from_epoch = serializers.IntegerField(min_value=0, max_value=MAX_EPOCHS, required=False, allow_null=True)
    batch_size = serializers.IntegerField(min_value=1, max_value=65536, required=False)
    eval_batch_size = serializers.IntegerField(min_value=1, max_value=65536, required=False)
    max_device_bytes = serializers.IntegerField(min_value=1, required=False)
    width = serializers.IntegerField(min_value=1, max_value=1024, required=False)
    dropout = serializers.FloatField(min_value=0.0, max_value=0.99, required=False)
    lr = serializers.FloatField(min_value=1e-9, max_value=10.0, required=False)
    weight_decay = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    min_delta = serializers.FloatField(min_value=0.0, required=False)
    label_smoothing = serializers.FloatField(min_value=0.0, max_value=0.99, required=False)
    lr_schedule = serializers.CharField(max_length=20, required=False)
    monitor = serializers.CharField(max_length=20, required=False)
    class_balance = serializers.CharField(max_length=20, required=False)
    augment = serializers.DictField(required=False, allow_null=True)
    freeze_backbone = serializers.BooleanField(required=False)
    amp = serializers.BooleanField(required=False)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    use_pseudo_labels = serializers.BooleanField(required=False)
    pseudo_min_confidence = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    val_share = serializers.FloatField(min_value=0.0, max_value=0.99, required=False)
    transfer_from = serializers.UUIDField(required=False, allow_null=True)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise ValidationError({key: ["unknown config key"] for key in unknown})
        values = super().to_internal_value(data)
        if values.get("transfer_from") is not None:
            values["transfer_from"] = str(values["transfer_from"])
        return values


class TrainingRunsApi(APIView):
    """``GET`` the project's runs; ``POST`` (optional JSON ``config``) queues a run."""

    def get(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        return Response([training_run_payload(run) for run in project.training_runs.all()[:50]])

    def post(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        config = TrainingConfigSerializer(data=request.data.get("config", {}))
        if not config.is_valid():
            raise ValidationError({"config": config.errors})
        try:
            run = training_run_create(project, config=dict(config.validated_data), user=request.user)
        except TrainingConfigInvalid as exc:
            raise ValidationError({"config": {key: [message] for key, message in exc.errors.items()}}) from exc
        except TrainingRefused as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(training_run_payload(run), status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(APIView):
    def get(self, request, run_id):
        run = selectors.training_run_get_managed(request.user, run_id)
        return Response(training_run_payload(run))


class ModelDownloadApi(APIView):
    """The active model: a zip of the state dict and a JSON of classes and config."""

    def get(self, request, slug):
        project = selectors.project_get_managed(request.user, slug)
        run = project.active_run
        if run is None or not run.artifact:
            raise Http404("this project has no trained model yet")
        return FileResponse(run.artifact.open("rb"), as_attachment=True, filename=f"{project.slug}-model.zip")



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

    def post(self, request, slug):
        from labeling.services.audit import audit_queue

        project = selectors.project_get_managed(request.user, slug)
        audit_queue(project)
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)


class AuditReverseApi(APIView):
    """``POST`` reverses one audit decision."""

    def post(self, request, slug, decision_id):
        from labeling.dashboard.audit_selectors import audit_decision_get
        from labeling.services.audit import AuditRefused, decision_reverse

        project = selectors.project_get_managed(request.user, slug)
        try:
            decision = decision_reverse(audit_decision_get(project, decision_id), user=request.user)
        except AuditRefused as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(audit_decision_payload(decision))
