"""Choosing an aggregation method per project, and building one by name."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy import ndarray

from ._base import BaseAggregator, check_answers
from ._dawid_skene import DawidSkene, OneCoinDawidSkene
from ._voting import MajorityVote, WeightedMajorityVote

if TYPE_CHECKING:

    from typing import Self

    from numpy.typing import ArrayLike

    from ._base import Answers, Init

logger = logging.getLogger(__name__)

METHODS: dict[str, type[BaseAggregator]] = {
    "majority": MajorityVote,
    "weighted_majority": WeightedMajorityVote,
    "dawid_skene": DawidSkene,
    "one_coin": OneCoinDawidSkene,
}

#: Median answers per worker, in units of n_classes**2, below which one-coin is chosen
#: outright, and at or above which full Dawid-Skene is.
ONE_COIN_RATIO = 0.25
DS_RATIO = 2.0
#: Answered known items needed (at least, and at least n_classes) for the held-out test.
MIN_HELD_OUT = 20


def choose_method(answers: ArrayLike, n_classes: int, known: ArrayLike | None = None) -> str:
    """Pick ``"dawid_skene"``, ``"one_coin"`` or ``"majority"`` for a project's answers.

    A full confusion matrix has ``K*(K-1)`` free parameters per worker, a one-coin
    worker one. With ``r`` = median answers per worker / ``K**2`` (answers per
    confusion cell of a typical worker):

    - no answers: ``"majority"`` (nothing to estimate);
    - ``r < 0.25``: ``"one_coin"``; a confusion row of a typical worker sees fewer than
      ``K/4`` answers;
    - ``r >= 2``: ``"dawid_skene"``; every row sees a few answers per cell;
    - in between, when at least ``max(20, K)`` known items have answers: both models
      are fitted twice, each time with half of those known items hidden (a fixed,
      deterministic split), and the one giving the hidden known labels the higher
      log-likelihood wins, Dawid-Skene on ties;
    - in between without enough known items: ``"dawid_skene"``. Its prior shrinks each
      confusion row toward the worker's accuracy plus the crowd's pattern of mistakes,
      so with few answers it falls back to nearly one-coin. In simulations with 10
      classes and ``0.25 <= r < 2`` it was never more than ~0.4 pp less accurate than
      one-coin when every worker's mistakes were uniform, and 0.5-1.2 pp more accurate
      when mistakes followed a pattern shared by the crowd.

    Parameters
    ----------
    answers : array-like of int, shape (n_answers, 3)
        Columns ``item``, ``worker``, ``label``.
    n_classes : int
    known : array-like of int, shape (n_items,), optional
        Clamped label per item or ``-1``.

    Returns
    -------
    str
    """
    data = check_answers(answers, n_classes, known)
    if data.n_answers == 0:
        return "majority"
    per_worker = np.bincount(data.workers)
    ratio = float(np.median(per_worker[per_worker > 0])) / data.n_classes**2
    judged = data.known_idx[data.n_per_item[data.known_idx] > 0]
    if ratio < ONE_COIN_RATIO:
        choice, why = "one_coin", "few answers per worker"
    elif ratio >= DS_RATIO:
        choice, why = "dawid_skene", "many answers per worker"
    elif judged.size >= max(MIN_HELD_OUT, data.n_classes):
        choice, why = _held_out_choice(data, judged), "held-out likelihood of known items"
    else:
        choice, why = "dawid_skene", "too few known items to compare"
    logger.info(
        "choose_method: %s (median answers per worker / K^2 = %.2f; %s)", choice, ratio, why
    )
    return choice


def _held_out_choice(data: Answers, judged: ndarray) -> str:
    answers = np.column_stack([data.items, data.workers, data.labels])
    scores = {"dawid_skene": 0.0, "one_coin": 0.0}
    for fold in range(2):
        hidden = judged[fold::2]
        known = data.known.copy()
        known[hidden] = -1
        truth = data.known[hidden]
        for name in scores:
            model = METHODS[name](data.n_classes, tol=1e-4).fit(
                answers, known=known, n_items=data.n_items, n_workers=data.n_workers
            )
            scores[name] += np.log(np.maximum(model.posteriors_[hidden, truth], 1e-12)).sum()
    logger.debug("held-out log-likelihood of known labels: %s", scores)
    return "dawid_skene" if scores["dawid_skene"] >= scores["one_coin"] else "one_coin"


class AutoAggregator(BaseAggregator):
    """Chooses a method with :func:`choose_method` at ``fit`` time and delegates to it.

    Parameters are passed to the chosen EM estimator (majority vote takes none).
    ``init`` is used only when it was fitted with the same method.

    Attributes
    ----------
    estimator_ : BaseAggregator
        The fitted estimator; its fitted attributes are copied onto this one, and
        ``method_`` names the method chosen.
    """

    method_name = "auto"

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

    def fit(
        self,
        answers: ArrayLike,
        known: ArrayLike | None = None,
        n_items: int | None = None,
        n_workers: int | None = None,
        init: Init | None = None,
        weights: ArrayLike | None = None,
    ) -> Self:
        """Choose a method from the data, then fit it; see :meth:`BaseAggregator.fit`."""
        answers = np.asarray(answers)
        check_answers(answers, self.n_classes, known, n_items, n_workers, weights)
        method = choose_method(answers, self.n_classes, known)
        kwargs = (
            {}
            if method == "majority"
            else {
                "max_iter": self.max_iter,
                "tol": self.tol,
                "prior": self.prior,
            }
        )
        if isinstance(init, AutoAggregator):
            init = getattr(init, "estimator_", None)
        if init is not None and getattr(init, "method_", None) != method:
            init = None
        self.estimator_ = make_aggregator(method, self.n_classes, **kwargs).fit(
            answers, known=known, n_items=n_items, n_workers=n_workers, init=init, weights=weights
        )
        for name, value in vars(self.estimator_).items():
            if name.endswith("_") and not name.startswith("__"):
                setattr(self, name, value)
        return self

    def update_item(
        self, item_answers_workers: ArrayLike, item_answers_labels: ArrayLike, known_label: int = -1
    ) -> ndarray:
        """Posterior of one item under the chosen estimator (see ``BaseAggregator.update_item``)."""
        self._check_fitted()
        return self.estimator_.update_item(item_answers_workers, item_answers_labels, known_label)


def make_aggregator(method: str, n_classes: int, **kw: Any) -> BaseAggregator:
    """Build an unfitted aggregator by name.

    Parameters
    ----------
    method : {"majority", "weighted_majority", "dawid_skene", "one_coin", "auto"}
    n_classes : int
    **kw
        Constructor parameters of that estimator (``"auto"`` takes those of
        :class:`DawidSkene`).

    Returns
    -------
    BaseAggregator
    """
    if method == "auto":
        return AutoAggregator(n_classes, **kw)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted([*METHODS, 'auto'])}")
    return METHODS[method](n_classes, **kw)
