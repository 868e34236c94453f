"""Dawid-Skene EM: full confusion matrix per worker, and the one-coin variant.

Both run the same vectorised EM over the sparse (item, worker, label) triples, in log
space, starting from the vote shares. Known items are clamped to one-hot posteriors in
every E-step; when some were answered, the first M-step uses them alone, so worker
parameters start from what gold says and a colluding group that outvotes the honest
workers cannot set the starting point. Workers with few answers are kept sane by
Dirichlet/Beta priors whose means are pooled over the crowd (empirical Bayes):

- a worker's accuracy is shrunk toward the pooled accuracy of the crowd;
- (full DS) each confusion row is shrunk toward a prior row: the worker's accuracy on
  the diagonal; off it, the crowd's pattern of mistakes for the share of answers the
  worker is trying and uniform guessing for the rest (the trying share is
  ``(accuracy - 1/K) / (1 - 1/K)``, so a spammer's prior row is uniform). The crowd's
  pattern is pooled over workers weighted by that share. With few answers per worker
  DS thus degrades to "one accuracy per worker, mistakes as the crowd makes them"
  instead of over-fitting ``K*(K-1)`` cells;
- class priors get one pseudo-count per class.

A worker unseen during ``fit`` gets the prior: pooled accuracy and pooled mistakes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy import ndarray
from scipy import sparse
from scipy.special import expit, logit, logsumexp

from ._base import (
    BaseAggregator,
    Params,
    clamp,
    class_log_prior,
    one_coin_confusion,
    resize_workers,
    shrunk_accuracies,
    softmax_rows,
    vote_shares,
)

if TYPE_CHECKING:

    from ._base import Answers, Init

logger = logging.getLogger(__name__)

#: Pseudo-answers pulling a worker's accuracy toward the pooled accuracy of the crowd.
SKILL_PRIOR = 2.0
#: Default strength of the confusion-row prior, in pseudo-answers per class of the row.
ROW_PRIOR_PER_CLASS = 5.0


def _trying(skills: ndarray, n_classes: int) -> ndarray:
    """Share of a worker's answers that are attempts rather than uniform guesses."""
    chance = 1.0 / n_classes
    return np.clip((skills - chance) / (1.0 - chance), 0.0, 1.0)


def _prior_rows(skills: ndarray, mistakes: ndarray) -> ndarray:
    """Prior mean of each worker's confusion matrix, shape ``(n_workers, K, K)``.

    Accuracy on the diagonal; mistakes follow the crowd's pattern ``mistakes`` in the
    share of answers the worker is trying, and are uniform in the share they guess.
    """
    n_classes = mistakes.shape[0]
    eye = np.eye(n_classes)
    trying = _trying(skills, n_classes)[:, None, None]
    spread = trying * mistakes + (1.0 - trying) * (1.0 - eye) / (n_classes - 1)
    return (1.0 - skills)[:, None, None] * spread + skills[:, None, None] * eye


def _log_normalised(priors: ndarray) -> ndarray:
    priors = np.clip(np.asarray(priors, dtype=float).ravel(), 1e-12, None)
    return np.log(priors / priors.sum())


class _EMAggregator(BaseAggregator):
    """EM loop shared by :class:`DawidSkene` and :class:`OneCoinDawidSkene`.

    Both E-steps are one sparse product: ``by_item`` (items x (worker, label) cells,
    plus a last column for the class prior) times the log-confusions arranged as
    ``(worker, label) x true class``. Both M-steps start from the transpose product,
    the expected counts ``counts[w, k, l]`` and, in its last row, the class totals.
    Subclasses provide ``_m_step(counts, class_totals) -> params``,
    ``_log_params(params) -> (log_confusions, log_class_priors)``,
    ``_pack(params) -> vector`` and ``_unpack(vector, like) -> params`` (unconstrained
    log-parameters, for the extrapolation), ``_params_from_init(init, data)`` and
    ``_store(params)``.
    """

    def __init__(
        self,
        n_classes: int,
        max_iter: int = 100,
        tol: float = 1e-6,
        prior: float | None = None,
    ) -> None:
        self.n_classes = n_classes
        self.max_iter = max_iter
        self.tol = tol
        self.prior = prior

    def _check_params(self) -> None:
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if not self.tol >= 0:
            raise ValueError(f"tol must be >= 0, got {self.tol}")
        if self.prior is not None and not self.prior > 0:
            raise ValueError(f"prior must be None or > 0, got {self.prior}")

    def _prepare(self, data: Answers) -> dict[str, Any]:
        n_classes, n_cells = data.n_classes, data.n_workers * data.n_classes
        informative = np.flatnonzero(data.has_info)
        rows = np.concatenate([data.items, informative])
        columns = np.concatenate([data.workers * n_classes + data.labels, np.full(informative.size, n_cells)])
        values = np.concatenate([data.weights, np.ones(informative.size)])
        by_item = sparse.csr_matrix((values, (rows, columns)), shape=(data.n_items, n_cells + 1))
        # The transpose is a CSC view: the M-step then streams the posteriors item by item.
        return {
            "data": data,
            "by_item": by_item,
            "by_column": by_item.T,
            "buffer": np.empty((data.n_items, n_classes)),
        }

    def _sufficient_stats(self, state: dict[str, Any], posteriors: ndarray) -> tuple[ndarray, ndarray]:
        """Expected counts ``(n_workers, K true, K answered)`` and class totals ``(K,)``."""
        data = state["data"]
        n_classes = data.n_classes
        stacked = np.asarray(state["by_column"] @ posteriors)
        counts = stacked[:-1].reshape(data.n_workers, n_classes, n_classes).transpose(0, 2, 1)
        return counts, stacked[-1]

    def _posteriors(self, state: dict[str, Any], params: Params) -> tuple[ndarray, float]:
        """E-step: clamped posteriors and the log-likelihood of answers and known labels."""
        data = state["data"]
        log_conf, log_prior = self._log_params(params)
        by_label = np.ascontiguousarray(log_conf.transpose(0, 2, 1)).reshape(-1, data.n_classes)
        scores = np.asarray(state["by_item"] @ np.vstack([by_label, log_prior]))
        known_part = scores[data.known_idx, data.known_lab].sum()
        log_norm = softmax_rows(scores)
        log_lik = log_norm.sum() - log_norm[data.known_idx].sum() + known_part
        clamp(scores, data)
        return scores, log_lik

    def _fit(self, data: Answers, init: Init | None) -> None:
        self._check_params()
        state = self._prepare(data)
        if init is not None:
            params = self._params_from_init(init, data)
        else:
            if (data.n_per_item[data.known_idx] > 0).any():
                # Trust known items first: worker parameters start from them alone, so a
                # colluding group that outvotes honest workers cannot set the start.
                posteriors = np.zeros((data.n_items, data.n_classes))
            else:
                posteriors = vote_shares(data)
            clamp(posteriors, data)
            params = self._m_step(*self._sufficient_stats(state, posteriors))
        params, posteriors, log_lik, n_iter, change = self._run_em(state, params)
        if change > self.tol:
            logger.warning(
                "%s did not converge in %d iterations (largest posterior change %.3g > tol %.3g)",
                type(self).__name__,
                n_iter,
                change,
                self.tol,
            )
        self.posteriors_ = posteriors
        self.n_iter_ = n_iter
        self.log_likelihood_ = log_lik
        self._store(params)

    def _run_em(self, state: dict[str, Any], params: Params) -> tuple[Params, ndarray, float, int, float]:
        """EM accelerated with SQUAREM (Varadhan & Roland, 2008).

        Each cycle takes two plain EM steps from ``params``, extrapolates along them in
        the unconstrained log-parameters, and takes one EM step from the extrapolated
        point. The jump is kept only when its fixed-point residual (how far that EM step
        moves it) is smaller than at the cycle's start, else the plain two-step result
        is kept: the priors pooled over the crowd make the map a fixed-point iteration
        rather than a pure likelihood ascent, so the residual, not the likelihood, is
        the safeguard. The step length is capped, starting at plain EM and growing
        fourfold each time the cap binds (the adaptive cap of the reference
        implementation). Stops once an E-step moves no posterior by more than ``tol``,
        and returns the parameters of that E-step with its posteriors, so the two are
        consistent.

        Returns
        -------
        params, posteriors, log_lik, n_iter (E-steps run), last posterior change
        """
        budget = int(self.max_iter)
        n_iter = 0
        previous = None
        change = np.inf
        step_max = 1.0

        def step(params: Params) -> tuple[ndarray, float]:
            nonlocal n_iter, previous, change
            posteriors, log_lik = self._posteriors(state, params)
            n_iter += 1
            if previous is not None and posteriors.size:
                buffer = state["buffer"]
                np.subtract(posteriors, previous, out=buffer)
                np.abs(buffer, out=buffer)
                change = float(buffer.max())
            elif previous is not None:
                change = 0.0
            previous = posteriors
            logger.debug(
                "%s E-step %d: log-likelihood %.6f, change %.3g",
                self.method_name,
                n_iter,
                log_lik,
                change,
            )
            return posteriors, log_lik

        while True:
            posteriors, log_lik = step(params)
            if change <= self.tol or n_iter >= budget:
                return params, posteriors, log_lik, n_iter, change
            first = self._m_step(*self._sufficient_stats(state, posteriors))
            first_posteriors, first_log_lik = step(first)
            if change <= self.tol or n_iter >= budget:
                return first, first_posteriors, first_log_lik, n_iter, change
            second = self._m_step(*self._sufficient_stats(state, first_posteriors))

            origin = self._pack(params)
            r = self._pack(first) - origin
            v = self._pack(second) - origin - 2.0 * r
            v_norm = float(np.einsum("i,i->", v, v))
            ratio = np.sqrt(float(np.einsum("i,i->", r, r)) / v_norm) if v_norm > 0 else 1.0
            length = min(max(ratio, 1.0), step_max)
            at_cap = length == step_max
            params = second
            if length > 1.0:
                jump = self._unpack(origin + 2.0 * length * r + length**2 * v, second)
                jump_posteriors, jump_log_lik = step(jump)
                landed = self._m_step(*self._sufficient_stats(state, jump_posteriors))
                residual = self._pack(landed) - self._pack(jump)
                accepted = bool(
                    np.isfinite(jump_log_lik) and np.einsum("i,i->", residual, residual) < np.einsum("i,i->", r, r)
                )
                if n_iter >= budget:
                    if accepted:
                        return jump, jump_posteriors, jump_log_lik, n_iter, change
                    return first, first_posteriors, first_log_lik, n_iter, change
                if accepted:
                    params = landed
                else:
                    previous = first_posteriors
                    if at_cap:
                        step_max = max(1.0, step_max / 4.0)
                    at_cap = False
            if at_cap:
                step_max *= 4.0


class DawidSkene(_EMAggregator):
    """Dawid-Skene truth inference: one full confusion matrix per worker.

    Starts from the known items when some were answered, else from the vote shares,
    then runs SQUAREM-accelerated EM until no posterior moves by more than ``tol``.
    Each EM step is two sparse products over the answers, so the cost is linear in the
    number of answers.

    Parameters
    ----------
    n_classes : int
        Number of classes.
    max_iter : int, default=100
        Maximum number of E-steps.
    tol : float, default=1e-6
        Stop when an E-step changes no posterior by more than ``tol``.
    prior : float, optional
        Strength, in pseudo-answers, of the Dirichlet prior on each confusion row (toward
        the worker's accuracy on the diagonal and the crowd's pattern of mistakes off
        it). Defaults to ``5 * n_classes``: a row needs that many answers before its own
        counts weigh as much as the prior. Each worker's accuracy is itself shrunk toward
        the pooled accuracy with 2 pseudo-answers.

    Attributes
    ----------
    posteriors_ : ndarray of shape (n_items, n_classes)
        Rows sum to 1; known items are one-hot; items with no answers get the class prior.
    labels_ : ndarray of shape (n_items,)
        Argmax of ``posteriors_``; ``-1`` for items with no answers that are not known.
    confidence_ : ndarray of shape (n_items,)
    n_answers_ : ndarray of shape (n_items,)
    skills_ : ndarray of shape (n_workers,)
        Expected accuracy, ``sum_k class_priors_[k] * confusions_[w, k, k]``.
    confusions_ : ndarray of shape (n_workers, n_classes, n_classes)
        ``confusions_[w, k, l]`` = P(worker w answers l | true class k).
    class_priors_ : ndarray of shape (n_classes,)
    n_iter_ : int
        E-steps run.
    log_likelihood_ : float
        Log-likelihood of the answers and known labels at the fitted parameters.
    method_ : str
        ``"dawid_skene"``.
    """

    method_name = "dawid_skene"

    def _m_step(self, counts: ndarray, class_totals: ndarray) -> tuple[ndarray, ndarray, ndarray]:
        n_classes = counts.shape[1]
        eye = np.eye(n_classes, dtype=bool)
        row_totals = counts.sum(axis=2)
        correct = counts[:, eye].sum(axis=1)
        skills, pooled = shrunk_accuracies(correct, row_totals.sum(axis=1), SKILL_PRIOR)

        trying = _trying(skills, n_classes)
        mistakes = np.einsum("w,wkl->kl", trying, counts) + 1.0
        mistakes[eye] = 0.0
        mistakes /= mistakes.sum(axis=1, keepdims=True)
        strength = ROW_PRIOR_PER_CLASS * n_classes if self.prior is None else float(self.prior)
        denominator = (row_totals + strength)[:, :, None]
        conf = (counts + strength * _prior_rows(skills, mistakes)) / denominator
        prior_conf = _prior_rows(np.array([pooled]), mistakes)[0]
        return np.log(conf), class_log_prior(class_totals), np.log(prior_conf)

    def _log_params(self, params: Params) -> tuple[ndarray, ndarray]:
        return params[0], params[1]

    def _pack(self, params: Params) -> ndarray:
        return np.concatenate([params[0].ravel(), params[1]])

    def _unpack(self, vector: ndarray, like: Params) -> tuple[ndarray, ndarray, ndarray]:
        size = like[0].size
        log_conf = vector[:size].reshape(like[0].shape)
        log_conf = log_conf - logsumexp(log_conf, axis=2, keepdims=True)
        return log_conf, vector[size:] - logsumexp(vector[size:]), like[2]

    def _params_from_init(self, init: Init, data: Answers) -> tuple[ndarray, ndarray, ndarray]:
        n_classes = data.n_classes
        if isinstance(init, DawidSkene):
            init._check_fitted()
            conf, priors = init.confusions_, init.class_priors_
            prior_conf = np.exp(init._prior_log_confusion)
        elif isinstance(init, dict) and "confusions" in init:
            conf = np.asarray(init["confusions"], dtype=float)
            priors = np.asarray(init.get("class_priors", np.full(n_classes, 1.0 / n_classes)))
            prior_conf = conf.mean(axis=0) if conf.ndim == 3 and conf.shape[0] else None
        else:
            raise ValueError("init must be a fitted DawidSkene or a dict with 'confusions'")
        if conf.ndim != 3 or conf.shape[1:] != (n_classes, n_classes):
            raise ValueError(f"init confusions must have shape (n_workers, {n_classes}, {n_classes}), got {conf.shape}")
        if prior_conf is None:
            prior_conf = np.full((n_classes, n_classes), 1.0 / n_classes)
        conf = np.clip(resize_workers(conf, data.n_workers, prior_conf), 1e-12, None)
        conf /= conf.sum(axis=2, keepdims=True)
        return np.log(conf), _log_normalised(priors), np.log(prior_conf)

    def _store(self, params: Params) -> None:
        log_conf, log_prior, prior_log_conf = params
        self._log_confusions = log_conf
        self._prior_log_confusion = prior_log_conf
        self._log_class_priors = log_prior
        self.class_priors_ = np.exp(log_prior)
        self.confusions_ = np.exp(log_conf)
        diag = np.arange(log_prior.size)
        self.skills_ = np.einsum("wk,k->w", self.confusions_[:, diag, diag], self.class_priors_)


class OneCoinDawidSkene(_EMAggregator):
    """One-coin Dawid-Skene: one accuracy per worker, mistakes spread evenly.

    A worker with accuracy ``p`` answers the true class with probability ``p`` and each
    other class with ``(1-p)/(K-1)``. Needs far fewer answers per worker than full
    :class:`DawidSkene`; same accelerated EM, same stopping rule.

    Parameters
    ----------
    n_classes : int
        Number of classes.
    max_iter : int, default=100
        Maximum number of E-steps.
    tol : float, default=1e-6
        Stop when an E-step changes no posterior by more than ``tol``.
    prior : float, optional
        Strength, in pseudo-answers, of the Beta prior pulling each worker's accuracy
        toward the pooled accuracy of the crowd. Defaults to 2.

    Attributes
    ----------
    skills_ : ndarray of shape (n_workers,)
        Estimated accuracies.
    confusions_ : ndarray of shape (n_workers, n_classes, n_classes)
        One-coin matrices derived from ``skills_``.
        Other attributes as in :class:`DawidSkene`; ``method_`` is ``"one_coin"``.
    """

    method_name = "one_coin"

    def _m_step(self, counts: ndarray, class_totals: ndarray) -> tuple[ndarray, ndarray, float]:
        correct = np.einsum("wkk->w", counts)
        judged = counts.sum(axis=(1, 2))
        strength = SKILL_PRIOR if self.prior is None else float(self.prior)
        skills, pooled = shrunk_accuracies(correct, judged, strength)
        return skills, class_log_prior(class_totals), pooled

    def _log_params(self, params: Params) -> tuple[ndarray, ndarray]:
        return np.log(one_coin_confusion(params[0], params[1].size)), params[1]

    def _pack(self, params: Params) -> ndarray:
        return np.concatenate([logit(params[0]), params[1]])

    def _unpack(self, vector: ndarray, like: Params) -> tuple[ndarray, ndarray, float]:
        size = like[0].size
        skills = np.clip(expit(vector[:size]), 1e-9, 1 - 1e-9)
        return skills, vector[size:] - logsumexp(vector[size:]), like[2]

    def _params_from_init(self, init: Init, data: Answers) -> Params:
        if isinstance(init, OneCoinDawidSkene):
            init._check_fitted()
            skills, priors, pooled = init.skills_, init.class_priors_, init._pooled_skill
        elif isinstance(init, dict) and "skills" in init:
            skills = np.asarray(init["skills"], dtype=float).ravel()
            priors = init.get("class_priors", np.full(data.n_classes, 1.0 / data.n_classes))
            pooled = float(skills.mean()) if skills.size else 0.5
        else:
            raise ValueError("init must be a fitted OneCoinDawidSkene or a dict with 'skills'")
        if not np.all((skills >= 0) & (skills <= 1)):
            raise ValueError("init skills must be accuracies in [0, 1]")
        skills = resize_workers(np.asarray(skills, dtype=float), data.n_workers, pooled)
        return np.clip(skills, 1e-6, 1 - 1e-6), _log_normalised(priors), pooled

    def _store(self, params: Params) -> None:
        skills, log_prior, pooled = params
        n_classes = log_prior.size
        self.skills_ = skills
        self.class_priors_ = np.exp(log_prior)
        self.confusions_ = one_coin_confusion(skills, n_classes)
        self._pooled_skill = pooled
        self._log_class_priors = log_prior
        self._log_confusions = np.log(self.confusions_)
        self._prior_log_confusion = np.log(one_coin_confusion(np.array(pooled), n_classes))
