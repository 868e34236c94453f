"""CAPTCHA-style challenges: issue one to a visitor, judge the answer, verify the token.

A challenge mixes control items (gold, or certain consensus) with unknown items leased
through :mod:`labeling.services.selection`, the same mechanism as the worker UI. Which
tiles are control is random per challenge, and a client sees only opaque tile ids,
signed image URLs and texts. Prompts leak nothing: the target of a grid or verify
challenge is chosen before its control tiles, which are then positives or negatives for
it at random (a grid may have no positive at all), and such a prompt is its control
items' last serve (see :mod:`~labeling.services.control_pool`). Answers on unknown items become :class:`Answer` rows only
when the control items were answered right and not faster than a human can; a failed
challenge keeps what was answered as evidence on its tiles and nothing else.

Composing a challenge (its kind, prompt and tiles) lives in
:mod:`~labeling.services.challenge_plans`, answering (grading, storing a pass) in
:mod:`~labeling.services.challenge_answers`.

Test keys (``SiteMode.TEST_PASS`` / ``TEST_FAIL``) never touch items: their challenge
is a signed id with no tiles, and their tokens are fixed dummies.
"""
from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import transaction

from labeling import clock
from labeling.models import (
    Challenge,
    ChallengeItem,
    ChallengeKind,
    ChallengeStatus,
    DataKind,
    Project,
    Site,
    SiteMode,
    Worker,
    WorkerKind,
    WorkerStatus,
)
from labeling.services import control_pool, hot, selection
from labeling.services.challenge_plans import Plan, challenge_plan
from labeling.services.media import image_serve
from labeling.services.ratelimit import ratelimit_enforce
from labeling.services.settling import site_counted
from labeling.services.sites import site_get_by_sitekey, site_hostname_allowed
from labeling.services.tokens import visitor_key
from labeling.services.worker_status import projects_closing

MAX_EXTRA_CONTROLS = 4
TEST_CHALLENGE_SALT = "crowdloop.services.challenges.test-challenge"
TEST_TOKENS = {
    SiteMode.TEST_PASS: "10000000-aaaa-bbbb-cccc-000000000001",
    SiteMode.TEST_FAIL: "20000000-aaaa-bbbb-cccc-000000000002",
}


class ChallengeRefused(Exception):
    """The request cannot be served; ``code`` is for machines (the widget API maps it to
    an HTTP status), the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ClientInfo:
    """What the widget endpoints know of a visitor: no cookie, no account."""

    ip: str
    user_agent: str = ""
    hostname: str = ""


@dataclass
class TestChallenge:
    """The challenge of a test key: nothing to solve, nothing stored."""

    id: str
    site: Site
    expires_at: datetime | None
    kind: str = "test"
    tiles: list[ChallengeItem] = field(default_factory=list)


@dataclass
class AnswerOutcome:
    passed: bool
    token: str | None
    challenge: Challenge | TestChallenge
    reason: str = ""


def _now() -> datetime:
    return clock.now()


def _rng() -> random.Random:
    """Where the randomness of issuing and rendering comes from (a seam for tests)."""
    return random.SystemRandom()


# --- Visitors ---------------------------------------------------------------------------------


def visitor_get(site: Site, client: ClientInfo) -> Worker:
    """The visitor worker for this client on this site (created on first sight)."""
    key = visitor_key(ip=client.ip, user_agent=client.user_agent, site_id=site.pk)
    worker, _ = Worker.objects.get_or_create(visitor_key=key, defaults={"kind": WorkerKind.VISITOR})
    return worker


def visitor_strikes(worker: Worker, *, now: datetime) -> int:
    """Failed challenges since the visitor's last pass (within the strike window); a
    failure faster than the site's minimum solve time counts twice. One query: the
    window's answered challenges, newest first, up to the last pass."""
    since = now - timedelta(seconds=settings.CROWDLOOP_VISITOR_STRIKE_WINDOW_S)
    answered = (
        Challenge.objects.filter(
            worker=worker, answered_at__gte=since, status__in=(ChallengeStatus.PASSED, ChallengeStatus.FAILED)
        )
        .order_by("-answered_at")
        .values_list("status", "issued_at", "answered_at", "site__min_solve_ms")[:50]
    )
    strikes = 0
    for status, issued_at, answered_at, min_solve_ms in answered:
        if status == ChallengeStatus.PASSED:
            break
        fast = answered_at is not None and (answered_at - issued_at).total_seconds() * 1000 < (min_solve_ms or 0)
        strikes += 2 if fast else 1
    return strikes


def _visitor_admit(worker: Worker, *, now: datetime) -> int:
    """Extra control items this visitor gets; refuses blocked visitors and those paused
    or banned platform-wide (a project's own ban only keeps them out of that project)."""
    if worker.status != WorkerStatus.ACTIVE:
        raise ChallengeRefused("visitor-blocked", "This visitor may not solve challenges.")
    strikes = visitor_strikes(worker, now=now)
    if strikes >= settings.CROWDLOOP_VISITOR_MAX_STRIKES:
        raise ChallengeRefused(
            "visitor-blocked", "Too many failed challenges from this visitor; try again later."
        )
    return min(strikes, MAX_EXTRA_CONTROLS)


# --- Issuing ----------------------------------------------------------------------------------


def challenge_issue(
    *, sitekey: object, client: ClientInfo, now: datetime | None = None, rng: random.Random | None = None,
    kind: str | None = None,
) -> Challenge | TestChallenge:
    """A new challenge for ``client`` on the site with ``sitekey``.

    Raises :class:`ChallengeRefused` for an unknown key, a hostname the site does not
    allow, a blocked visitor or a site with nothing to ask, and
    :class:`~labeling.services.ratelimit.RateLimited` past the limits.
    """
    now = now or _now()
    rng = rng or _rng()
    ratelimit_enforce([("challenge-issue:ip", client.ip), ("challenge-issue:site", str(sitekey)[:100])])
    site = site_get_by_sitekey(sitekey)
    if site is None:
        raise ChallengeRefused("invalid-sitekey", "Unknown site key.")
    if client.hostname and not site_hostname_allowed(site, client.hostname):
        raise ChallengeRefused(
            "hostname-not-allowed", f"This site key is not allowed on {client.hostname}."
        )
    expires_at = now + timedelta(seconds=settings.CROWDLOOP_CHALLENGE_TTL_S)
    if site.mode != SiteMode.NORMAL:
        return TestChallenge(
            id=signing.dumps({"s": site.pk}, salt=TEST_CHALLENGE_SALT), site=site, expires_at=expires_at
        )
    worker = visitor_get(site, client)
    extra = _visitor_admit(worker, now=now)
    site_projects = hot.site_by_key(site.sitekey)[1]
    closing = set(projects_closing(worker))
    projects = [project for project in site_projects if project.pk not in closing]
    if not projects and site_projects:
        raise ChallengeRefused("visitor-blocked", "This visitor may not solve challenges.")
    rng.shuffle(projects)
    for project in projects:
        # Before the transaction: the check may refresh the pool table, a write that must
        # not wait on other requests while this one holds item locks.
        retiring = kind is not None or control_pool.pool_holds_reserve(project, now=now, rng=rng)
        with transaction.atomic():
            plan = challenge_plan(project, worker, site, extra, now, rng, kind, retiring=retiring)
            if plan is None:
                continue
            challenge = _challenge_save(site, project, worker, plan, now, expires_at, rng)
        # After the commit, and in production by a debounced recount: the site row is
        # shared by every visitor of the site.
        site_counted(site.pk, issued=1)
        return challenge
    raise ChallengeRefused("no-challenge-available", "This site has nothing to ask right now.")


def _challenge_save(
    site: Site, project: Project, worker: Worker, plan: Plan, now: datetime, expires_at: datetime,
    rng: random.Random,
) -> Challenge:
    challenge = Challenge.objects.create(
        site=site, project=project, worker=worker, kind=plan.kind, target_label_id=plan.target_label_id,
        issued_at=now, expires_at=expires_at,
    )
    tiles = list(plan.tiles)
    rng.shuffle(tiles)
    rows = [
        ChallengeItem(
            challenge=challenge, item=item, public_id=public_id or selection.public_id_new(), position=position,
            is_control=expected is not None, expected_label_id=expected, proposed_label_id=proposed,
        )
        for position, (item, expected, proposed, public_id) in enumerate(tiles)
    ]
    ChallengeItem.objects.bulk_create(rows)
    challenge.tiles_issued = rows  # type: ignore[attr-defined]  # the payload of a new challenge reads them from here
    control_pool.exposures_record(
        worker=worker, item_ids=[item.pk for item, expected, _, _ in tiles if expected is not None], now=now, rng=rng,
        retire=plan.target_label_id is not None,
    )
    return challenge


# --- What the client sees -------------------------------------------------------------------------


def challenge_payload(
    challenge: Challenge | TestChallenge, *, image_url: Callable[[uuid.UUID, str], str]
) -> dict[str, Any]:
    """The JSON a widget gets: opaque tile ids, signed image URLs or inline texts, and
    never a label of an item, a control flag, a database id or a file name.
    ``image_url(challenge_id, public_id)`` builds an absolute, signed URL."""
    expires_at = challenge.expires_at.isoformat().replace("+00:00", "Z") if challenge.expires_at else None
    if isinstance(challenge, TestChallenge):
        return {
            "id": challenge.id, "kind": "test", "items": [], "expires_at": expires_at,
            "prompt": "Test key: no challenge to solve.",
        }
    project = challenge.project
    labels = [label.name for label in hot.project_labels(project)]
    names = {label.pk: label.name for label in hot.project_labels(project)}
    target = names.get(challenge.target_label_id) if challenge.target_label_id else None
    is_text = project.data_kind == DataKind.TEXT
    noun = "text" if is_text else "image"
    prompts: dict[str, str] = {
        ChallengeKind.GRID: f"Select every {noun} of “{target}”",
        ChallengeKind.CHOICE: "Which label fits this text?" if is_text else "What does this image show?",
        ChallengeKind.VERIFY: f"Is this “{target}”?",
    }
    prompt = prompts[challenge.kind]
    items = []
    tiles = getattr(challenge, "tiles_issued", None) or challenge.tiles.select_related("item").order_by("position")
    for tile in tiles:
        if is_text:
            items.append({"id": tile.public_id, "text": tile.item.text})
        else:
            items.append({"id": tile.public_id, "image": image_url(challenge.pk, tile.public_id)})
    payload: dict[str, Any] = {
        "id": str(challenge.pk), "kind": challenge.kind, "prompt": prompt, "items": items, "expires_at": expires_at,
    }
    if challenge.kind == ChallengeKind.CHOICE:
        payload["labels"] = labels
    return payload


def challenge_image(
    *, challenge_id: uuid.UUID | str, public_id: str, now: datetime | None = None, rng: random.Random | None = None
) -> bytes:
    """PNG bytes of a tile's image, while its challenge has not expired: a fresh
    rendering at every request (:func:`~labeling.bridge.image_render`)."""
    now = now or _now()
    tile = (
        ChallengeItem.objects.filter(challenge_id=challenge_id, public_id=public_id, challenge__expires_at__gt=now)
        .select_related("item")
        .first()
    )
    if tile is None or not tile.item.image:
        raise ChallengeRefused("not-found", "No such image, or it has expired.")
    with tile.item.image.open("rb") as file:
        return image_serve(file.read(), rng=rng or _rng())
