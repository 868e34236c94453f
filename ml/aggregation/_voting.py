"""Majority vote and weighted majority vote."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy import ndarray

from ._base import (
    BaseAggregator,
    check_answers,
    clamp,
    class_log_prior,
    one_coin_confusion,
    resize_workers,
    shrunk_accuracies,
    softmax_rows,
    vote_counts,
    vote_shares,
)

if TYPE_CHECKING:
    from typing import Self

    from numpy.typing import ArrayLike

    from ._base import Answers, Init


def tie_break_argmax(votes: ndarray, class_priors: ndarray) -> ndarray:
    """Argmax of integer vote counts; ties go to the more frequent class, then the lower index."""
    n_classes = votes.shape[1]
    rank = np.empty(n_classes)
    rank[np.argsort(-class_priors, kind="stable")] = np.arange(n_classes)
    bonus = (n_classes - rank) / (n_classes + 1)
    return (votes + bonus).argmax(axis=1)


def log_odds_weights(skills: ndarray, n_classes: int) -> ndarray:
    """Vote weights ``log((K-1) p / (1-p))``, clipped at 0: below chance counts for nothing."""
    skills = np.clip(skills, 1e-6, 1 - 1e-6)
    return np.maximum(np.log(n_classes - 1) + np.log(skills) - np.log1p(-skills), 0.0)


class MajorityVote(BaseAggregator):
    """Plain majority vote.

    ``posteriors_`` are the vote shares; ``labels_`` breaks ties toward the class most
    frequent in the whole project, then toward the lower class index, so the result is
    deterministic. ``skills_`` is each worker's agreement with the final labels,
    Laplace-smoothed. ``init`` is accepted and ignored (nothing to warm-start).

    Parameters
    ----------
    n_classes : int
        Number of classes.

    Attributes
    ----------
    posteriors_ : ndarray of shape (n_items, n_classes)
    labels_ : ndarray of shape (n_items,)
        ``-1`` for items with no answers that are not known.
    confidence_ : ndarray of shape (n_items,)
    n_answers_ : ndarray of shape (n_items,)
    skills_ : ndarray of shape (n_workers,)
    confusions_ : ndarray of shape (n_workers, n_classes, n_classes)
        One-coin matrices derived from ``skills_``.
    class_priors_ : ndarray of shape (n_classes,)
    n_iter_ : int
    method_ : str
    """

    method_name = "majority"

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes

    def _fit(self, data: Answers, init: Init | None) -> None:
        n_classes = data.n_classes
        votes = vote_counts(data)
        totals = votes.sum(axis=1, keepdims=True)
        posteriors = np.divide(votes, totals, out=np.zeros_like(votes), where=totals > 0)
        clamp(posteriors, data)
        self.class_priors_ = np.exp(class_log_prior(posteriors[data.has_info].sum(axis=0)))
        hard = tie_break_argmax(votes, self.class_priors_)
        hard[data.known_idx] = data.known_lab
        self._vote_labels = hard

        agree = np.bincount(
            data.workers, weights=(hard[data.items] == data.labels) * data.weights, minlength=data.n_workers
        )
        n_answered = np.bincount(data.workers, weights=data.weights, minlength=data.n_workers)
        self.skills_ = (agree + 1.0) / (n_answered + 2.0)
        self.confusions_ = one_coin_confusion(self.skills_, n_classes)
        self.posteriors_ = posteriors
        self.n_iter_ = 1

    def _argmax_labels(self, data: Answers) -> ndarray:
        return self._vote_labels.copy()

    def _item_scores(self, workers: ndarray, labels: ndarray) -> ndarray:
        with np.errstate(divide="ignore"):
            return np.log(np.bincount(labels, minlength=self.n_classes).astype(float))


class WeightedMajorityVote(BaseAggregator):
    """Majority vote with each worker's vote weighted by the log-odds of their accuracy.

    The weight of a worker with accuracy ``p`` is ``max(0, log((K-1) p / (1-p)))``: zero
    at or below chance, so spammers and adversarial workers count for nothing. The
    posterior is ``softmax(log class prior + weighted votes)``, the one-coin posterior
    with these weights.

    When ``skills`` is not given they are estimated by hard EM: score each worker's
    agreement with the known items if any were answered, else with the majority vote
    (shrunk toward the pooled agreement with ``prior`` pseudo-answers), re-vote with
    known items clamped, re-score against the new labels, and stop when the labels no
    longer change or after ``max_iter`` rounds.

    Parameters
    ----------
    n_classes : int
        Number of classes.
    skills : array-like of shape (n_workers,), optional
        Known worker accuracies in [0, 1]; skips estimation. ``n_workers`` then
        defaults to its length.
    prior : float, default=2.0
        Pseudo-answers pulling each worker's accuracy toward the pooled one.
    max_iter : int, default=10
        Rounds of re-weighting.

    Attributes
    ----------
    weights_ : ndarray of shape (n_workers,)
        Vote weights. Other attributes as in :class:`MajorityVote`.
    """

    method_name = "weighted_majority"

    def __init__(self, n_classes: int, skills: ArrayLike | None = None, prior: float = 2.0, max_iter: int = 10) -> None:
        self.n_classes = n_classes
        self.skills = skills
        self.prior = prior
        self.max_iter = max_iter

    def fit(
        self,
        answers: ArrayLike,
        known: ArrayLike | None = None,
        n_items: int | None = None,
        n_workers: int | None = None,
        init: Init | None = None,
        weights: ArrayLike | None = None,
    ) -> Self:
        """See :meth:`BaseAggregator.fit`; ``init`` is a fitted instance or ``{"skills": ...}``."""
        if self.skills is not None and n_workers is None:
            n_workers = np.asarray(self.skills).size
        data = check_answers(answers, self.n_classes, known, n_items, n_workers, weights)
        self._fit(data, init)
        self._finish(data)
        return self

    def _fit(self, data: Answers, init: Init | None) -> None:
        if self.prior <= 0:
            raise ValueError(f"prior must be > 0, got {self.prior}")
        n_classes, n_workers = data.n_classes, data.n_workers
        flat = data.items * n_classes + data.labels
        shares = vote_shares(data)
        clamp(shares, data)
        log_prior = class_log_prior(shares[data.has_info].sum(axis=0))
        skills = pooled = None
        if self.skills is not None:
            skills = _check_skills(self.skills, n_workers, "skills")
            pooled = float(skills.mean()) if skills.size else 0.5
        elif init is not None:
            skills, pooled = _skills_from_init(init, n_workers, type(self))

        def weighted_scores(weights: ndarray) -> ndarray:
            scores = np.bincount(flat, weights=weights[data.workers] * data.weights, minlength=data.n_items * n_classes).reshape(
                data.n_items, n_classes
            )
            return scores + log_prior

        def agreement_skills(hard: ndarray) -> tuple[ndarray, float]:
            answer_truth = hard[data.items]
            agree = np.bincount(data.workers, weights=(answer_truth == data.labels) * data.weights, minlength=n_workers)
            judged = np.bincount(data.workers, weights=(answer_truth >= 0) * data.weights, minlength=n_workers)
            return shrunk_accuracies(agree, judged, self.prior)

        hard = None
        if skills is None:
            if (data.n_per_item[data.known_idx] > 0).any():
                start = np.full(data.n_items, -1)
            else:
                start = tie_break_argmax(vote_counts(data), np.exp(log_prior))
            start[data.known_idx] = data.known_lab
            skills, pooled = agreement_skills(start)
        n_iter = 0
        for n_iter in range(1, max(int(self.max_iter), 1) + 1):
            scores = weighted_scores(log_odds_weights(skills, n_classes))
            new_hard = scores.argmax(axis=1)
            new_hard[data.known_idx] = data.known_lab
            if self.skills is not None or (hard is not None and np.array_equal(new_hard, hard)):
                break
            hard = new_hard
            log_prior = class_log_prior(np.bincount(hard[data.has_info], minlength=n_classes))
            skills, pooled = agreement_skills(hard)
        weights = log_odds_weights(skills, n_classes)
        posteriors = weighted_scores(weights)
        softmax_rows(posteriors)
        clamp(posteriors, data)

        eye = np.eye(n_classes)
        self.posteriors_ = posteriors
        self.skills_ = skills
        self.weights_ = weights
        self.confusions_ = one_coin_confusion(skills, n_classes)
        self.class_priors_ = np.exp(log_prior)
        self.n_iter_ = n_iter
        self._pooled_skill = pooled
        self._log_class_priors = log_prior
        self._log_confusions = weights[:, None, None] * eye
        self._prior_log_confusion = log_odds_weights(np.array(pooled), n_classes) * eye


def _check_skills(skills: ArrayLike, n_workers: int, name: str) -> ndarray:
    skills = np.asarray(skills, dtype=float).ravel()
    if skills.size != n_workers:
        raise ValueError(f"{name} must have length n_workers={n_workers}, got {skills.size}")
    if not np.all((skills >= 0) & (skills <= 1)):
        raise ValueError(f"{name} must be accuracies in [0, 1]")
    return skills


def _skills_from_init(init: Init, n_workers: int, cls: type[BaseAggregator]) -> tuple[ndarray, float]:
    """Starting accuracies and pooled accuracy from a fitted ``cls`` or ``{"skills": ...}``."""
    if isinstance(init, cls):
        init._check_fitted()
        skills, pooled = init.skills_, init._pooled_skill
    elif isinstance(init, dict) and "skills" in init:
        skills = np.asarray(init["skills"], dtype=float).ravel()
        pooled = float(skills.mean()) if skills.size else 0.5
    else:
        raise ValueError(f"init must be a fitted {cls.__name__} or a dict with 'skills'")
    if not np.all((skills >= 0) & (skills <= 1)):
        raise ValueError("init skills must be accuracies in [0, 1]")
    return resize_workers(np.asarray(skills, dtype=float), n_workers, pooled), pooled
