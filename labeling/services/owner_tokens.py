"""Owners' personal API tokens: made, looked up by hash, revoked.

A token is ``clo_`` and 256 random bits (URL-safe base64). Only its SHA-256 is
stored, so a leaked database leaks no token; as the token is random and long, a plain
hash suffices and a request is matched by looking its hash up (the way site secrets are,
see :func:`labeling.services.sites.secret_hash`), then compared in constant time.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from labeling import clock
from labeling.models import OwnerToken, Project

PREFIX = "clo_"
MAX_TOKEN_CHARS = 100
LAST_USED_RESOLUTION = timedelta(minutes=1)
_TOKEN_RE = re.compile(r"^clo_[A-Za-z0-9_-]{43}$")


def _now() -> datetime:
    return clock.now()


def token_hash(raw: str) -> str:
    return "sha256$" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def owner_token_create(*, user: User, name: str = "", projects: Iterable[Project] | None = None) -> tuple[OwnerToken, str]:
    """Make a token for ``user``; returns ``(token row, raw token)``. The raw token is
    not stored and cannot be shown again.

    ``projects`` (a list of projects, possibly empty) scopes the token to those;
    ``None`` leaves it unscoped. Each must be managed by ``user``.
    """
    from labeling.selectors import projects_managed_by

    name = (name or "").strip()
    if len(name) > 100:
        raise ValidationError("a token's name has at most 100 characters")
    scoped = projects is not None
    projects = list(projects or ())
    if scoped:
        managed = set(projects_managed_by(user).filter(pk__in=[p.pk for p in projects]).values_list("pk", flat=True))
        foreign = [p.slug for p in projects if p.pk not in managed]
        if foreign:
            raise ValidationError(f"{user} does not manage: {', '.join(foreign)}")
        if not projects:
            raise ValidationError("a scoped token needs at least one project")
    raw = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = OwnerToken.objects.create(
            user=user, name=name, key_hash=token_hash(raw), prefix=raw[: len(PREFIX) + 4], scoped=scoped
        )
        if projects:
            token.projects.set(projects)
    return token, raw


def owner_token_revoke(token: OwnerToken, *, now: datetime | None = None) -> bool:
    """Revoke ``token`` at once; revoking twice keeps the first time. Returns whether
    this call revoked it."""
    now = now or _now()
    revoked = OwnerToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    token.refresh_from_db(fields=["revoked_at"])
    return bool(revoked)


def owner_token_authenticate(raw: object, *, now: datetime | None = None) -> OwnerToken | None:
    """The live token whose value is ``raw``, with its user, or ``None`` for a
    malformed, unknown or revoked token or an inactive user. Records the use (at most
    once a minute per token, so that a busy client does not write on every request)."""
    if not isinstance(raw, str) or len(raw) > MAX_TOKEN_CHARS or not _TOKEN_RE.match(raw):
        return None
    digest = token_hash(raw)
    token = OwnerToken.objects.filter(key_hash=digest).select_related("user").first()
    if token is None or not hmac.compare_digest(token.key_hash, digest):
        return None
    if token.revoked_at is not None or not token.user.is_active:
        return None
    now = now or _now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        OwnerToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
