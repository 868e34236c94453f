"""Composing a challenge: which kind (grid, choice or verify), its prompt's label, and
its tiles, for :func:`~labeling.services.challenges.challenge_issue`.

Unknown tiles are picked by :mod:`~labeling.services.selection` and leased; control tiles
come from the rotating :mod:`~labeling.services.control_pool`. Prompts leak nothing: the
target of a grid or verify challenge is chosen before its control tiles, which are then
positives or negatives for it at random (a grid may have no positive at all). A choice
question's control tiles carry labels drawn evenly, so that no answer is a good guess.
"""
from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from django.conf import settings

from labeling.models import ChallengeKind, Item, ItemStatus, Project, PseudoLabel, Site, Worker
from labeling.services import control_pool, difficulty, hot, selection

GRID_TILES = 9
CHOICE_UNKNOWN = 2
VERIFY_UNKNOWN = 3
MIN_GRID_TILES = 4


PlanTile: TypeAlias = tuple[Item, "int | None", "int | None", "str | None"]
"""A tile of a planned challenge: (item, expected label id of a control tile or None,
proposed label id, public id of its lease or None)."""


@dataclass
class Plan:
    """A challenge to issue: its kind, the label its prompt names (grid, verify) and its tiles."""

    kind: str
    target_label_id: int | None
    tiles: list[PlanTile]


Planner: TypeAlias = Callable[[Project, Worker, int, datetime, random.Random], "Plan | None"]
"""A planner of one kind of challenge: ``(project, worker, n_control, now, rng)``."""


def challenge_plan(
    project: Project, worker: Worker, site: Site, extra: int, now: datetime, rng: random.Random, kind: str | None,
    *, retiring: bool = True,
) -> Plan | None:
    """A challenge for ``worker`` in ``project`` on ``site``, of ``kind`` or of the first
    kind in :func:`_kinds_in_order` that has enough items; ``None`` when none has.
    ``extra``: control tiles added for a visitor with failed challenges. ``retiring``:
    whether kinds that retire their controls may be asked (the pool holds its reserve,
    :func:`~labeling.services.control_pool.pool_holds_reserve`). Call inside the
    transaction that saves the challenge (unknown tiles are leased here)."""
    n_labels = len(hot.project_labels(project))
    kinds = [kind] if kind else _kinds_in_order(rng, choice_first=site.difficulty_auto and n_labels >= 3)
    if not kind and not retiring:
        # Grids and yes/no questions retire their controls: a small pool serves choices.
        kinds = [candidate for candidate in kinds if candidate == ChallengeKind.CHOICE]
    for candidate in kinds:
        if site.difficulty_auto:
            n_control = difficulty.pass_rule(candidate, n_labels).controls + extra
        else:
            n_control = max(site.control_items + extra, 1)
        planners: dict[str, Planner] = {
            ChallengeKind.GRID: _plan_grid,
            ChallengeKind.CHOICE: _plan_choice,
            ChallengeKind.VERIFY: _plan_verify,
        }
        plan = planners[candidate](project, worker, n_control, now, rng)
        if plan is not None:
            return plan
    return None


def _kinds_in_order(rng: random.Random, choice_first: bool = False) -> list[str]:
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


def _controls(
    project: Project, worker: Worker, n: int, rng: random.Random, exclude_ids: Iterable[int] = (),
    now: datetime | None = None,
) -> list[tuple[Item, int]]:
    """Up to ``n`` ``(item, label_id)`` control pairs from the control pool for a choice
    question, each of a label drawn evenly among those the candidates carry: the pool's
    own mix of labels (mostly one label, say) must not make one answer a good guess,
    since the pass rule counts on a blind guess being right one time in ``L``."""
    n_labels = len(hot.project_labels(project))
    pool = control_pool.pool_pick(
        project, worker=worker, n=max(n, 2 * n_labels), exclude_ids=exclude_ids, rng=rng, now=now
    )
    by_label: dict[int, list[tuple[int, int]]] = {}
    for pair in pool:
        by_label.setdefault(pair[1], []).append(pair)
    chosen: list[tuple[int, int]] = []
    for _ in range(n):
        labels = sorted(label for label, pairs in by_label.items() if pairs)
        if not labels:
            break
        side = by_label[rng.choice(labels)]
        chosen.append(side.pop(rng.randrange(len(side))))
    return _with_items(chosen)


def _with_items(pairs: Sequence[tuple[int, int]]) -> list[tuple[Item, int]]:
    items = Item.objects.in_bulk([item_id for item_id, _ in pairs])
    return [(items[item_id], label_id) for item_id, label_id in pairs if item_id in items]


def _controls_for(
    project: Project, worker: Worker, n: int, target: int, rng: random.Random, exclude_ids: Iterable[int] = (),
    now: datetime | None = None,
) -> list[tuple[Item, int]]:
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


def _lease(project: Project, worker: Worker, items: Sequence[Item], now: datetime) -> list[tuple[Item, str]]:
    leases = selection.leases_grant(
        worker=worker, items=items, ttl_seconds=settings.CROWDLOOP_CHALLENGE_TTL_S, now=now
    )
    return [(lease.item, lease.public_id) for lease in leases]


def _grid_target(project: Project, unknown: Sequence[Item], rng: random.Random) -> int | None:
    """The label a grid asks for, chosen without looking at its control tiles: half of
    the time the pseudo-label of one of its unknown tiles (so that the answers are
    useful), otherwise any of the project's labels."""
    proposed = list(PseudoLabel.objects.filter(item_id__in=[item.pk for item in unknown]).values_list(
        "label_id", flat=True))
    if proposed and rng.random() < 0.5:
        return rng.choice(proposed)
    labels = [label.pk for label in hot.project_labels(project)]
    return rng.choice(labels) if labels else None


def _plan_grid(project: Project, worker: Worker, n_control: int, now: datetime, rng: random.Random) -> Plan | None:
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
    tiles: list[PlanTile] = [(item, label_id, None, None) for item, label_id in controls]
    tiles += [(item, None, None, public_id) for item, public_id in _lease(project, worker, unknown, now)]
    return Plan(ChallengeKind.GRID, target, tiles)


def _plan_choice(
    project: Project, worker: Worker, n_control: int, now: datetime, rng: random.Random
) -> Plan | None:
    controls = _controls(project, worker, n_control, rng, now=now)
    if len(controls) < n_control:
        return None
    unknown = selection.unknown_items_pick(
        project, worker=worker, n=CHOICE_UNKNOWN, exclude_ids=[i.pk for i, _ in controls], now=now, for_update=True
    )
    tiles: list[PlanTile] = [(item, label_id, None, None) for item, label_id in controls]
    tiles += [(item, None, None, public_id) for item, public_id in _lease(project, worker, unknown, now)]
    return Plan(ChallengeKind.CHOICE, None, tiles)


def _plan_verify(
    project: Project, worker: Worker, n_control: int, now: datetime, rng: random.Random
) -> Plan | None:
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
    by_label: dict[int, list[Item]] = {}
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
    tiles: list[PlanTile] = [(item, label_id, target, None) for item, label_id in controls]
    tiles += [(item, None, target, public_id) for item, public_id in _lease(project, worker, unknown, now)]
    return Plan(ChallengeKind.VERIFY, target, tiles)
