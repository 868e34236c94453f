"""The crowd: workers, their answers and consensus, widget sites and challenges, leases,
quality rules and decisions."""
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Exists, F, OuterRef, Q

from labeling.models.core import Item, LabelClass, Project, _unit_interval
from labeling.models.fields import ClockDateTimeField


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
    created_at = ClockDateTimeField(auto_now_add=True)
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


class AnswerQuerySet(models.QuerySet):
    def without_banned_workers(self):
        """Answers whose worker is banned neither platform-wide nor in the answer's own
        project: the ones that count."""
        banned_here = WorkerProjectStatus.objects.filter(
            worker=OuterRef("worker_id"), project=OuterRef("item__project_id"), status=WorkerStatus.BANNED
        )
        return self.exclude(worker__status=WorkerStatus.BANNED).exclude(Exists(banned_here))


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
    evidence_weight = models.FloatField(
        default=1.0,
        help_text="How far truth inference trusts this answer over a blind guess, in [0, 1]: for a widget answer, "
        "the chance that its challenge was passed by someone who looked rather than by a random guesser.",
    )
    created_at = ClockDateTimeField(auto_now_add=True)

    objects = AnswerQuerySet.as_manager()

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
    updated_at = ClockDateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "consensus results"
        constraints = [_unit_interval("confidence", "consensus_confidence_unit")]


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
    difficulty_auto = models.BooleanField(
        default=True,
        help_text="Choose the control items and the misses forgiven per challenge kind, so that blind guessing "
        "passes at most 5 % and people right 90 % of the time pass at least 80 % (then the two fields below "
        "are not used).",
    )
    control_items = models.PositiveSmallIntegerField(default=2, help_text="Control items per challenge.")
    pass_share = models.FloatField(default=1.0, help_text="Share of control items that must be right.")
    min_solve_ms = models.PositiveIntegerField(default=1500, help_text="Faster solves fail.")
    challenges_issued = models.PositiveIntegerField(default=0)
    challenges_passed = models.PositiveIntegerField(default=0)
    created_at = ClockDateTimeField(auto_now_add=True)
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


class AccessibilityPass(models.Model):
    """A visitor who cannot see the images, verified once by e-mail: the widget lets them
    through without solving, a limited number of times a day, and their pass carries no
    label evidence. Only a keyed hash of the address is kept."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email_digest = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "accessibility passes"
        indexes = [models.Index(fields=["email_digest", "created_at"], name="a11ypass_email_idx")]


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
    accessibility_pass = models.ForeignKey(
        AccessibilityPass, null=True, blank=True, on_delete=models.SET_NULL, related_name="challenges",
        help_text="Set when the visitor passed with an accessibility pass instead of answering.",
    )

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
    expected_label = models.ForeignKey(
        LabelClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="For control tiles: their known label when the challenge was issued (what grades the answer).",
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
    created_at = ClockDateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "worker"], name="lease_one_per_item_worker")]
        indexes = [models.Index(fields=["item", "expires_at"], name="lease_item_expiry_idx")]


class Skip(models.Model):
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="skips")
    created_at = ClockDateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "worker"], name="skip_one_per_item_worker")]


class ProjectMembership(models.Model):
    """A registered worker admitted to a project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="memberships")
    created_at = ClockDateTimeField(auto_now_add=True)

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


class WorkerProjectStatus(models.Model):
    """A worker's standing in one project, set by its owner or its quality rules.

    No row means active there. The platform-wide ``Worker.status`` (staff only) holds
    on top of it: the stricter of the two applies.
    """

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="project_statuses")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="worker_statuses")
    status = models.CharField(max_length=10, choices=WorkerStatus.choices, default=WorkerStatus.ACTIVE)
    reason = models.TextField(blank=True)
    decided_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["worker", "project"], name="workerprojectstatus_unique")]
        indexes = [models.Index(fields=["project", "status"], name="workerprojectstatus_status_idx")]


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
    created_at = ClockDateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class WorkerSkill(models.Model):
    """A worker's reliability in one project, estimated by truth inference."""

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="skills")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="worker_skills")
    accuracy = models.FloatField()
    confusion = models.JSONField(default=list, blank=True)
    n_answers = models.PositiveIntegerField(default=0)
    updated_at = ClockDateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["worker", "project"], name="workerskill_unique"),
            _unit_interval("accuracy", "workerskill_accuracy_unit"),
        ]


class ControlExposure(models.Model):
    """A control item shown to a worker or visitor, once at most: the exposures of an
    item in a window are what its budget counts. ``explained_at``: the worker was told
    the item's label, so it is no longer control for them."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="control_exposures")
    served_at = models.DateTimeField()
    explained_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["worker", "item"], name="exposure_one_per_worker_item")]
        indexes = [
            models.Index(fields=["item", "served_at"], name="exposure_item_served_idx"),
            models.Index(fields=["worker", "explained_at"], name="exposure_worker_explained_idx"),
        ]


class ControlPoolEntry(models.Model):
    """An item that may serve as control (gold, or certain consensus), with its exposure
    budget: serves in the current window and in all. ``shuffle_key`` is random and
    drawn anew at each serve, so that a read from a random key is a random sample."""

    item = models.OneToOneField(Item, on_delete=models.CASCADE, primary_key=True, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    label = models.ForeignKey(LabelClass, on_delete=models.CASCADE, related_name="+")
    shuffle_key = models.FloatField()
    served_total = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField(null=True, blank=True)
    window_served = models.PositiveIntegerField(default=0)
    retired_at = models.DateTimeField(
        null=True, blank=True, help_text="Shown as control with a prompt naming a label (grid, verify): never again."
    )
    joined_at = ClockDateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "shuffle_key"], name="controlpool_shuffle_idx")]
