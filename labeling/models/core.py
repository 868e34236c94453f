"""Projects, their label classes and items, known labels and import jobs."""
import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from labeling.models.fields import ClockDateTimeField


def _unit_interval(field, name):
    return models.CheckConstraint(
        condition=Q(**{f"{field}__gte": 0.0}) & Q(**{f"{field}__lte": 1.0}), name=name
    )


class DataKind(models.TextChoices):
    IMAGE = "image", "Images"
    TEXT = "text", "Texts"


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    data_kind = models.CharField(max_length=10, choices=DataKind.choices, default=DataKind.IMAGE)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="projects"
    )
    answers_per_item = models.PositiveSmallIntegerField(
        default=2, help_text="Minimum answers before consensus may settle an item."
    )
    max_answers_per_item = models.PositiveSmallIntegerField(
        default=6, help_text="Cap on answers for hard items (dynamic overlap)."
    )
    gold_share = models.FloatField(default=0.1, help_text="Share of control items in each challenge or batch.")
    consensus_threshold = models.FloatField(default=0.9, help_text="Posterior needed to call an item labeled.")
    pseudo_label_precision = models.FloatField(
        default=0.97, help_text="Precision accepted pseudo-labels must reach."
    )
    image_size = models.PositiveSmallIntegerField(default=32, help_text="Side in pixels of the model input.")
    open_to_all_workers = models.BooleanField(
        default=False, help_text="Any registered worker may label; otherwise only admitted ones."
    )
    show_control_feedback = models.BooleanField(
        default=True,
        help_text="Tell trusted workers the right answer after a missed control item (a few a day).",
    )
    selection_strategy = models.CharField(max_length=40, default="priority")
    aggregation_method = models.CharField(max_length=30, default="auto")
    active_run = models.ForeignKey(
        "TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = ClockDateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            _unit_interval("gold_share", "project_gold_share_unit"),
            _unit_interval("consensus_threshold", "project_consensus_threshold_unit"),
            _unit_interval("pseudo_label_precision", "project_pseudo_label_precision_unit"),
            models.CheckConstraint(
                condition=Q(max_answers_per_item__gte=F("answers_per_item")), name="project_answer_cap_ge_wanted"
            ),
            models.CheckConstraint(condition=Q(answers_per_item__gte=1), name="project_answers_per_item_positive"),
        ]

    def __str__(self):
        return self.name


class LabelClass(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_classes")
    name = models.CharField(max_length=100)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["project_id", "position"]
        verbose_name_plural = "label classes"
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="labelclass_unique_name"),
            models.UniqueConstraint(fields=["project", "position"], name="labelclass_unique_position"),
        ]

    def __str__(self):
        return self.name


class ItemStatus(models.TextChoices):
    UNLABELED = "unlabeled", "Unlabeled"
    LABELED = "labeled", "Labeled"
    PSEUDO_LABELED = "pseudo_labeled", "Pseudo-labeled"
    REVIEW = "review", "Needs review"


class Split(models.TextChoices):
    POOL = "pool", "Pool"
    HOLDOUT = "holdout", "Held-out test"


def item_upload_path(instance, filename):
    return f"projects/{instance.project_id}/items/{instance.checksum[:2]}/{filename}"


class Item(models.Model):
    """One thing to label: an image (original, normalised, thumbnail) or a short text.

    Files are named by content checksum, so a file name never reveals a label.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    text = models.TextField(blank=True)
    original = models.FileField(upload_to=item_upload_path, max_length=300, blank=True)
    image = models.FileField(upload_to=item_upload_path, max_length=300, blank=True)
    thumbnail = models.FileField(upload_to=item_upload_path, max_length=300, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the original content.")
    source_name = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=20, choices=ItemStatus.choices, default=ItemStatus.UNLABELED)
    split = models.CharField(max_length=10, choices=Split.choices, default=Split.POOL)
    answer_count = models.PositiveIntegerField(
        default=0, help_text="Counted answers toward the answer cap (denormalised; control answers are not counted)."
    )
    priority = models.FloatField(default=0.0, help_text="Value of a human answer here (selection).")
    priority_reason = models.CharField(max_length=120, blank=True)
    consensus_stale_since = models.DateTimeField(
        null=True, blank=True, help_text="Set by the answer path, cleared once the item's consensus includes them."
    )
    created_at = ClockDateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "checksum"], name="item_unique_checksum"),
        ]
        indexes = [
            # Serving reads walk these in order (keyset, no sort): they end in ``id``.
            models.Index(fields=["project", "status", "split", "answer_count", "id"], name="item_serving_idx"),
            models.Index(
                fields=["project", "status", "split", "-priority", "answer_count", "id"], name="item_priority_idx"
            ),
            models.Index(
                fields=["project", "consensus_stale_since"], name="item_stale_idx",
                condition=models.Q(consensus_stale_since__isnull=False),
            ),
        ]

    def __str__(self):
        return f"{self.project_id}/{self.pk}"


class KnownLabelSource(models.TextChoices):
    GOLD = "gold", "Gold (imported control answer)"
    SETTLED = "settled", "Settled by an admin"


class KnownLabel(models.Model):
    """A label known for sure: gold control answers and items settled by hand.

    Never sent to a client.
    """

    item = models.OneToOneField(Item, on_delete=models.CASCADE, primary_key=True, related_name="known_label")
    label = models.ForeignKey(LabelClass, on_delete=models.RESTRICT, related_name="+")
    source = models.CharField(max_length=10, choices=KnownLabelSource.choices, default=KnownLabelSource.GOLD)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = ClockDateTimeField(auto_now_add=True)
    suspended_at = models.DateTimeField(
        null=True, blank=True, help_text="Set while the label audit doubts it: not used as control until the owner checks it."
    )

    def __str__(self):
        return f"{self.item_id}: {self.label_id} ({self.source})"


class EvaluationTruth(models.Model):
    """The true label of a demo item, for measuring only: never gold, never shown."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, primary_key=True, related_name="evaluation_truth")
    label = models.ForeignKey(LabelClass, on_delete=models.RESTRICT, related_name="+")


class ProjectStats(models.Model):
    """Precomputed counters so that pages never count a whole table per request."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True, related_name="stats")
    items_by_status = models.JSONField(default=dict)
    items_total = models.PositiveIntegerField(default=0)
    known_total = models.PositiveIntegerField(default=0)
    answers_total = models.PositiveIntegerField(default=0)
    refreshed_at = ClockDateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "project stats"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class BackgroundRun(models.Model):
    """What every background job shares (imports, pipeline rounds, training runs): a
    status, progress, a heartbeat that a live worker keeps fresh, the worker holding it,
    how many times it was claimed, and an outcome. ``labeling.services.runs`` writes
    these fields; a run whose heartbeat is older than the timeout is taken over."""

    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker claimed the run.")
    worker = models.CharField(max_length=200, blank=True, help_text="The worker holding (or last holding) the run.")
    created_at = ClockDateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


def import_upload_path(instance, filename):
    return f"imports/{instance.project_id}/{instance.id}/{filename}"


class ImportJob(BackgroundRun):
    """An upload being imported by a worker; the counts show progress."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source_name = models.CharField(max_length=300)
    split = models.CharField(
        max_length=10, choices=Split.choices, default=Split.POOL,
        help_text="Pool: labels become gold. Held-out: labels measure models; the items are never served.",
    )
    upload = models.FileField(upload_to=import_upload_path, max_length=400)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    cursor = models.PositiveIntegerField(
        default=0, help_text="Entries of the upload already imported, committed with each batch: where a resume starts."
    )
    report = models.JSONField(default=dict, blank=True, help_text="The report so far, committed with each batch.")

    class Meta(BackgroundRun.Meta):
        pass
