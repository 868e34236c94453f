import numpy as np
import pytest
from sklearn.datasets import load_digits

from ml.model_selection import CandidateSelector, stratified_folds, wilson_interval


def digits_with_labels(per_class, seed=0):
    X, y = load_digits(return_X_y=True)
    X = X[:600] / 16.0
    y = y[:600]
    rng = np.random.default_rng(seed)
    partial = np.full(len(y), -1)
    for c in range(10):
        rows = rng.choice(np.flatnonzero(y == c), size=per_class, replace=False)
        partial[rows] = c
    return X, y, partial


def test_the_wilson_interval_is_wide_for_ten_items_and_narrow_for_a_thousand():
    low, high = wilson_interval(10, 10)
    assert low < 0.75 and high == 1.0
    low, high = wilson_interval(900, 1000)
    assert 0.875 < low < 0.9 < high < 0.92
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_folds_hold_out_every_class_but_never_a_single_label():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, -1, -1])
    folds = stratified_folds(y, 2, random_state=0)
    assert folds[8] == -1 and (folds[9:] == -1).all()
    for f in (0, 1):
        assert set(y[folds == f]) == {0, 1}


def test_candidates_are_scored_on_the_same_out_of_fold_items():
    X, y, partial = digits_with_labels(5)
    selector = CandidateSelector(random_state=0).fit(X, partial, n_classes=10)
    assert {score.n for score in selector.scores_.values()} == {50}
    best = selector.scores_[selector.best_]
    assert best.correct == max(score.correct for score in selector.scores_.values())
    held = selector.oof_ >= 0
    assert held.sum() == 50 and (selector.oof_[held] == partial[held]).sum() == best.correct


def test_with_five_labels_per_class_the_pool_is_labeled_far_above_chance():
    X, y, partial = digits_with_labels(5)
    selector = CandidateSelector(random_state=0).fit(X, partial, n_classes=10)
    unlabeled = partial < 0
    assert (selector.predict()[unlabeled] == y[unlabeled]).mean() > 0.85
    assert np.allclose(selector.proba_.sum(axis=1), 1.0)
    assert (selector.predict()[~unlabeled] == partial[~unlabeled]).all()


def test_the_winner_depends_on_the_data_not_on_a_fixed_preference():
    """Two classes told apart by one feature and confused by many noisy ones: a linear
    model finds the feature, neighbours drown in the noise."""
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    X = np.column_stack([y * 6.0 + rng.normal(0, 0.5, n), rng.normal(0, 3.0, (n, 40))])
    partial = np.full(n, -1)
    partial[:60] = y[:60]
    selector = CandidateSelector(random_state=0).fit(X, partial, n_classes=2)
    assert selector.best_ == "logreg"
    assert selector.scores_["logreg"].accuracy > selector.scores_["knn"].accuracy


def test_one_labeled_class_is_refused():
    with pytest.raises(ValueError, match="two classes"):
        CandidateSelector().fit(np.zeros((4, 2)), np.array([0, 0, -1, -1]))
