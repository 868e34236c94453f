"""Answering a challenge: grade it once, and store the answers of a pass.

The grade comes from what each tile recorded when the challenge was issued (its
expected label), so answering reads no control row. One conditional update claims the
challenge (a second answer is refused), then the answers go through the one narrow
write (:func:`~labeling.services.answers.answers_insert`); consensus follows after the
commit.
"""
from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import transaction

from labeling.models import Answer, Challenge, ChallengeItem, ChallengeKind, ChallengeStatus, Lease, Site, SiteMode
from labeling.services import difficulty, hot
from labeling.services.answers import AnswerInput, answers_insert, answers_settle
from labeling.services.challenges import (
    TEST_CHALLENGE_SALT,
    TEST_TOKENS,
    AnswerOutcome,
    ChallengeRefused,
    ClientInfo,
    TestChallenge,
    _now,
)
from labeling.services.ratelimit import ratelimit_enforce
from labeling.services.settling import site_counted
from labeling.services.tokens import challenge_token_generator

MAX_RESPONSE_ENTRIES = 64


def challenge_answer(
    *, challenge_id: object, data: object, client: ClientInfo, now: datetime | None = None
) -> AnswerOutcome:
    """Judge the answer ``data`` to a challenge, once. Returns an :class:`AnswerOutcome`.

    Passing needs the site's share of control tiles right, no faster than its minimum
    solve time. Only then do the answers become :class:`Answer` rows (unknown tiles as
    label evidence, control tiles as the visitor's control record). A second answer to
    the same challenge is refused and changes nothing.
    """
    now = now or _now()
    challenge = _challenge_open(challenge_id, client, now)
    if challenge is None:
        return _test_answer(challenge_id)
    tiles = list(challenge.tiles.select_related("item"))
    responses = _responses_parse(challenge, tiles, data)

    # Graded from what the tiles recorded at issue: no read of the hot control rows.
    known = {tile.item_id: tile.expected_label_id for tile in tiles if tile.is_control}
    elapsed_ms = int((now - challenge.issued_at).total_seconds() * 1000)
    # Choice answers name labels: their ids, read once per answer.
    label_ids = _label_ids(challenge) if challenge.kind == ChallengeKind.CHOICE else {}
    graded = [_grade(challenge, tile, responses.get(tile.public_id), known, label_ids) for tile in tiles]
    controls = [
        correct for tile, (_, correct) in zip(tiles, graded, strict=True) if tile.is_control and correct is not None
    ]
    needed = _needed(challenge, len(controls))
    too_fast = elapsed_ms < (challenge.site.min_solve_ms if challenge.site else 0)
    passed = bool(controls) and sum(controls) >= needed and not too_fast
    rows = _outcome_save(challenge, tiles, graded, client, now, passed, controls, elapsed_ms, label_ids)
    if not passed:
        return AnswerOutcome(False, None, challenge, "too-fast" if too_fast else "control-items-wrong")
    if challenge.site_id:
        site_counted(challenge.site_id, passed=1)
    answers_settle(challenge.project_id, rows)
    return AnswerOutcome(True, challenge_token_generator.make_token(challenge), challenge)


def _challenge_open(challenge_id: object, client: ClientInfo, now: datetime) -> Challenge | None:
    """The issued, unexpired challenge ``challenge_id`` names, within the rate limits;
    ``None`` for a test key's challenge id (not a UUID). Raises :class:`ChallengeRefused`
    for an unknown, answered or expired challenge."""
    ratelimit_enforce([("challenge-answer:ip", client.ip), ("challenge-answer:challenge", str(challenge_id)[:200])])
    challenge_pk = _uuid_or_none(challenge_id)
    if challenge_pk is None:
        return None
    challenge = Challenge.objects.select_related("site", "project", "worker").filter(pk=challenge_pk).first()
    if challenge is None:
        raise ChallengeRefused("challenge-not-found", "No such challenge.")
    if challenge.site_id:
        ratelimit_enforce([("challenge-answer:site", challenge.site_id)])
    if challenge.status != ChallengeStatus.ISSUED:
        raise ChallengeRefused("already-answered", "This challenge was answered already.")
    if challenge.expires_at <= now:
        raise ChallengeRefused("challenge-expired", "This challenge has expired; load a new one.")
    return challenge


def _outcome_save(
    challenge: Challenge, tiles: list[ChallengeItem], graded: list[tuple[Any, bool | None]], client: ClientInfo,
    now: datetime,
    passed: bool, controls: list[bool], elapsed_ms: int, label_ids: dict[str, int],
) -> list[Answer]:
    """In one transaction: claim the challenge with its outcome (the one conditional
    update that makes an answer count once), record each tile's response, end the leases
    of its unknown items and, when it passed, insert the answers weighted by how sure the
    pass makes us that the visitor looked. Returns the inserted answers."""
    outcome = ChallengeStatus.PASSED if passed else ChallengeStatus.FAILED
    rows: list[Answer] = []
    with transaction.atomic():
        claimed = Challenge.objects.filter(pk=challenge.pk, status=ChallengeStatus.ISSUED).update(
            status=outcome, answered_at=now, hostname=client.hostname[:255]
        )
        if not claimed:
            raise ChallengeRefused("already-answered", "This challenge was answered already.")
        challenge.status, challenge.answered_at, challenge.hostname = outcome, now, client.hostname[:255]
        for tile, (response, _) in zip(tiles, graded, strict=True):
            tile.response = response
        ChallengeItem.objects.bulk_update(tiles, ["response"])
        Lease.objects.filter(
            worker_id=challenge.worker_id, item_id__in=sorted(tile.item_id for tile in tiles if not tile.is_control)
        ).update(expires_at=now)
        if passed:
            weight = difficulty.looked_probability(
                challenge.kind, len(hot.project_labels(challenge.project)), len(controls), sum(controls)
            )
            inputs = _answer_inputs(challenge, tiles, graded, elapsed_ms, weight, label_ids)
            rows = answers_insert(worker=challenge.worker, inputs=inputs, source="widget", now=now)
    return rows


def _needed(challenge: Challenge, n_controls: int) -> int:
    """Right control answers needed to pass: the site's automatic rule for this kind,
    or its share of the control tiles."""
    site = challenge.site
    if site is None:
        return n_controls
    if site.difficulty_auto:
        rule = difficulty.pass_rule(challenge.kind, len(hot.project_labels(challenge.project)))
        return rule.needed(n_controls)
    return math.ceil(site.pass_share * n_controls - 1e-9)


def _uuid_or_none(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)[:64])
    except ValueError:
        return None


def _test_answer(challenge_id: object) -> AnswerOutcome:
    try:
        site_id = signing.loads(
            str(challenge_id)[:500], salt=TEST_CHALLENGE_SALT, max_age=settings.CROWDLOOP_CHALLENGE_TTL_S
        )["s"]
    except (signing.BadSignature, KeyError, TypeError):
        raise ChallengeRefused("challenge-not-found", "No such challenge.") from None
    site = Site.objects.filter(pk=site_id).exclude(mode=SiteMode.NORMAL).first()
    if site is None:
        raise ChallengeRefused("challenge-not-found", "No such challenge.")
    return AnswerOutcome(True, TEST_TOKENS[SiteMode(site.mode)], TestChallenge(id=str(challenge_id), site=site, expires_at=None))


def _responses_parse(challenge: Challenge, tiles: Sequence[ChallengeItem], data: object) -> dict[str, Any]:
    """``{public_id: response}`` from the client's JSON; refuses malformed input with
    ``bad-request`` before anything is stored."""
    bad = ChallengeRefused("bad-request", "Malformed answer.")
    if not isinstance(data, dict):
        raise bad
    ids = {tile.public_id for tile in tiles}
    if challenge.kind == ChallengeKind.GRID:
        selected = data.get("selected", [])
        if not isinstance(selected, list) or len(selected) > MAX_RESPONSE_ENTRIES:
            raise bad
        if any(not isinstance(value, str) or value not in ids for value in selected):
            raise bad
        return {public_id: public_id in selected for public_id in ids}
    answers = data.get("answers", {})
    if not isinstance(answers, dict) or len(answers) > MAX_RESPONSE_ENTRIES:
        raise bad
    if any(key not in ids for key in answers):
        raise bad
    if challenge.kind == ChallengeKind.VERIFY:
        if any(not isinstance(value, bool) for value in answers.values()):
            raise bad
        return dict(answers)
    names = {label.name for label in hot.project_labels(challenge.project)}
    if any(not isinstance(value, str) or value not in names for value in answers.values()):
        raise bad
    return dict(answers)


def _grade(
    challenge: Challenge, tile: ChallengeItem, response: Any, known: Mapping[int, int | None],
    label_ids: Mapping[str, int],
) -> tuple[Any, bool | None]:
    """``(response to keep, correct)``; ``correct`` is ``None`` for unknown tiles and
    for control tiles whose label is no longer known."""
    if challenge.kind == ChallengeKind.GRID:
        response = bool(response)
    expected = known.get(tile.item_id) if tile.is_control else None
    if expected is None:
        return response, None
    if response is None:
        return response, False
    if challenge.kind == ChallengeKind.GRID:
        return response, response == (expected == challenge.target_label_id)
    if challenge.kind == ChallengeKind.VERIFY:
        return response, response == (expected == tile.proposed_label_id)
    return response, label_ids.get(response) == expected


def _label_ids(challenge: Challenge) -> dict[str, int]:
    """``{name: label id}`` of the challenge's project."""
    return {label.name: label.pk for label in hot.project_labels(challenge.project)}


def _answer_inputs(
    challenge: Challenge, tiles: Sequence[ChallengeItem], graded: Sequence[tuple[Any, bool | None]], elapsed_ms: int,
    weight: float, label_ids: Mapping[str, int],
) -> list[AnswerInput]:
    """Answers of a passed challenge. Grid: a selected tile confirms the target label, an
    unselected one rejects it. Verify: yes/no on the proposed label. Choice: the label.
    Each carries ``weight``, how sure the pass makes us that the visitor looked
    (:func:`~labeling.services.difficulty.looked_probability`): truth inference mixes
    the answer with a blind guess by that much."""
    inputs: list[AnswerInput] = []
    per_tile_ms = elapsed_ms // max(len(tiles), 1)
    ref = str(challenge.pk)
    for tile, (response, correct) in zip(tiles, graded, strict=True):
        if tile.is_control and correct is None:
            continue
        if challenge.kind == ChallengeKind.GRID:
            label_id, verdict = challenge.target_label_id, bool(response)
        elif challenge.kind == ChallengeKind.VERIFY:
            if response is None:
                continue
            label_id, verdict = tile.proposed_label_id, bool(response)
        else:
            label_id, verdict = label_ids.get(response) if response is not None else None, None
        if label_id is None:  # a choice answer without a label (grid and verify tiles always have one)
            continue
        inputs.append(
            AnswerInput(
                item=tile.item, label_id=label_id, task_ref=ref, verdict=verdict, is_control=tile.is_control,
                correct=correct, time_taken_ms=per_tile_ms, evidence_weight=weight,
            )
        )
    return inputs
