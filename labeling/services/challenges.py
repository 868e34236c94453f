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

Answering (grading, storing a pass) lives in :mod:`~labeling.services.challenge_answers`.

Test keys (``SiteMode.TEST_PASS`` / ``TEST_FAIL``) never touch items: their challenge
is a signed id with no tiles, and their tokens are fixed dummies.
"""
import functools
import random
from dataclasses import dataclass, field
from datetime import timedelta

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
    Item,
    ItemStatus,
    PseudoLabel,
    Site,
    SiteMode,
    Worker,
    WorkerKind,
    WorkerStatus,
)
from labeling.services import control_pool, difficulty, hot, selection
from labeling.services.media import image_serve
from labeling.services.ratelimit import ratelimit_enforce
from labeling.services.settling import site_counted
from labeling.services.sites import site_get_by_sitekey, site_hostname_allowed
from labeling.services.tokens import visitor_key
from labeling.services.worker_status import projects_closing

GRID_TILES = 9
CHOICE_UNKNOWN = 2
VERIFY_UNKNOWN = 3
MIN_GRID_TILES = 4
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
    expires_at: object
    kind: str = "test"
    tiles: list = field(default_factory=list)


@dataclass
class AnswerOutcome:
    passed: bool
    token: str | None
    challenge: object
    reason: str = ""


def _now():
    return clock.now()


def _rng():
    """Where the randomness of issuing and rendering comes from (a seam for tests)."""
    return random.SystemRandom()


# --- Visitors ---------------------------------------------------------------------------------


def visitor_get(site, client):
    """The visitor worker for this client on this site (created on first sight)."""
    key = visitor_key(ip=client.ip, user_agent=client.user_agent, site_id=site.pk)
    worker, _ = Worker.objects.get_or_create(visitor_key=key, defaults={"kind": WorkerKind.VISITOR})
    return worker


def visitor_strikes(worker, *, now):
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


def _visitor_admit(worker, *, now):
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


@dataclass
class _Plan:
    kind: str
    target_label_id: int | None
    tiles: list  # (item, expected label id of a control tile or None, proposed_label_id, public_id or None)


def challenge_issue(*, sitekey, client, now=None, rng=None, kind=None):
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
        with transaction.atomic():
            plan = _plan(project, worker, site, extra, now, rng, kind)
            if plan is None:
                continue
            challenge = _challenge_save(site, project, worker, plan, now, expires_at, rng)
        # After the commit, and in production by a debounced recount: the site row is
        # shared by every visitor of the site.
        site_counted(site.pk, issued=1)
        return challenge
    raise ChallengeRefused("no-challenge-available", "This site has nothing to ask right now.")


def _plan(project, worker, site, extra, now, rng, kind):
    n_labels = len(hot.project_labels(project))
    kinds = [kind] if kind else _kinds_in_order(rng, choice_first=site.difficulty_auto and n_labels >= 3)
    if not kind and not control_pool.pool_holds_reserve(project, now=now):
        # Grids and yes/no questions retire their controls: a small pool serves choices.
        kinds = [candidate for candidate in kinds if candidate == ChallengeKind.CHOICE]
    for candidate in kinds:
        if site.difficulty_auto:
            n_control = difficulty.pass_rule(candidate, n_labels).controls + extra
        else:
            n_control = max(site.control_items + extra, 1)
        plan = {
            ChallengeKind.GRID: _plan_grid,
            ChallengeKind.CHOICE: _plan_choice,
            ChallengeKind.VERIFY: _plan_verify,
        }[candidate](project, worker, n_control, now, rng)
        if plan is not None:
            return plan
    return None


def _kinds_in_order(rng, choice_first=False):
    """Verify first half of the time (it checks pseudo-labels when there are any), then
    grid or choice. With ``choice_first`` (automatic difficulty, three labels or more),
    choice questions come first and verify a third of the time: a choice control tile is
    far harder to guess than a yes/no one, so it needs fewer of them."""
    if choice_first:
        rest = [ChallengeKind.CHOICE, ChallengeKind.GRID]
        return [ChallengeKind.VERIFY, *rest] if rng.random() < 1 / 3 else [*rest, ChallengeKind.VERIFY]
    rest = [ChallengeKind.GRID, ChallengeKind.CHOICE]
    if rng.random() >= 0.7:
        rest.reverse()
    if rng.random() < 0.5:
        return [ChallengeKind.VERIFY, *rest]
    return [*rest, ChallengeKind.VERIFY]


def _controls(project, worker, n, rng, exclude_ids=(), now=None):
    """Up to ``n`` ``(item, label_id)`` control pairs from the control pool for a choice
    question, each of a label drawn evenly among those the candidates carry: the pool's
    own mix of labels (mostly one label, say) must not make one answer a good guess,
    since the pass rule counts on a blind guess being right one time in ``L``."""
    n_labels = len(hot.project_labels(project))
    pool = control_pool.pool_pick(
        project, worker=worker, n=max(n, 2 * n_labels), exclude_ids=exclude_ids, rng=rng, now=now
    )
    by_label: dict[int, list] = {}
    for pair in pool:
        by_label.setdefault(pair[1], []).append(pair)
    chosen = []
    for _ in range(n):
        labels = sorted(label for label, pairs in by_label.items() if pairs)
        if not labels:
            break
        side = by_label[rng.choice(labels)]
        chosen.append(side.pop(rng.randrange(len(side))))
    return _with_items(chosen)


def _with_items(pairs):
    items = Item.objects.in_bulk([item_id for item_id, _ in pairs])
    return [(items[item_id], label_id) for item_id, label_id in pairs if item_id in items]


def _controls_for(project, worker, n, target, rng, exclude_ids=(), now=None):
    """``n`` control items for a prompt about ``target``: each one, at random, a positive
    (its label is the target) or a negative, so that no prompt says which tiles are
    control or what they show. The count of positives is drawn first (binomial, 1/2)
    and both sides are read from the pool on their own: when the pool is short of one
    side, there is no such challenge (filling in from the other side would make "no"
    or "yes" everywhere a better guess than a coin)."""
    n_positive = sum(rng.random() < 0.5 for _ in range(n))
    pick = functools.partial(control_pool.pool_pick, project, worker=worker, exclude_ids=exclude_ids, rng=rng, now=now)
    positives = pick(n=n_positive, label_id=target)[:n_positive] if n_positive else []
    negatives = pick(n=n - n_positive, other_than=target)[: n - n_positive] if n > n_positive else []
    if len(positives) < n_positive or len(negatives) < n - n_positive:
        return []
    return _with_items(positives + negatives)


def _lease(project, worker, items, now):
    leases = selection.leases_grant(
        worker=worker, items=items, ttl_seconds=settings.CROWDLOOP_CHALLENGE_TTL_S, now=now
    )
    return [(lease.item, lease.public_id) for lease in leases]


def _grid_target(project, unknown, rng):
    """The label a grid asks for, chosen without looking at its control tiles: half of
    the time the pseudo-label of one of its unknown tiles (so that the answers are
    useful), otherwise any of the project's labels."""
    proposed = list(PseudoLabel.objects.filter(item_id__in=[item.pk for item in unknown]).values_list(
        "label_id", flat=True))
    if proposed and rng.random() < 0.5:
        return rng.choice(proposed)
    labels = [label.pk for label in hot.project_labels(project)]
    return rng.choice(labels) if labels else None


def _plan_grid(project, worker, n_control, now, rng):
    """Nine tiles. The target comes first, from the unknown tiles or at random; the
    control tiles are then positives or negatives for it at random, so a grid may have
    no positive at all (then selecting none of its controls is right)."""
    n_control = min(n_control, GRID_TILES - 1)
    unknown = selection.unknown_items_pick(
        project, worker=worker, n=GRID_TILES - n_control, now=now, for_update=True,
    )
    target = _grid_target(project, unknown, rng)
    if target is None:
        return None
    n_fill = max(GRID_TILES - len(unknown), n_control)
    exclude_ids = [i.pk for i in unknown]
    controls = _controls_for(project, worker, n_fill, target, rng, exclude_ids=exclude_ids, now=now)
    if not controls and n_fill > n_control:
        controls = _controls_for(project, worker, n_control, target, rng, exclude_ids=exclude_ids, now=now)
    if len(controls) < n_control or len(controls) + len(unknown) < MIN_GRID_TILES:
        return None
    tiles = [(item, label_id, None, None) for item, label_id in controls]
    tiles += [(item, None, None, public_id) for item, public_id in _lease(project, worker, unknown, now)]
    return _Plan(ChallengeKind.GRID, target, tiles)


def _plan_choice(project, worker, n_control, now, rng):
    controls = _controls(project, worker, n_control, rng, now=now)
    if len(controls) < n_control:
        return None
    unknown = selection.unknown_items_pick(
        project, worker=worker, n=CHOICE_UNKNOWN, exclude_ids=[i.pk for i, _ in controls], now=now, for_update=True
    )
    tiles = [(item, label_id, None, None) for item, label_id in controls]
    tiles += [(item, None, None, public_id) for item, public_id in _lease(project, worker, unknown, now)]
    return _Plan(ChallengeKind.CHOICE, None, tiles)


def _plan_verify(project, worker, n_control, now, rng):
    """Yes/no on one proposed label: unknown tiles are pseudo-labeled items carrying it
    (ordered by the project's selection strategy; the label most of them carry). The
    control tiles are then positives or negatives for it at random, like a grid's."""
    if not hot.project_has_pseudo_labels(project):
        return None
    candidates = selection.unknown_items_pick(
        project, worker=worker, n=8 * VERIFY_UNKNOWN, now=now, for_update=True, statuses=(ItemStatus.PSEUDO_LABELED,)
    )
    pseudo_ids = [item.pk for item in candidates if item.status == ItemStatus.PSEUDO_LABELED]
    proposed = dict(PseudoLabel.objects.filter(item_id__in=pseudo_ids).values_list("item_id", "label_id"))
    if not proposed:
        return None
    by_label: dict[int, list] = {}
    for item in candidates:
        if item.pk in proposed:
            by_label.setdefault(proposed[item.pk], []).append(item)
    target = sorted(by_label, key=lambda label: (-len(by_label[label]), rng.random()))[0]
    unknown = by_label[target][:VERIFY_UNKNOWN]
    controls = _controls_for(
        project, worker, n_control, target, rng, exclude_ids=[i.pk for i in candidates], now=now
    )
    if len(controls) < n_control:
        return None
    tiles = [(item, label_id, target, None) for item, label_id in controls]
    tiles += [(item, None, target, public_id) for item, public_id in _lease(project, worker, unknown, now)]
    return _Plan(ChallengeKind.VERIFY, target, tiles)


def _challenge_save(site, project, worker, plan, now, expires_at, rng):
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


def challenge_payload(challenge, *, image_url):
    """The JSON a widget gets: opaque tile ids, signed image URLs or inline texts, and
    never a label of an item, a control flag, a database id or a file name.
    ``image_url(challenge_id, public_id)`` builds an absolute, signed URL."""
    expires_at = challenge.expires_at.isoformat().replace("+00:00", "Z")
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
    prompt = {
        ChallengeKind.GRID: f"Select every {noun} of “{target}”",
        ChallengeKind.CHOICE: "Which label fits this text?" if is_text else "What does this image show?",
        ChallengeKind.VERIFY: f"Is this “{target}”?",
    }[challenge.kind]
    items = []
    tiles = getattr(challenge, "tiles_issued", None) or challenge.tiles.select_related("item").order_by("position")
    for tile in tiles:
        if is_text:
            items.append({"id": tile.public_id, "text": tile.item.text})
        else:
            items.append({"id": tile.public_id, "image": image_url(challenge.pk, tile.public_id)})
    payload = {
        "id": str(challenge.pk), "kind": challenge.kind, "prompt": prompt, "items": items, "expires_at": expires_at,
    }
    if challenge.kind == ChallengeKind.CHOICE:
        payload["labels"] = labels
    return payload


def challenge_image(*, challenge_id, public_id, now=None, rng=None):
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
