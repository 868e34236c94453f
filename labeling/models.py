"""Crowdloop's data model: fields, choices and database constraints, no business logic."""
import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q


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
        default=True, help_text="Tell workers the right answer after a missed control item."
    )
    selection_strategy = models.CharField(max_length=40, default="priority")
    aggregation_method = models.CharField(max_length=30, default="auto")
    active_run = models.ForeignKey(
        "TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

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
    answer_count = models.PositiveIntegerField(default=0, help_text="Counted answers (denormalised).")
    priority = models.FloatField(default=0.0, help_text="Value of a human answer here (selection).")
    priority_reason = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "checksum"], name="item_unique_checksum"),
        ]
        indexes = [
            models.Index(fields=["project", "status", "answer_count"], name="item_serving_idx"),
            models.Index(fields=["project", "status", "-priority", "answer_count"], name="item_priority_idx"),
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
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.item_id}: {self.label_id} ({self.source})"


class EvaluationTruth(models.Model):
    """The true label of a demo item, for measuring only: never gold, never shown."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, primary_key=True, related_name="evaluation_truth")
    label = models.ForeignKey(LabelClass, on_delete=models.RESTRICT, related_name="+")


class WorkerKind(models.TextChoices):
    REGISTERED = "registered", "Registered crowd worker"
    VISITOR = "visitor", "Anonymous widget visitor"


class WorkerStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    BANNED = "banned", "Banned"


class Worker(models.Model):
    """A crowd worker: a registered account or an anonymous widget visitor."""

    kind = models.CharField(max_length=12, choices=WorkerKind.choices, default=WorkerKind.REGISTERED)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="worker"
    )
    visitor_key = models.CharField(
        max_length=64, null=True, blank=True, unique=True, help_text="Keyed hash identifying a widget visitor."
    )
    status = models.CharField(max_length=10, choices=WorkerStatus.choices, default=WorkerStatus.ACTIVE)
    answer_total = models.PositiveIntegerField(default=0)
    control_total = models.PositiveIntegerField(default=0)
    control_correct = models.PositiveIntegerField(default=0)
    skill = models.FloatField(null=True, blank=True, help_text="Accuracy estimated by truth inference.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(control_correct__lte=F("control_total")), name="worker_control_le"),
            models.CheckConstraint(
                condition=Q(skill__isnull=True) | (Q(skill__gte=0.0) & Q(skill__lte=1.0)), name="worker_skill_unit"
            ),
        ]

    def __str__(self):
        if self.user_id:
            return f"worker {self.pk} ({self.user})"
        return f"visitor {self.pk}"


class AnswerSource(models.TextChoices):
    WIDGET = "widget", "Widget challenge"
    WORKER = "worker", "Worker labeling UI"
    IMPORT = "import", "Imported"


class Answer(models.Model):
    """One worker's label for one item, given in one challenge or task."""

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="answers")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="answers")
    label = models.ForeignKey(LabelClass, on_delete=models.RESTRICT, related_name="+")
    source = models.CharField(max_length=10, choices=AnswerSource.choices)
    task_ref = models.CharField(max_length=64, help_text="The challenge or task this answer came from.")
    time_taken_ms = models.PositiveIntegerField(null=True, blank=True)
    is_control = models.BooleanField(default=False)
    verdict = models.BooleanField(
        null=True, blank=True,
        help_text="Empty: the worker chose this label. Yes/no: the worker confirmed or rejected it (verify, grid).",
    )
    correct = models.BooleanField(null=True, blank=True, help_text="For control answers: right or wrong.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["worker", "item", "task_ref"], name="answer_one_per_worker_item_task"),
        ]
        indexes = [models.Index(fields=["item", "created_at"], name="answer_item_idx")]


class Consensus(models.Model):
    """The aggregated label of an item and how sure we are."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, primary_key=True, related_name="consensus")
    label = models.ForeignKey(LabelClass, null=True, blank=True, on_delete=models.RESTRICT, related_name="+")
    confidence = models.FloatField(default=0.0)
    posterior = models.JSONField(default=list, blank=True)
    n_answers = models.PositiveIntegerField(default=0)
    method = models.CharField(max_length=30)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "consensus results"
        constraints = [_unit_interval("confidence", "consensus_confidence_unit")]


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
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [_unit_interval("confidence", "pseudolabel_confidence_unit")]


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class TrainingRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    config = models.JSONField(default=dict, blank=True)
    device = models.CharField(max_length=40, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    n_epochs = models.PositiveIntegerField(default=0)
    history = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    artifact = models.FileField(upload_to="runs/", max_length=300, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


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


class ProjectStats(models.Model):
    """Precomputed counters so that pages never count a whole table per request."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True, related_name="stats")
    items_by_status = models.JSONField(default=dict)
    items_total = models.PositiveIntegerField(default=0)
    known_total = models.PositiveIntegerField(default=0)
    answers_total = models.PositiveIntegerField(default=0)
    refreshed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "project stats"


def import_upload_path(instance, filename):
    return f"imports/{instance.project_id}/{instance.id}/{filename}"


class ImportJob(models.Model):
    """An upload being imported by a worker; the counts show progress."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source_name = models.CharField(max_length=300)
    upload = models.FileField(upload_to=import_upload_path, max_length=400)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


# --- Crowd front doors: sites, challenges, leases ------------------------------------------


class SiteMode(models.TextChoices):
    NORMAL = "normal", "Normal"
    TEST_PASS = "test_pass", "Test key: always passes"
    TEST_FAIL = "test_fail", "Test key: always fails"


class Site(models.Model):
    """A website that embeds the widget. The secret is stored hashed and shown once."""

    name = models.CharField(max_length=200)
    projects = models.ManyToManyField(Project, related_name="sites", blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="sites"
    )
    sitekey = models.CharField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=128)
    allowed_hostnames = models.JSONField(default=list, blank=True)
    mode = models.CharField(max_length=10, choices=SiteMode.choices, default=SiteMode.NORMAL)
    control_items = models.PositiveSmallIntegerField(default=2, help_text="Control items per challenge.")
    pass_share = models.FloatField(default=1.0, help_text="Share of control items that must be right.")
    min_solve_ms = models.PositiveIntegerField(default=1500, help_text="Faster solves fail.")
    challenges_issued = models.PositiveIntegerField(default=0)
    challenges_passed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [_unit_interval("pass_share", "site_pass_share_unit")]

    def __str__(self):
        return self.name


class ChallengeKind(models.TextChoices):
    GRID = "grid", "Select every matching item"
    CHOICE = "choice", "Pick the label"
    VERIFY = "verify", "Yes or no"


class ChallengeStatus(models.TextChoices):
    ISSUED = "issued", "Issued"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"


class Challenge(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.CASCADE, related_name="challenges")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="challenges")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="challenges")
    kind = models.CharField(max_length=10, choices=ChallengeKind.choices)
    target_label = models.ForeignKey(LabelClass, null=True, blank=True, on_delete=models.RESTRICT, related_name="+")
    hostname = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=10, choices=ChallengeStatus.choices, default=ChallengeStatus.ISSUED)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    token_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["site", "issued_at"], name="challenge_site_idx")]


class ChallengeItem(models.Model):
    """One tile of a challenge. ``public_id`` is all a client ever sees of the item."""

    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="tiles")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    public_id = models.CharField(max_length=32)
    position = models.PositiveSmallIntegerField()
    is_control = models.BooleanField(default=False)
    proposed_label = models.ForeignKey(
        LabelClass, null=True, blank=True, on_delete=models.RESTRICT, related_name="+",
        help_text="For verify tiles: the label the visitor confirms or rejects.",
    )
    response = models.JSONField(null=True, blank=True, help_text="What the visitor answered (kept as evidence).")

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["challenge", "public_id"], name="challengeitem_unique_public_id"),
        ]


class Lease(models.Model):
    """An item handed to a worker until ``expires_at``; expired leases return the item."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="leases")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="leases")
    public_id = models.CharField(max_length=32, unique=True)
    is_control = models.BooleanField(default=False)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "worker"], name="lease_one_per_item_worker")]
        indexes = [models.Index(fields=["item", "expires_at"], name="lease_item_expiry_idx")]


class Skip(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="skips")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "worker"], name="skip_one_per_item_worker")]


class ProjectMembership(models.Model):
    """A registered worker admitted to a project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "worker"], name="membership_unique")]


class QualityRules(models.Model):
    """Per-project rules that pause or ban workers automatically (Toloka-style)."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True, related_name="rules")
    control_window = models.PositiveSmallIntegerField(
        default=20, help_text="Accuracy is measured on the last N control answers (and speed on the last N answers)."
    )
    min_control_answers = models.PositiveSmallIntegerField(
        default=10, help_text="Judge accuracy only once a worker has this many control answers."
    )
    min_control_accuracy = models.FloatField(default=0.5, help_text="Act when accuracy on the window falls below.")
    min_answer_ms = models.PositiveIntegerField(default=800, help_text="Answers faster than this count as fast.")
    max_fast_share = models.FloatField(default=0.5, help_text="Share of fast answers (last window) tolerated.")
    max_skips_in_row = models.PositiveSmallIntegerField(default=20)
    action = models.CharField(
        max_length=10, choices=[("paused", "Pause"), ("banned", "Ban")], default="paused"
    )

    class Meta:
        verbose_name_plural = "quality rules"
        constraints = [
            _unit_interval("min_control_accuracy", "rules_min_accuracy_unit"),
            _unit_interval("max_fast_share", "rules_fast_share_unit"),
            models.CheckConstraint(condition=Q(control_window__gte=1), name="rules_control_window_positive"),
            models.CheckConstraint(
                condition=Q(min_control_answers__lte=F("control_window")), name="rules_min_answers_within_window"
            ),
        ]


class WorkerDecision(models.Model):
    """A status change of a worker, automatic or by an admin, with its reason."""

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="decisions")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    previous_status = models.CharField(max_length=10, choices=WorkerStatus.choices)
    new_status = models.CharField(max_length=10, choices=WorkerStatus.choices)
    reason = models.TextField()
    automatic = models.BooleanField(default=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reversed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class WorkerSkill(models.Model):
    """A worker's reliability in one project, estimated by truth inference."""

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="skills")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="worker_skills")
    accuracy = models.FloatField()
    confusion = models.JSONField(default=list, blank=True)
    n_answers = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["worker", "project"], name="workerskill_unique"),
            _unit_interval("accuracy", "workerskill_accuracy_unit"),
        ]


# --- Pipeline state ---------------------------------------------------------------------------


class PipelineKind(models.TextChoices):
    AGGREGATE = "aggregate", "Truth inference"
    FEATURES = "features", "Features"
    CLUSTER = "cluster", "Clustering and pseudo-labels"


class PipelineRun(models.Model):
    """One run of a background step of the loop, with progress and outcome."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pipeline_runs")
    kind = models.CharField(max_length=12, choices=PipelineKind.choices)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=300, blank=True)
    result = models.JSONField(default=dict, blank=True)
    state = models.JSONField(default=dict, blank=True, help_text="Parameters to warm-start the next run.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [_unit_interval("progress", "pipelinerun_progress_unit")]
        indexes = [models.Index(fields=["project", "kind", "status"], name="pipelinerun_kind_idx")]


class ItemEmbedding(models.Model):
    """Where the pipeline put an item: its cluster and its point on the 2-D map."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, primary_key=True, related_name="embedding")
    cluster = models.IntegerField()
    x = models.FloatField()
    y = models.FloatField()
    is_representative = models.BooleanField(default=False)
