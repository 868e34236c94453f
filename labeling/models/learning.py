"""The machine side: pseudo-labels, training runs, predictions, pipeline runs, the map."""
import uuid

from django.conf import settings
from django.db import models

from labeling.models.core import BackgroundRun, Item, LabelClass, Project, _unit_interval
from labeling.models.fields import ClockDateTimeField


class PseudoLabelSource(models.TextChoices):
    PROPAGATION = "propagation", "Label propagation"
    CLUSTER = "cluster", "Cluster-then-label"
    MODEL = "model", "Model prediction"


class PseudoLabel(models.Model):
    item = models.OneToOneField(Item, on_delete=models.CASCADE, primary_key=True, related_name="pseudo_label")
    label = models.ForeignKey(LabelClass, on_delete=models.RESTRICT, related_name="+")
    confidence = models.FloatField()
    source = models.CharField(max_length=20, choices=PseudoLabelSource.choices)
    accepted = models.BooleanField(default=False, help_text="Meets the project's precision target.")
    updated_at = ClockDateTimeField(auto_now=True)

    class Meta:
        constraints = [_unit_interval("confidence", "pseudolabel_confidence_unit")]


class TrainingRun(BackgroundRun):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    config = models.JSONField(default=dict, blank=True)
    device = models.CharField(max_length=40, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    n_epochs = models.PositiveIntegerField(default=0)
    history = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    artifact = models.FileField(upload_to="runs/", max_length=300, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who queued the run; whose projects it may transfer from (none: the project's owner).",
    )

    class Meta(BackgroundRun.Meta):
        pass


class Prediction(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="predictions")
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="predictions")
    label = models.ForeignKey(LabelClass, on_delete=models.RESTRICT, related_name="+")
    confidence = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "run"], name="prediction_one_per_item_run"),
            _unit_interval("confidence", "prediction_confidence_unit"),
        ]


class PipelineKind(models.TextChoices):
    AGGREGATE = "aggregate", "Truth inference"
    FEATURES = "features", "Features"
    CLUSTER = "cluster", "Clustering and pseudo-labels"
    AUDIT = "audit", "Label-noise audit"


class PipelineRun(BackgroundRun):
    """One run of a background step of the loop, with progress and outcome."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pipeline_runs")
    kind = models.CharField(max_length=12, choices=PipelineKind.choices)
    result = models.JSONField(default=dict, blank=True)
    state = models.JSONField(default=dict, blank=True, help_text="Parameters to warm-start the next run.")

    class Meta(BackgroundRun.Meta):
        constraints = [_unit_interval("progress", "pipelinerun_progress_unit")]
        indexes = [models.Index(fields=["project", "kind", "status"], name="pipelinerun_kind_idx")]


class ItemEmbedding(models.Model):
    """Where the pipeline put an item: its cluster and its point on the 2-D map."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, primary_key=True, related_name="embedding")
    cluster = models.IntegerField()
    x = models.FloatField()
    y = models.FloatField()
    is_representative = models.BooleanField(default=False)
