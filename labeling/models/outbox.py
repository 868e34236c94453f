"""The outbox: Celery messages recorded in the transaction that makes their job."""
from django.db import models

from labeling.models.fields import ClockDateTimeField


class OutboxMessage(models.Model):
    """One Celery task to send. Written in the same transaction as the row it acts on
    (an import job, a training run), sent after the commit, and marked sent only once
    the broker took it; one the broker refused stays here until a flush sends it.

    ``available_at``: when a flush may (re)try it; a fresh message is left to the
    process that wrote it for a short grace period, a claimed one for a claim period.
    """

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    countdown = models.FloatField(default=0)
    created_at = ClockDateTimeField(auto_now_add=True)
    available_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["available_at"], name="outbox_unsent_idx", condition=models.Q(sent_at__isnull=True)
            ),
            models.Index(fields=["sent_at"], name="outbox_sent_idx"),
        ]

    def __str__(self):
        return f"{self.task}{tuple(self.args)!r} ({'sent' if self.sent_at else 'unsent'})"
