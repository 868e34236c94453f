"""Owners' personal API tokens."""
from django.conf import settings
from django.db import models

from labeling.models.fields import ClockDateTimeField


class OwnerToken(models.Model):
    """A personal API token of a project owner, sent as ``Authorization: Token <token>``.

    Only the token's SHA-256 is stored; the token itself is shown once, when it is made.
    A scoped token reaches only ``projects`` (and of those, only the ones its user
    manages); an unscoped one reaches everything its user manages.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owner_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=71, unique=True, help_text="sha256$ + hex digest of the token.")
    prefix = models.CharField(max_length=12, help_text="The token's first characters, to recognise it by.")
    scoped = models.BooleanField(default=False, help_text="Reaches only the projects listed.")
    projects = models.ManyToManyField("Project", blank=True, related_name="+")
    created_at = ClockDateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name or 'token'} ({self.prefix}…)"
