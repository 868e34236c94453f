"""Sites that embed the widget: keys, secrets, allowed hostnames and difficulty.

The admin and (later) a project settings page both go through these functions. A
secret is returned once, when it is made, and stored only as a hash.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from labeling import clock
from labeling.models import Project, Site, SiteMode
from labeling.services import hot

MAX_KEY_CHARS = 100
_HOSTNAME_RE = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def secret_hash(secret: str) -> str:
    """The stored form of a site secret. Secrets are 256 random bits, so a plain
    SHA-256 suffices (as for API tokens): a leaked database leaks no secret, a secret
    can be looked up by its hash, and rotating ``SECRET_KEY`` does not break sites."""
    return "sha256$" + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_new() -> str:
    return "0x" + secrets.token_hex(32)


def sitekey_new() -> str:
    return str(uuid.uuid4())


def hostname_normalise(value: str | None) -> str:
    """``"Shop.Example.com."`` -> ``"shop.example.com"``; IPv6 literals lose brackets."""
    value = (value or "").strip().lower().rstrip(".")
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return value


def hostnames_clean(values: str | Iterable[str]) -> list[str]:
    """Validate and normalise allowed hostnames: names, ``*.`` wildcards, IP literals."""
    if isinstance(values, str):
        values = re.split(r"[\s,]+", values)
    cleaned: list[str] = []
    for raw in values:
        name = hostname_normalise(raw)
        if not name:
            continue
        if not _is_ipv6(name):
            if "/" in name or ":" in name:
                raise ValidationError(
                    f"{raw!r} is not a hostname: give the name only (shop.example.com), no scheme or port"
                )
            if not _HOSTNAME_RE.match(name):
                raise ValidationError(f"{raw!r} is not a valid hostname")
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


def _is_ipv6(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).version == 6
    except ValueError:
        return False


def hostname_from_headers(origin: str | None, referer: str | None) -> str:
    """The hostname a browser request came from: its ``Origin``, else its ``Referer``."""
    for value in (origin, referer):
        if not value or value == "null" or len(value) > 2048:
            continue
        try:
            host = urlsplit(value).hostname
        except ValueError:
            continue
        if host:
            return hostname_normalise(host)
    return ""


def site_hostname_allowed(site: Site, hostname: str | None) -> bool:
    """Whether ``hostname`` is one of the site's allowed hostnames (``*.example.com``
    matches its subdomains). Test keys work anywhere; no hostnames means none."""
    if site.mode != SiteMode.NORMAL:
        return True
    hostname = hostname_normalise(hostname)
    if not hostname:
        return False
    for allowed in site.allowed_hostnames or ():
        allowed = hostname_normalise(str(allowed))
        if allowed.startswith("*."):
            if hostname.endswith(allowed[1:]) and len(hostname) > len(allowed) - 1:
                return True
        elif hostname == allowed:
            return True
    return False


def site_create(
    *, name: str, projects: Iterable[Project] = (), allowed_hostnames: str | Iterable[str] = (),
    owner: User | None = None, mode: str = SiteMode.NORMAL, sitekey: str | None = None, secret: str | None = None,
    **difficulty: Any,
) -> tuple[Site, str]:
    """Create a site; returns ``(site, secret)``. The secret is not stored and cannot be
    shown again. ``difficulty``: ``control_items``, ``pass_share``, ``min_solve_ms``;
    giving either of the first two turns automatic difficulty off unless
    ``difficulty_auto`` says otherwise."""
    if {"control_items", "pass_share"} & difficulty.keys():
        difficulty.setdefault("difficulty_auto", False)
    hostnames = hostnames_clean(allowed_hostnames)
    if mode == SiteMode.NORMAL and not hostnames:
        raise ValidationError("a site needs at least one allowed hostname")
    secret = secret or secret_new()
    with transaction.atomic():
        site = Site(
            name=name, owner=owner, mode=mode, sitekey=sitekey or sitekey_new(),
            secret_hash=secret_hash(secret), allowed_hostnames=hostnames, **difficulty,
        )
        site.full_clean()
        site.save()
        if projects:
            site.projects.set(projects)
    return site, secret


def site_update(site: Site, *, allowed_hostnames: str | Iterable[str] | None = None, **fields: Any) -> Site:
    """Change a site's settings (name, mode, difficulty, hostnames); keys stay."""
    if allowed_hostnames is not None:
        site.allowed_hostnames = hostnames_clean(allowed_hostnames)
    for field, value in fields.items():
        if field in {"sitekey", "secret_hash"}:
            raise ValueError(f"{field} cannot be set; rotate the secret instead")
        setattr(site, field, value)
    site.full_clean()
    site.save()
    return site


def site_secret_rotate(site: Site, *, now: datetime | None = None) -> str:
    """Give the site a new secret and return it; the old one stops working at once."""
    secret = secret_new()
    Site.objects.filter(pk=site.pk).update(secret_hash=secret_hash(secret), secret_rotated_at=now or clock.now())
    site.refresh_from_db(fields=["secret_hash", "secret_rotated_at"])
    return secret


def site_get_by_sitekey(sitekey: object) -> Site | None:
    if not isinstance(sitekey, str) or not sitekey or len(sitekey) > MAX_KEY_CHARS:
        return None
    site = hot.site_by_key(sitekey)[0]
    if site is None and sitekey in _TEST_SITEKEYS:
        site = widget_test_keys_ensure()[_TEST_SITEKEYS[sitekey]]
    return site


def site_get_by_secret(secret: object) -> Site | None:
    if not isinstance(secret, str) or not secret or len(secret) > MAX_KEY_CHARS:
        return None
    site = Site.objects.filter(secret_hash=secret_hash(secret)).first()
    if site is None and secret in _TEST_SECRETS:
        site = widget_test_keys_ensure()[_TEST_SECRETS[secret]]
    return site


# --- Published test keys ----------------------------------------------------------------------


class PublishedKey(NamedTuple):
    name: str
    mode: str
    sitekey: str
    secret: str


HCAPTCHA_TEST_SITEKEY = "10000000-ffff-ffff-ffff-000000000001"
HCAPTCHA_TEST_SECRET = "0x" + "0" * 40
RECAPTCHA_TEST_SITEKEY = "6LeIxAcTAAAAAJcZVRqyHh4UMeOx4S5-ooQzEZ6J"
RECAPTCHA_TEST_SECRET = "6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe"
FAIL_TEST_SITEKEY = "20000000-ffff-ffff-ffff-000000000002"
FAIL_TEST_SECRET = "0x0000000000000000000000000000000000000002"

TEST_KEYS = (
    # hCaptcha's and reCAPTCHA v2's published test pairs, so that a form switched over
    # from either keeps passing its tests: any response verifies.
    PublishedKey("Test key: always passes (hCaptcha's test pair)", SiteMode.TEST_PASS, HCAPTCHA_TEST_SITEKEY,
            HCAPTCHA_TEST_SECRET),
    PublishedKey("Test key: always passes (reCAPTCHA v2's test pair)", SiteMode.TEST_PASS, RECAPTCHA_TEST_SITEKEY,
            RECAPTCHA_TEST_SECRET),
    PublishedKey("Test key: always fails", SiteMode.TEST_FAIL, FAIL_TEST_SITEKEY, FAIL_TEST_SECRET),
)
_TEST_SITEKEYS = {key.sitekey: i for i, key in enumerate(TEST_KEYS)}
_TEST_SECRETS = {key.secret: i for i, key in enumerate(TEST_KEYS)}


def widget_test_keys_ensure() -> list[Site]:
    """The sites of the published test keys, created (or given back their published
    secret and mode) as needed; in :data:`TEST_KEYS` order. Lookups by a test key call
    this on a miss, so the keys work on every installation from the first request.
    Test sites have no project: they never show an item and never produce labels."""
    sites = []
    for key in TEST_KEYS:
        site = Site.objects.filter(sitekey=key.sitekey).first()
        if site is None:
            try:
                with transaction.atomic():
                    site, _ = site_create(name=key.name, mode=key.mode, sitekey=key.sitekey, secret=key.secret)
            except IntegrityError:  # made by a concurrent request
                site = Site.objects.get(sitekey=key.sitekey)
        if site.secret_hash != secret_hash(key.secret) or site.mode != key.mode:
            Site.objects.filter(pk=site.pk).update(secret_hash=secret_hash(key.secret), mode=key.mode)
            hot.site_forget(site)
            site.refresh_from_db(fields=["secret_hash", "mode"])
        sites.append(site)
    return sites
