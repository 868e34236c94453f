"""The label-noise audit: each suspect label the model sent back to people, and what
became of it."""
from django.conf import settings
from django.db import models
from django.db.models import Q

from labeling.models.core import Item, LabelClass, Project, _unit_interval
from labeling.models.fields import ClockDateTimeField


class AuditKind(models.TextChoices):
    CONSENSUS = "consensus", "Crowd consensus"
    GOLD = "gold", "Gold"
    PSEUDO = "pseudo", "Accepted pseudo-label"


class AuditAction(models.TextChoices):
    REOPENED = "reopened", "Back to the crowd for more answers"
    SUSPENDED = "suspended", "Control use stopped; the owner checks it"
    DEMOTED = "demoted", "Pseudo-label demoted; asked to the crowd"


class AuditOutcome(models.TextChoices):
    PENDING = "pending", "Waiting for answers or the owner"
    CONFIRMED = "confirmed", "Label confirmed"
    CHANGED = "changed", "Label changed"
    REVIEW = "review", "Still uncertain at the answer cap"
    REVERSED = "reversed", "Reversed by the owner"


class AuditDecision(models.Model):
    """One suspect label and what the audit did with it. ``score`` is the label's
    quality (normalised margin of the out-of-fold probabilities; low is suspect). The
    model's label is for the owner only, never shown to workers."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="audit_decisions")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="audit_decisions")
    kind = models.CharField(max_length=10, choices=AuditKind.choices)
    action = models.CharField(max_length=10, choices=AuditAction.choices)
    given_label = models.ForeignKey(LabelClass, on_delete=models.CASCADE, related_name="+")
    model_label = models.ForeignKey(LabelClass, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()
    answers_before = models.PositiveIntegerField(default=0, help_text="Counted answers when the audit acted.")
    outcome = models.CharField(max_length=10, choices=AuditOutcome.choices, default=AuditOutcome.PENDING)
    final_label = models.ForeignKey(LabelClass, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = ClockDateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    reversed_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "score"]
        constraints = [
            _unit_interval("score", "auditdecision_score_unit"),
            models.UniqueConstraint(
                fields=["item"], condition=Q(outcome="pending"), name="auditdecision_one_pending_per_item"
            ),
        ]
        indexes = [models.Index(fields=["project", "outcome"], name="auditdecision_outcome_idx")]

    def __str__(self):
        return f"{self.item_id}: {self.kind} {self.action} ({self.outcome})"
