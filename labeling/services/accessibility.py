"""The accessibility pass: a way through the widget for people who cannot see the images.

WCAG asks a CAPTCHA for an alternative in another modality. As hCaptcha's accessibility
cookie does, a visitor earns a pass once by a verified e-mail address; the pass lives in a
signed, expiring cookie on Crowdloop's own origin. With it, the visitor passes the open
challenge without answering: the challenge is marked passed *by the pass*, so none of its
tiles becomes an answer (no label evidence), and siteverify says so
(``"accessibility_pass": true``), so a site may ask for more.

Never a way around for bots: an address earns at most
``CROWDLOOP_A11Y_PASSES_PER_ADDRESS_PER_DAY`` passes a day, a pass is used at most
``CROWDLOOP_A11Y_USES_PER_DAY`` times a day, and both the request and the use are rate
limited per client address. Only a keyed hash of the e-mail address is stored.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.utils.crypto import salted_hmac

from labeling import clock
from labeling.models import AccessibilityPass, Challenge, ChallengeStatus, Lease, SiteMode
from labeling.services.challenges import ChallengeRefused
from labeling.services.ratelimit import ratelimit_enforce
from labeling.services.sites import hostname_normalise, site_hostname_allowed
from labeling.services.tokens import challenge_token_generator

COOKIE_NAME = "crowdloop_a11y"
VERIFY_MAX_AGE_S = 3600
DAY = timedelta(days=1)
_EMAIL_SALT = "crowdloop.services.accessibility.email"
_VERIFY_SALT = "crowdloop.services.accessibility.verify"
_COOKIE_SALT = "crowdloop.services.accessibility.cookie"


def _now() -> datetime:
    return clock.now()


def email_digest(email: str) -> str:
    """A keyed hash of the normalised address: counts passes per address without
    keeping the address."""
    return salted_hmac(_EMAIL_SALT, email.strip().lower(), algorithm="sha256").hexdigest()


def accessibility_pass_request(
    *, email: str | None, client_ip: str | None, verify_url: Callable[[str], str], now: datetime | None = None
) -> AccessibilityPass:
    """Send a verification link for a new pass to ``email``.

    ``verify_url(token)`` builds the link. Raises :class:`ValidationError` for a bad
    address, :class:`ChallengeRefused` (429) once the address has had its passes for
    the day, and :class:`~labeling.services.ratelimit.RateLimited` past the per-client
    limit. Returns the new (unverified) pass.
    """
    email = (email or "").strip()
    if len(email) > 254:
        raise ValidationError("Enter a valid e-mail address.")
    validate_email(email)
    ratelimit_enforce([("a11y-request:ip", client_ip)])
    now = now or _now()
    digest = email_digest(email)
    recent = AccessibilityPass.objects.filter(email_digest=digest, created_at__gt=now - DAY).count()
    if recent >= settings.CROWDLOOP_A11Y_PASSES_PER_ADDRESS_PER_DAY:
        raise ChallengeRefused(
            "address-limit", "This address has asked for its passes for today; try again tomorrow.")
    pass_ = AccessibilityPass.objects.create(email_digest=digest, created_at=now)
    token = signing.dumps({"p": pass_.pk.hex}, salt=_VERIFY_SALT)
    send_mail(
        "Your Crowdloop accessibility pass",
        "Someone (we hope you) asked for an accessibility pass for Crowdloop's human check.\n\n"
        f"Open this link within an hour to activate it on this device:\n{verify_url(token)}\n\n"
        "If it was not you, ignore this message; nothing happens.",
        None,
        [email],
    )
    return pass_


def accessibility_pass_verify(token: str, *, now: datetime | None = None) -> AccessibilityPass | None:
    """Activate the pass of a verification ``token`` (once, within an hour); returns it
    or ``None`` for a forged, expired or used token."""
    try:
        data = signing.loads(token, salt=_VERIFY_SALT, max_age=VERIFY_MAX_AGE_S)
        pk = uuid.UUID(hex=str(data["p"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    now = now or _now()
    expires = now + timedelta(seconds=settings.CROWDLOOP_A11Y_PASS_TTL_S)
    activated = AccessibilityPass.objects.filter(pk=pk, verified_at__isnull=True, revoked=False).update(
        verified_at=now, expires_at=expires
    )
    return AccessibilityPass.objects.get(pk=pk) if activated else None


def accessibility_cookie_value(pass_: AccessibilityPass) -> str:
    """The signed cookie value that carries ``pass_``."""
    return signing.dumps({"p": pass_.pk.hex}, salt=_COOKIE_SALT)


def accessibility_pass_from_cookie(value: object, *, now: datetime | None = None) -> AccessibilityPass | None:
    """The active pass a cookie carries, or ``None``: forged, expired (by its signed
    time or its row), revoked and unknown passes all give ``None``."""
    if not value or not isinstance(value, str) or len(value) > 512:
        return None
    try:
        data = signing.loads(value, salt=_COOKIE_SALT, max_age=settings.CROWDLOOP_A11Y_PASS_TTL_S)
        pk = uuid.UUID(hex=str(data["p"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    now = now or _now()
    return AccessibilityPass.objects.filter(
        pk=pk, verified_at__isnull=False, expires_at__gt=now, revoked=False
    ).first()


def accessibility_uses_left(pass_: AccessibilityPass, *, now: datetime | None = None) -> int:
    now = now or _now()
    used = Challenge.objects.filter(accessibility_pass=pass_, answered_at__gt=now - DAY).count()
    return max(settings.CROWDLOOP_A11Y_USES_PER_DAY - used, 0)


def accessibility_pass_use(
    pass_: AccessibilityPass, *, challenge_id: object, origin_hostname: str, client_ip: str | None,
    now: datetime | None = None,
) -> str:
    """Pass the open challenge ``challenge_id`` with ``pass_`` for the page on
    ``origin_hostname``; returns the siteverify token.

    The challenge must be open, on a site that allows that hostname. It becomes
    passed, its tiles stay unanswered (no label evidence) and it remembers the pass.
    """
    ratelimit_enforce([("a11y-use:ip", client_ip)])
    now = now or _now()
    try:
        pk = uuid.UUID(str(challenge_id))
    except (TypeError, ValueError):
        raise ChallengeRefused("challenge-not-found", "No such challenge.") from None
    challenge = Challenge.objects.select_related("site").filter(pk=pk).first()
    if challenge is None or challenge.site is None:
        raise ChallengeRefused("challenge-not-found", "No such challenge.")
    if challenge.site.mode != SiteMode.NORMAL:
        raise ChallengeRefused("test-key", "Test keys need no pass.")
    hostname = hostname_normalise(origin_hostname)
    if not site_hostname_allowed(challenge.site, hostname):
        raise ChallengeRefused("hostname-not-allowed", "This page may not use this site's check.")
    if challenge.status != ChallengeStatus.ISSUED:
        raise ChallengeRefused("already-answered", "This challenge was answered already.")
    if challenge.expires_at <= now:
        raise ChallengeRefused("challenge-expired", "This challenge has expired; load a new one.")
    with transaction.atomic():
        # Lock the pass so two tabs cannot both take its last use of the day.
        AccessibilityPass.objects.select_for_update().filter(pk=pass_.pk).first()
        if accessibility_uses_left(pass_, now=now) <= 0:
            raise ChallengeRefused("pass-limit", "Your pass has been used as often as it may today.")
        claimed = Challenge.objects.filter(pk=challenge.pk, status=ChallengeStatus.ISSUED).update(
            status=ChallengeStatus.PASSED, answered_at=now, hostname=hostname[:255], accessibility_pass=pass_
        )
        if claimed:
            # Its unknown items go back to the pool for people who answer them.
            Lease.objects.filter(
                worker_id=challenge.worker_id,
                item_id__in=challenge.tiles.filter(is_control=False).values("item_id"),
            ).update(expires_at=now)
    if not claimed:
        raise ChallengeRefused("already-answered", "This challenge was answered already.")
    challenge.refresh_from_db()
    return challenge_token_generator.make_token(challenge)
