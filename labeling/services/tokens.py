"""Keyed hashes of the widget: pass tokens, signed image URLs and visitor keys.

Every key is derived from ``SECRET_KEY`` with its own salt (``salted_hmac``), and every
check compares in constant time, the way ``django.contrib.auth.tokens`` does it.
"""
import hmac
import ipaddress
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac
from django.utils.http import base36_to_int, int_to_base36

from labeling import clock
from labeling.models import Challenge, ChallengeStatus, SiteMode
from labeling.services.ratelimit import ratelimit_enforce
from labeling.services.sites import site_get_by_secret, site_hostname_allowed

MAX_TOKEN_CHARS = 200
_TOKEN_RE = re.compile(r"^([0-9a-f]{32})\.([0-9a-z]{1,10})\.([0-9a-f]{64})$")


class ChallengeTokenGenerator:
    """The token a visitor's browser gets for a passed challenge and the site's server
    sends to siteverify: ``<challenge id>.<solved at, base 36>.<HMAC>``.

    The HMAC covers the challenge, its site, the hostname it was solved on and the
    time, so none of them can be changed. Single use is not decided here but by the
    conditional update in siteverify.
    """

    key_salt = "crowdloop.services.tokens.ChallengeTokenGenerator"
    algorithm = "sha256"

    def make_token(self, challenge: Challenge) -> str:
        """The token of ``challenge``, which must have been answered."""
        if challenge.answered_at is None:
            raise ValueError(f"challenge {challenge.pk} is not answered; it has no token")
        return self._make_token_with_timestamp(challenge, int(challenge.answered_at.timestamp()))

    def parse(self, token: object) -> tuple[str, int] | None:
        """``(challenge id hex, timestamp)`` of a well-formed token, else ``None``."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            return None
        match = _TOKEN_RE.match(token)
        if match is None:
            return None
        try:
            ts = base36_to_int(match.group(2))
        except ValueError:
            return None
        return match.group(1), ts

    def check_token(self, challenge: Challenge, token: str, *, now: datetime | None = None) -> str:
        """``"ok"``, ``"expired"`` or ``"invalid"`` for ``token`` against ``challenge``."""
        parsed = self.parse(token)
        if parsed is None or parsed[0] != challenge.pk.hex or challenge.answered_at is None:
            return "invalid"
        ts = parsed[1]
        if not hmac.compare_digest(self._make_token_with_timestamp(challenge, ts), token):
            return "invalid"
        age = (now or self._now()).timestamp() - ts
        if age > settings.CROWDLOOP_TOKEN_TTL_S:
            return "expired"
        if age < -5:
            return "invalid"
        return "ok"

    def _make_token_with_timestamp(self, challenge: Challenge, ts: int) -> str:
        value = f"{challenge.pk.hex}|{challenge.site_id}|{challenge.hostname}|{ts}"
        digest = salted_hmac(self.key_salt, value, algorithm=self.algorithm).hexdigest()
        return f"{challenge.pk.hex}.{int_to_base36(ts)}.{digest}"

    def _now(self) -> datetime:
        return clock.now()


challenge_token_generator = ChallengeTokenGenerator()


# --- Image URLs -------------------------------------------------------------------------------

_IMAGE_SALT = "crowdloop.services.tokens.image"


def image_signature(challenge_id: object, public_id: object) -> str:
    """The ``sig`` of a tile's image URL: valid for that challenge only (its expiry is
    checked against the challenge row)."""
    return salted_hmac(_IMAGE_SALT, f"{challenge_id}|{public_id}", algorithm="sha256").hexdigest()[:32]


def image_signature_valid(challenge_id: object, public_id: object, sig: object) -> bool:
    if not isinstance(sig, str) or len(sig) != 32:
        return False
    return hmac.compare_digest(image_signature(challenge_id, public_id), sig)


# --- Visitors ---------------------------------------------------------------------------------

_VISITOR_SALT = "crowdloop.services.tokens.visitor"


def visitor_key(*, ip: str, user_agent: str | None, site_id: object) -> str:
    """A keyed hash of client IP, User-Agent and site: who a visitor is, without a
    cookie and without storing the address."""
    value = f"{ip}|{(user_agent or '')[:512]}|{site_id}"
    return salted_hmac(_VISITOR_SALT, value, algorithm="sha256").hexdigest()


# --- Siteverify -------------------------------------------------------------------------------


def _result(
    codes: Sequence[str] = (), *, challenge_ts: datetime | None = None, hostname: str | None = None
) -> dict[str, Any]:
    return {
        "success": not codes,
        "challenge_ts": challenge_ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if challenge_ts else None,
        "hostname": hostname,
        "error-codes": list(codes),
    }


def challenge_verify(
    *, secret: object, response: object, sitekey: object = None, remoteip: object = None, caller_ip: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Siteverify: is ``response`` a fresh, unused token of a challenge passed on the
    site whose secret is ``secret``? Returns the reCAPTCHA/hCaptcha-shaped dict.

    A token succeeds once: the conditional update on ``token_used_at IS NULL`` lets
    exactly one of any number of concurrent verifications through. Never raises for
    bad input; raises :class:`~labeling.services.ratelimit.RateLimited` past the limits.
    """
    required = (("missing-input-secret", secret), ("missing-input-response", response))
    codes = [code for code, value in required if not value]
    if codes:
        return _result(codes)
    if not isinstance(secret, str) or not isinstance(response, str):
        return _result(["bad-request"])
    if remoteip not in (None, "") and not _is_ip(remoteip):
        return _result(["bad-request"])
    ratelimit_enforce([("siteverify:ip", caller_ip)])
    site = site_get_by_secret(secret)
    if site is None:
        return _result(["invalid-input-secret"])
    ratelimit_enforce([("siteverify:site", site.pk)])
    if sitekey not in (None, "") and sitekey != site.sitekey:
        return _result(["sitekey-secret-mismatch"])
    now = now or challenge_token_generator._now()
    if site.mode == SiteMode.TEST_PASS:
        return _result(challenge_ts=now, hostname="test-key")
    if site.mode == SiteMode.TEST_FAIL:
        return _result(["invalid-input-response"])
    parsed = challenge_token_generator.parse(response)
    if parsed is None:
        return _result(["invalid-input-response"])
    ratelimit_enforce([("siteverify:challenge", parsed[0])])
    challenge = Challenge.objects.filter(pk=uuid.UUID(hex=parsed[0])).first()
    if challenge is None:
        return _result(["invalid-input-response"])
    check = challenge_token_generator.check_token(challenge, response, now=now)
    if check == "invalid" or challenge.status != ChallengeStatus.PASSED:
        return _result(["invalid-input-response"])
    if challenge.site_id != site.pk:
        return _result(["sitekey-secret-mismatch"])
    if check == "expired":
        return _result(["timeout-or-duplicate"])
    if not site_hostname_allowed(site, challenge.hostname):
        return _result(["invalid-input-response"])
    used = Challenge.objects.filter(
        pk=challenge.pk, status=ChallengeStatus.PASSED, token_used_at__isnull=True
    ).update(token_used_at=now)
    if not used:
        return _result(["timeout-or-duplicate"])
    result = _result(challenge_ts=challenge.answered_at, hostname=challenge.hostname)
    # Passed with an accessibility pass rather than by answering: the site may ask more.
    result["accessibility_pass"] = challenge.accessibility_pass_id is not None
    return result


def _is_ip(value: object) -> bool:
    try:
        ipaddress.ip_address(str(value).strip())
    except ValueError:
        return False
    return True
