import numpy as np
import pytest

from ml.noise import (
    confident_joint,
    estimated_noise_rate,
    find_label_issues,
    label_quality_scores,
    per_class_thresholds,
)


def _noisy_blobs(n_per_class=200, n_classes=4, flip_share=0.05, pairs=None, seed=0):
    """Out-of-fold-like probabilities of well separated classes, and labels with flips."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(n_classes), n_per_class)
    logits = rng.normal(0, 1, (len(truth), n_classes))
    logits[np.arange(len(truth)), truth] += 5.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    given = truth.copy()
    if pairs is None:
        flipped = rng.choice(len(truth), int(flip_share * len(truth)), replace=False)
        given[flipped] = (truth[flipped] + rng.integers(1, n_classes, len(flipped))) % n_classes
    else:
        swap = dict(pairs + [(b, a) for a, b in pairs])
        candidates = np.flatnonzero(np.isin(truth, list(swap)))
        flipped = rng.choice(candidates, int(flip_share * len(truth)), replace=False)
        given[flipped] = [swap[c] for c in truth[flipped]]
    return truth, given, proba, flipped


@pytest.mark.parametrize("pairs", [None, [(0, 1)]], ids=["uniform", "structured"])
@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", "both"])
def test_synthetic_flips_are_found_with_high_precision_and_fair_recall(pairs, filter_by):
    _, given, proba, flipped = _noisy_blobs(pairs=pairs)
    suspects, _ = find_label_issues(given, proba, filter_by=filter_by)
    hits = len(set(flipped) & set(suspects))
    # Confident learning misses flips the model itself doubts (below the class's mean
    # self-confidence); what it flags is nearly always a flip.
    assert hits / len(flipped) >= 0.8
    assert hits / len(suspects) >= 0.9


def test_suggested_label_is_the_true_one_for_found_flips():
    truth, given, proba, flipped = _noisy_blobs()
    suspects, suggested = find_label_issues(given, proba)
    found = np.intersect1d(suspects, flipped)
    assert (suggested[found] == truth[found]).mean() >= 0.95


def test_clean_labels_give_almost_no_suspects():
    truth, _, proba, _ = _noisy_blobs()
    suspects, _ = find_label_issues(truth, proba)
    assert len(suspects) <= 0.01 * len(truth)


def test_suspects_come_most_suspect_first():
    _, given, proba, _ = _noisy_blobs()
    suspects, _ = find_label_issues(given, proba, rank_by="self_confidence")
    scores = label_quality_scores(given, proba, "self_confidence")[suspects]
    assert np.all(np.diff(scores) >= 0)


def test_unlabeled_and_unpredicted_items_are_never_flagged_or_scored():
    _, given, proba, flipped = _noisy_blobs()
    given[flipped[:3]] = -1
    proba[flipped[3:6]] = 0.0
    suspects, suggested = find_label_issues(given, proba)
    assert not set(flipped[:6]) & set(suspects)
    assert (suggested[flipped[:6]] == -1).all()
    assert np.isnan(label_quality_scores(given, proba)[flipped[:6]]).all()


def test_thresholds_are_mean_self_confidence_per_given_class():
    given = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.4, 0.6]])
    np.testing.assert_allclose(per_class_thresholds(given, proba), [0.7, 0.7])


def test_calibrated_joint_rows_sum_to_given_counts_and_estimate_the_noise():
    _, given, proba, flipped = _noisy_blobs(flip_share=0.1)
    joint, _ = confident_joint(given, proba)
    np.testing.assert_allclose(joint.sum(axis=1), np.bincount(given))
    assert estimated_noise_rate(given, proba) == pytest.approx(len(flipped) / len(given), abs=0.03)


def test_normalized_margin_is_one_half_at_a_tie():
    scores = label_quality_scores([0], [[0.5, 0.5]], "normalized_margin")
    assert scores[0] == pytest.approx(0.5)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="one row per label"):
        find_label_issues([0, 1], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="outside"):
        find_label_issues([0, 3], [[0.5, 0.5], [0.5, 0.5]])
