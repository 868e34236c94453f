import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits

from ml.active import select
from ml.cluster import fit_clusters, knn_graph
from ml.features import ImageFeatures
from ml.propagation import (
    PseudoLabeler,
    cluster_then_label,
    knn_affinity,
    spread_labels,
)

POOL = 1400


@pytest.fixture(scope="module")
def digits_pool():
    digits = load_digits()
    X = ImageFeatures().fit_transform(digits.images[:POOL] / 16)
    return X, digits.target[:POOL]


@pytest.fixture(scope="module")
def coverage_labels(digits_pool):
    """True labels of 50 pool items chosen by coverage (one per cluster)."""
    X, truth = digits_pool
    clusters, kmeans = fit_clusters(X, 50, random_state=0)
    picked = select(50, y=np.full(POOL, -1), X=X, cluster_labels=clusters,
                    centers=kmeans.cluster_centers_, strategies="coverage", random_state=0)
    y = np.full(POOL, -1)
    y[picked.indices] = truth[picked.indices]
    return y


@pytest.fixture(scope="module")
def fitted(digits_pool, coverage_labels):
    X, _ = digits_pool
    return PseudoLabeler(precision_target=0.97, random_state=0).fit(X, coverage_labels)


def test_pseudo_labels_are_95_percent_right_on_digits_with_50_coverage_labels(
        digits_pool, coverage_labels, fitted):
    _, truth = digits_pool

    assert (coverage_labels >= 0).sum() == 50
    assert (fitted.labels_ == truth).mean() >= 0.95


def test_accepted_pseudo_labels_meet_the_precision_target_on_labels_not_used_to_fit(
        digits_pool, coverage_labels, fitted):
    _, truth = digits_pool
    hidden = coverage_labels == -1
    accepted = fitted.accepted_ & hidden

    assert accepted.sum() >= 0.3 * hidden.sum()
    assert (fitted.labels_[accepted] == truth[accepted]).mean() >= 0.97 - 0.02
    assert fitted.calibration_["expected_precision"] >= 0.97


def test_calibration_holds_with_randomly_chosen_labels(digits_pool):
    X, truth = digits_pool
    rng = np.random.default_rng(0)
    y = np.full(POOL, -1)
    known = rng.choice(POOL, size=200, replace=False)
    y[known] = truth[known]

    model = PseudoLabeler(precision_target=0.97, random_state=0).fit(X, y)

    accepted = model.accepted_ & (y == -1)
    assert accepted.sum() > 0
    assert (model.labels_[accepted] == truth[accepted]).mean() >= 0.97 - 0.02


def test_calibration_report_has_reliability_thresholds_precision_and_coverage(fitted):
    report = fitted.calibration_

    assert report["precision_target"] == 0.97
    assert report["n_records"] > 0
    assert set(report["per_class"]) == set(fitted.classes_.tolist())
    assert set(report["thresholds"]) == set(fitted.classes_.tolist())
    for row in report["reliability"]:
        assert {"confidence_low", "confidence_high", "n", "accuracy", "calibrated"} <= set(row)
    calibrated = [row["calibrated"] for row in report["reliability"]]
    assert calibrated == sorted(calibrated)
    assert 0 < report["coverage"] <= 1
    assert fitted.thresholds_.shape == (10,)


def test_a_stricter_target_accepts_fewer_pseudo_labels(digits_pool, coverage_labels, fitted):
    X, _ = digits_pool

    strict = PseudoLabeler(precision_target=0.995, random_state=0).fit(X, coverage_labels)

    assert strict.accepted_.sum() <= fitted.accepted_.sum()
    assert np.all(strict.thresholds_ >= fitted.thresholds_)


def test_labeled_items_keep_their_label_with_full_confidence(coverage_labels, fitted):
    known = coverage_labels >= 0

    np.testing.assert_array_equal(fitted.labels_[known], coverage_labels[known])
    assert np.all(fitted.confidence_[known] == 1)
    assert np.all(fitted.accepted_[known])


def test_same_input_and_random_state_give_same_pseudo_labels(digits_pool, coverage_labels):
    X, _ = digits_pool
    X = X[:600]
    y = coverage_labels[:600]

    first = PseudoLabeler(random_state=7).fit(X, y)
    second = PseudoLabeler(random_state=7).fit(X, y)

    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_array_equal(first.confidence_, second.confidence_)
    np.testing.assert_array_equal(first.accepted_, second.accepted_)
    np.testing.assert_array_equal(first.thresholds_, second.thresholds_)


def test_spreading_solves_the_label_spreading_system():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    W = knn_affinity(knn_graph(X, 5))
    B = np.zeros((80, 2))
    B[0, 0] = B[1, 1] = 1
    degree = np.asarray(W.sum(axis=1)).ravel()
    S = np.diag(degree ** -0.5) @ W.toarray() @ np.diag(degree ** -0.5)

    F, _ = spread_labels(W, B, alpha=0.9, tol=1e-10)

    np.testing.assert_allclose(F, np.linalg.solve(np.eye(80) - 0.9 * S, 0.1 * B), atol=1e-8)


def test_reordering_the_graph_for_memory_locality_changes_nothing():
    rng = np.random.default_rng(1)
    W = knn_affinity(knn_graph(rng.normal(size=(200, 4)), 6))
    B = rng.random((200, 3))

    plain, _ = spread_labels(W, B, tol=1e-10, reorder=False)
    reordered, _ = spread_labels(W, B, tol=1e-10, reorder=True)

    np.testing.assert_allclose(plain, reordered, atol=1e-8)


def test_knn_affinity_is_symmetric_without_self_loops():
    graph = sp.csr_matrix(np.array([[0, 2.0, 0], [0, 0, 1.0], [0, 3.0, 0]]))

    W = knn_affinity(graph).toarray()

    np.testing.assert_array_equal(W, [[0, 1, 0], [1, 0, 1], [0, 1, 0]])


def test_cluster_then_label_gives_each_cluster_its_seed_mass():
    clusters = np.array([0, 0, 0, 1, 1, 2])
    B = np.zeros((6, 2))
    B[0, 0] = B[1, 0] = B[2, 1] = B[3, 1] = 1

    F = cluster_then_label(clusters, B)

    np.testing.assert_array_equal(F, [[2, 1], [2, 1], [2, 1], [0, 1], [0, 1], [0, 0]])


def test_cluster_method_labels_items_by_their_cluster(digits_pool, coverage_labels):
    X, truth = digits_pool
    clusters, _ = fit_clusters(X, 50, random_state=0)

    model = PseudoLabeler(method="cluster", random_state=0).fit(
        X, coverage_labels, cluster_labels=clusters)

    assert (model.labels_ == truth).mean() > 0.85
    assert model.graph_ is None


def test_items_no_label_reaches_get_no_pseudo_label():
    X = np.vstack([np.random.default_rng(0).normal(size=(30, 2)),
                   np.random.default_rng(1).normal(size=(30, 2)) + 100])
    y = np.full(60, -1)
    y[:4] = [0, 0, 1, 1]

    model = PseudoLabeler(n_neighbors=3, random_state=0).fit(X, y)

    assert np.all(model.labels_[30:] == -1)
    assert np.all(model.confidence_[30:] == 0)
    assert not model.accepted_[30:].any()


def test_class_names_are_kept():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 8])
    y = np.full(80, -1)
    y[[0, 1, 2, 40, 41, 42]] = [3, 3, 3, 7, 7, 7]

    model = PseudoLabeler(n_neighbors=5, random_state=0).fit(X, y)

    np.testing.assert_array_equal(model.classes_, [3, 7])
    assert set(np.unique(model.labels_)) == {3, 7}
    assert (model.labels_[:40] == 3).all() and (model.labels_[40:] == 7).all()


def test_one_label_per_class_gives_labels_but_accepts_nothing():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 8])
    y = np.full(80, -1)
    y[[0, 40]] = [0, 1]

    model = PseudoLabeler(n_neighbors=5, random_state=0).fit(X, y)

    assert (model.labels_[:40] == 0).all() and (model.labels_[40:] == 1).all()
    assert model.accepted_.sum() == 2
    assert model.calibration_["n_records"] == 0


def test_sample_weight_lowers_the_pull_of_a_doubtful_label():
    X = np.arange(10, dtype=float)[:, None]
    y = np.full(10, -1)
    y[[0, 9]] = [0, 1]
    weight = np.ones(10)
    weight[9] = 0.1

    trusted = PseudoLabeler(n_neighbors=2, random_state=0).fit(X, y)
    doubtful = PseudoLabeler(n_neighbors=2, random_state=0).fit(X, y, sample_weight=weight)

    assert (doubtful.labels_ == 0).sum() >= (trusted.labels_ == 0).sum()
    assert doubtful.label_distributions_[8, 1] < trusted.label_distributions_[8, 1] + 1e-9


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.zeros((5, 2)), np.full(5, -1), "no labeled item"),
        (np.zeros((5, 2)), np.array([0, np.nan, -1, -1, -1]), "NaN"),
        (np.zeros((5, 2)), np.array([0, 1, -1]), "shape"),
        (np.zeros((5, 2)), np.array([0, -2, -1, -1, -1]), "non-negative"),
        (np.array([[0.0, np.nan]] * 5), np.array([0, 1, -1, -1, -1]), "NaN"),
        (np.zeros(5), np.array([0, 1, -1, -1, -1]), "2-D"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(X, y, message):
    with pytest.raises(ValueError, match=message):
        PseudoLabeler().fit(X, y)


@pytest.mark.parametrize(
    "params, message",
    [({"alpha": 1.0}, "alpha"), ({"precision_target": 0}, "precision_target"),
     ({"method": "magic"}, "method"), ({"cv": 1}, "cv")],
)
def test_bad_parameters_are_refused_at_fit(params, message):
    X = np.random.default_rng(0).normal(size=(10, 2))
    y = np.array([0, 1] + [-1] * 8)

    with pytest.raises(ValueError, match=message):
        PseudoLabeler(**params).fit(X, y)


def test_a_class_with_too_few_labels_accepts_no_pseudo_label():
    from sklearn.datasets import make_blobs

    X, truth = make_blobs(n_samples=600, centers=3, cluster_std=0.6, random_state=0)
    y = np.full(len(X), -1)
    for c, n in ((0, 8), (1, 8), (2, 3)):
        y[np.flatnonzero(truth == c)[:n]] = c
    strict = PseudoLabeler(min_labels_per_class=5, random_state=0).fit(X, y)
    pseudo = strict.accepted_ & (y < 0)
    assert not (pseudo & (strict.labels_ == 2)).any()
    assert (pseudo & (strict.labels_ == 0)).any()
    assert strict.calibration_["per_class"][2]["labels"] == 3
    lenient = PseudoLabeler(min_labels_per_class=1, random_state=0).fit(X, y)
    assert (lenient.accepted_ & (y < 0) & (lenient.labels_ == 2)).any()
