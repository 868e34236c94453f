"""The owners' API's serializers: what each endpoint takes (``*In``) and gives (``*Out``).

Input serializers validate shapes and bounds; the services check the rest and raise
domain errors that :mod:`labeling.api_errors` turns into responses.
"""
from django.conf import settings
from django.urls import reverse
from django.utils.text import slugify
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from labeling.models import DataKind, Project, Split
from labeling.services.exports import FORMATS
from labeling.services.projects import MAX_LABEL_CHARS, project_create
from labeling.services.training_config import MAX_EPOCHS, MODEL_KINDS


class ProjectStatsOut(serializers.Serializer):
    items_total = serializers.IntegerField()
    items_by_status = serializers.DictField(child=serializers.IntegerField())
    known_total = serializers.IntegerField()
    answers_total = serializers.IntegerField()
    refreshed_at = serializers.DateTimeField(allow_null=True)


class ProjectOut(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    data_kind = serializers.ChoiceField(choices=DataKind.choices)
    labels = serializers.SerializerMethodField()
    answers_per_item = serializers.IntegerField()
    gold_share = serializers.FloatField()
    consensus_threshold = serializers.FloatField()
    max_answers_per_item = serializers.IntegerField()
    pseudo_label_precision = serializers.FloatField()
    open_to_all_workers = serializers.BooleanField()
    show_control_feedback = serializers.BooleanField()
    description = serializers.CharField()
    active_run = serializers.UUIDField(source="active_run_id", allow_null=True, help_text="the active model's run")
    stats = serializers.SerializerMethodField()

    def get_labels(self, project) -> list[str]:
        return [label.name for label in project.label_classes.all()]

    @extend_schema_field(ProjectStatsOut(allow_null=True))
    def get_stats(self, project):
        stats = getattr(project, "stats", None)
        return None if stats is None else ProjectStatsOut(stats).data


class ProjectIn(serializers.Serializer):
    """What a new project needs; the rest of its settings keep their defaults."""

    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100, required=False, help_text="default: the slugified name")
    labels = serializers.ListField(
        child=serializers.CharField(max_length=MAX_LABEL_CHARS), min_length=2, max_length=1000,
        help_text="label names, in order",
    )
    kind = serializers.ChoiceField(choices=DataKind.choices, default=DataKind.IMAGE)
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
        """The project, by :func:`project_create`; its ``ValidationError`` rises as is."""
        fields = dict(validated_data)
        return project_create(data_kind=fields.pop("kind"), **fields)


class ProjectSettingsIn(serializers.Serializer):
    """Settings a ``PATCH`` may change; the slug, kind and labels stay."""

    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    answers_per_item = serializers.IntegerField(required=False, min_value=1, max_value=50)
    max_answers_per_item = serializers.IntegerField(required=False, min_value=1, max_value=100)
    gold_share = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    consensus_threshold = serializers.FloatField(required=False, min_value=0.5, max_value=1.0)
    pseudo_label_precision = serializers.FloatField(required=False, min_value=0.5, max_value=1.0)
    open_to_all_workers = serializers.BooleanField(required=False)
    show_control_feedback = serializers.BooleanField(required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise ValidationError({key: ["not a setting that can be changed"] for key in unknown})
        return super().to_internal_value(data)


class ImportIn(serializers.Serializer):
    file = serializers.FileField(
        help_text="a .zip of images (a folder, or one sub-folder per class) or a .csv/.jsonl of texts"
    )
    split = serializers.ChoiceField(
        choices=Split.choices, default=Split.POOL, help_text="holdout: a labeled test split, never served"
    )


class ImportJobOut(serializers.Serializer):
    id = serializers.UUIDField()
    project = serializers.CharField(source="project.slug")
    source_name = serializers.CharField()
    split = serializers.CharField()
    status = serializers.CharField()
    total = serializers.IntegerField()
    processed = serializers.IntegerField()
    report = serializers.JSONField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.SerializerMethodField()

    def get_url(self, job) -> str:
        return reverse("api-import-detail", args=[job.pk])


class ExportIn(serializers.Serializer):
    format = serializers.ChoiceField(choices=sorted(FORMATS), default="csv")
    all = serializers.BooleanField(default=False, help_text="include items without a label")
    pseudo_min = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    include_holdout = serializers.BooleanField(default=False)


class TrainingConfigIn(serializers.Serializer):
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


class TrainingRunIn(serializers.Serializer):
    config = TrainingConfigIn(required=False, help_text="keys left out keep the project's defaults")


class TrainingRunOut(serializers.Serializer):
    id = serializers.UUIDField()
    project = serializers.CharField(source="project.slug")
    status = serializers.CharField()
    device = serializers.CharField()
    epoch = serializers.IntegerField()
    n_epochs = serializers.IntegerField()
    history = serializers.ListField(child=serializers.DictField())
    metrics = serializers.DictField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class StoredPredictionOut(serializers.Serializer):
    item = serializers.IntegerField(source="item_id")
    source_name = serializers.CharField(source="item.source_name")
    split = serializers.CharField(source="item.split")
    label = serializers.CharField(source="label.name")
    confidence = serializers.FloatField()


class PredictionsOut(serializers.Serializer):
    run = serializers.UUIDField()
    results = StoredPredictionOut(many=True)


class PredictIn(serializers.Serializer):
    file = serializers.FileField(help_text="one image")


class PredictOut(serializers.Serializer):
    label = serializers.CharField()
    probabilities = serializers.DictField(child=serializers.FloatField())
    run = serializers.UUIDField()


class PredictFilesIn(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), required=False, help_text="images (repeated)")
    zip = serializers.FileField(required=False, help_text="or one zip of images")


class PredictItemsIn(serializers.Serializer):
    items = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1)

    def validate_items(self, items):
        if len(items) > settings.CROWDLOOP_PREDICT_MAX_BATCH:
            raise ValidationError(f"{len(items)} items, over the batch cap of {settings.CROWDLOOP_PREDICT_MAX_BATCH}")
        return items


class PredictResultOut(serializers.Serializer):
    name = serializers.CharField(required=False)
    item = serializers.IntegerField(required=False)
    label = serializers.CharField(required=False)
    probabilities = serializers.DictField(child=serializers.FloatField(), required=False)
    error = serializers.CharField(required=False)


class PredictBatchOut(serializers.Serializer):
    run = serializers.UUIDField()
    classes = serializers.ListField(child=serializers.CharField())
    results = PredictResultOut(many=True)


class AuditDecisionOut(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.IntegerField()
    kind = serializers.CharField(help_text="consensus, gold or pseudo")
    action = serializers.CharField()
    given_label = serializers.CharField()
    model_label = serializers.CharField(help_text="shown to the owner only, never to workers")
    score = serializers.FloatField()
    outcome = serializers.CharField(allow_null=True)
    final_label = serializers.CharField(allow_null=True)
    answers_since = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    reversed_at = serializers.DateTimeField(allow_null=True)


class AuditRoundOut(serializers.Serializer):
    status = serializers.CharField()
    result = serializers.JSONField(allow_null=True)
    created_at = serializers.DateTimeField()


class AuditOut(serializers.Serializer):
    counts = serializers.DictField(child=serializers.IntegerField())
    last_round = AuditRoundOut(allow_null=True)
    decisions = AuditDecisionOut(many=True)
