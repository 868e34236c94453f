"""Truth inference: answers become arrays for :mod:`ml.aggregation`, and posteriors and
worker parameters come back as plain Python values keyed by database ids."""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from django.db.models import QuerySet
from numpy.typing import ArrayLike

from labeling.models import Answer, KnownLabel, Project
from ml.aggregation import make_aggregator
from ml.aggregation.incremental import (  # noqa: F401  (settle_chance is re-exported)
    binary_accuracy,
    one_coin_confusion,
    posterior_from_evidence,
    settle_chance,
)
from ml.model_selection import wilson_interval  # noqa: F401  (re-exported for the selectors)

if TYPE_CHECKING:
    from ml.aggregation._base import Init

Skill: TypeAlias = "Sequence[Sequence[float]] | float"
"""A worker's skill: a confusion matrix (K x K), or an accuracy."""
Evidence: TypeAlias = "list[tuple[int, int, bool | None, float]]"
"""An item's answers as ``(worker_id, position, verdict, weight)``."""

DEFAULT_ACCURACY = 0.7
PRIOR_STRENGTH = 4.0


def label_positions(project: Project) -> tuple[dict[int, int], list[int]]:
    """``{label_id: position}`` and the class count of a project."""
    ids = list(project.label_classes.order_by("position").values_list("id", flat=True))
    return {label_id: i for i, label_id in enumerate(ids)}, ids


def counted_answers(project: Project, item_ids: Iterable[int] | None = None) -> QuerySet[Answer]:
    """Answers that count as label votes: not from banned workers, not rejections."""
    query = Answer.objects.filter(item__project=project).without_banned_workers()
    query = query.exclude(verdict=False)
    if item_ids is not None:
        query = query.filter(item_id__in=item_ids)
    return query


def control_accuracy(
    correct: float, total: float, prior: float = DEFAULT_ACCURACY, strength: float = PRIOR_STRENGTH
) -> float:
    """Accuracy on control items with a Beta prior, so that 1/1 is not 100 %."""
    return (correct + prior * strength) / (total + strength)


MODEL_PRIOR_TEMPER = 0.5
"""A model's calibrated belief about an item enters truth inference raised to this power:
a machine reading counts as about half a vote, as reCAPTCHA counted its OCR readings."""

VISITOR_ACCURACY = 0.55
"""Prior accuracy of an anonymous widget visitor with no control record: cautious, so that
a bot that passed a challenge by chance moves no label on its own."""


def answer_evidence(project: Project, item_ids: Collection[int]) -> dict[int, Evidence]:
    """Non-banned answers of ``item_ids`` as
    ``{item_id: [(worker_id, position, verdict, weight)]}``; ``verdict`` is ``None`` for a
    K-way answer, ``True``/``False`` for a yes/no one; ``weight`` is the answer's
    evidence weight (see :func:`blind_mix`)."""
    positions, _ = label_positions(project)
    rows = (
        Answer.objects.filter(item_id__in=item_ids)
        .without_banned_workers()
        .values_list("item_id", "worker_id", "label_id", "verdict", "evidence_weight")
    )
    evidence: dict[int, Evidence] = {item_id: [] for item_id in item_ids}
    for item_id, worker_id, label_id, verdict, weight in rows:
        evidence[item_id].append((worker_id, positions[label_id], verdict, weight))
    return evidence


def blind_mix(confusion: ArrayLike, weight: float) -> np.ndarray:
    """A K-way answer's confusion when its author looked with probability ``weight`` and
    otherwise guessed blind (every label alike): ``weight * C + (1 - weight) / K``. The
    exact likelihood of that mixture, so a lucky pass of a widget challenge moves a label
    less than a pass that leaves no doubt."""
    matrix = np.asarray(confusion, dtype=float)
    weight = float(np.clip(weight, 0.0, 1.0))
    return weight * matrix + (1.0 - weight) / matrix.shape[0]


def item_prior(class_priors: ArrayLike, belief: tuple[int, float] | None) -> np.ndarray:
    """An item's prior: the class priors times a model's tempered belief
    ``(position, confidence)`` (the rest of the mass spread evenly), or the class priors."""
    priors = np.asarray(class_priors, dtype=float)
    if belief is None:
        return priors
    position, confidence = belief
    n_classes = len(priors)
    distribution = np.full(n_classes, (1.0 - confidence) / max(n_classes - 1, 1))
    distribution[position] = confidence
    prior = priors * np.clip(distribution, 1e-6, 1.0) ** MODEL_PRIOR_TEMPER
    return prior / prior.sum()


def items_posteriors(
    project: Project, item_ids: Collection[int], skills: Mapping[int, Skill], class_priors: ArrayLike | None = None,
    beliefs: Mapping[int, tuple[int, float]] | None = None,
) -> tuple[dict[int, tuple[list[float], int, int]], list[int]]:
    """Cheap path: the posterior of each item from all its answers, with worker
    parameters fixed. ``skills`` maps worker id to a confusion matrix (K x K list) or an
    accuracy. K-way answers are votes through the worker's confusion; yes/no answers
    (verify, grid tiles selected or not) are verdicts with the worker's yes/no accuracy.
    Each answer is mixed with a blind guess by its evidence weight (:func:`blind_mix`).
    ``beliefs`` maps item id to ``(label_id, calibrated confidence)`` from the
    semi-supervised round or a model: a prior (see :func:`item_prior`), never a vote.
    Returns ``({item_id: (posterior list, n_answers, n_votes)}, label_ids)``; ``n_votes``
    counts the answers that name a label (K-way, or yes)."""
    positions, label_ids = label_positions(project)
    n_classes = len(label_ids)
    priors = np.full(n_classes, 1.0 / n_classes) if class_priors is None else np.asarray(class_priors, float)
    beliefs = beliefs or {}
    known: dict[int, int] = dict(KnownLabel.objects.filter(item_id__in=item_ids).values_list("item_id", "label_id"))
    result: dict[int, tuple[list[float], int, int]] = {}
    for item_id, answers in answer_evidence(project, item_ids).items():
        votes: list[tuple[int, ArrayLike]] = []
        verdicts: list[tuple[int, bool, float]] = []
        for worker, position, verdict, weight in answers:
            skill = skills.get(worker)
            if verdict is None:
                votes.append((position, blind_mix(_confusion(skill, n_classes), weight)))
            else:
                # A blind yes/no is a coin flip: accuracy 1/2.
                accuracy = binary_accuracy(_accuracy(skill), n_classes)
                verdicts.append((position, verdict, weight * accuracy + (1.0 - weight) * 0.5))
        belief = beliefs.get(item_id)
        prior = item_prior(priors, None if belief is None else (positions[belief[0]], belief[1]))
        known_position = positions[known[item_id]] if item_id in known else -1
        posterior = posterior_from_evidence(prior, votes=votes, verdicts=verdicts, known_label=known_position)
        n_votes = len(votes) + sum(1 for _, said_yes, _ in verdicts if said_yes)
        result[item_id] = (posterior.tolist(), len(answers), n_votes)
    return result, label_ids


def _accuracy(skill: Skill | None) -> float:
    if skill is None:
        return DEFAULT_ACCURACY
    if isinstance(skill, (int, float)):
        return float(skill)
    return float(np.mean(np.diag(np.asarray(skill, dtype=float))))


def _confusion(skill: Skill | None, n_classes: int) -> np.ndarray:
    if skill is None:
        return one_coin_confusion(DEFAULT_ACCURACY, n_classes)
    if isinstance(skill, (int, float)):
        return one_coin_confusion(min(max(float(skill), 1e-3), 1 - 1e-3), n_classes)
    return np.asarray(skill, dtype=float)


@dataclass(frozen=True)
class AggregateFit:
    """A project's full truth inference: rows ``i`` of ``posteriors`` and ``n_answers``
    belong to ``item_ids[i]``; entries ``j`` of ``skills``, ``confusions`` and
    ``worker_answers`` to ``worker_ids[j]``; columns follow ``label_ids``."""

    label_ids: list[int]
    item_ids: list[int]
    posteriors: np.ndarray
    n_answers: list[int]
    worker_ids: list[int]
    skills: list[float]
    confusions: list[list[list[float]]]
    worker_answers: list[int]
    class_priors: list[float]
    method: str
    n_iter: int


def aggregate_fit(project: Project, method: str = "auto", init: Init | None = None) -> AggregateFit:
    """Full truth inference over all counted answers of a project (see :class:`AggregateFit`),
    each answer weighted by its evidence weight (a lucky widget pass fits worker
    parameters as little as it moves a label)."""
    positions, label_ids = label_positions(project)
    n_classes = len(label_ids)
    triples = list(counted_answers(project).order_by("id").values_list("item_id", "worker_id", "label_id", "evidence_weight"))
    rows = np.array([triple[:3] for triple in triples], dtype=np.int64).reshape(-1, 3)
    weights = np.clip(np.array([triple[3] for triple in triples], dtype=float), 0.0, 1.0)
    known_rows = list(KnownLabel.objects.filter(item__project=project).values_list("item_id", "label_id"))
    item_ids = np.unique(np.concatenate([rows[:, 0], np.array([i for i, _ in known_rows], dtype=np.int64)]))
    worker_ids = np.unique(rows[:, 1])
    lookup = np.vectorize(positions.__getitem__, otypes=[np.intp])
    answers = np.column_stack(
        [
            np.searchsorted(item_ids, rows[:, 0]),
            np.searchsorted(worker_ids, rows[:, 1]),
            lookup(rows[:, 2]) if len(rows) else rows[:, 2],
        ]
    ).astype(np.intp)
    known = np.full(len(item_ids), -1, dtype=np.intp)
    for item_id, label_id in known_rows:
        known[np.searchsorted(item_ids, item_id)] = positions[label_id]
    estimator = make_aggregator(method, n_classes)
    estimator.fit(answers, known=known, n_items=len(item_ids), n_workers=len(worker_ids), init=init, weights=weights)
    return AggregateFit(
        label_ids=list(label_ids),
        item_ids=item_ids.tolist(),
        posteriors=estimator.posteriors_,
        n_answers=np.bincount(answers[:, 0], minlength=len(item_ids)).tolist() if len(answers) else [0] * len(item_ids),
        worker_ids=worker_ids.tolist(),
        skills=np.asarray(estimator.skills_, dtype=float).tolist(),
        confusions=np.asarray(estimator.confusions_, dtype=float).tolist(),
        worker_answers=np.bincount(answers[:, 1], minlength=len(worker_ids)).tolist() if len(answers) else [],
        class_priors=np.asarray(estimator.class_priors_, dtype=float).tolist(),
        method=str(estimator.method_),
        n_iter=int(getattr(estimator, "n_iter_", 0)),
    )
