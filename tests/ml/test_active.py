import numpy as np
import pytest

from ml.active import STRATEGIES, select


def grid_clusters(per_cluster=20, n_clusters=6, seed=0):
    """Well-separated clusters on a line, with their ids."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    X = np.column_stack([labels * 10.0, np.zeros(len(labels))])
    X += rng.normal(scale=1.0, size=X.shape)
    return X, labels


def test_uncovered_clusters_come_before_any_uncertain_item():
    X, clusters = grid_clusters()
    y = np.full(len(X), -1)
    y[clusters == 0] = 0
    y[np.flatnonzero(clusters == 3)[0]] = 1
    proba = np.full((len(X), 2), 0.5)

    selection = select(10, y=y, X=X, cluster_labels=clusters, proba=proba,
                       strategies=("coverage", "margin"), random_state=0)

    first = clusters[selection.indices[:4]]
    assert sorted(first) == [1, 2, 4, 5]
    assert all(score > 1 for score in selection.scores[:4])
    assert all(score <= 1 for score in selection.scores[4:])
    assert selection.reasons[0].startswith("uncovered cluster")
    assert selection.reasons[5].startswith("margin")


def test_coverage_picks_the_member_nearest_each_centroid():
    X, clusters = grid_clusters()
    y = np.full(len(X), -1)

    selection = select(6, y=y, X=X, cluster_labels=clusters, strategies="coverage",
                       random_state=0)

    for i in selection.indices:
        members = np.flatnonzero(clusters == clusters[i])
        centre = X[members].mean(axis=0)
        assert i == members[np.linalg.norm(X[members] - centre, axis=1).argmin()]
    assert sorted(clusters[selection.indices]) == list(range(6))


def test_first_coverage_picks_spread_over_the_data():
    X, clusters = grid_clusters(n_clusters=9)
    y = np.full(len(X), -1)

    selection = select(3, y=y, X=X, cluster_labels=clusters, strategies="coverage",
                       random_state=0)

    assert sorted(clusters[selection.indices]) == [1, 4, 7]


def test_items_handed_out_already_cover_their_cluster():
    X, clusters = grid_clusters()
    y = np.full(len(X), -1)
    pending = np.flatnonzero(clusters == 2)[:1]

    selection = select(6, y=y, X=X, cluster_labels=clusters, strategies="coverage",
                       exclude=pending, random_state=0)

    covered = clusters[selection.indices[selection.scores > 1]]
    assert 2 not in covered and len(covered) == 5
    assert pending[0] not in selection.indices


def test_labeled_items_are_never_selected():
    y = np.array([0, -1, 1, -1, -1])
    proba = np.array([[0.5, 0.5]] * 5)

    selection = select(5, y=y, proba=proba, strategies="margin", random_state=0)

    assert sorted(selection.indices) == [1, 3, 4]


def test_margin_puts_close_calls_first_and_says_so():
    y = np.full(4, -1)
    proba = np.array([[0.9, 0.1], [0.52, 0.48], [0.7, 0.3], [0.5, 0.5]])

    selection = select(4, y=y, proba=proba, strategies="margin", random_state=0)

    np.testing.assert_array_equal(selection.indices, [3, 1, 2, 0])
    assert selection.reasons[1] == "margin 0.04"


def test_entropy_is_highest_for_the_flattest_distribution():
    y = np.full(3, -1)
    proba = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.4, 0.0]])

    selection = select(3, y=y, proba=proba, strategies="entropy", random_state=0)

    np.testing.assert_array_equal(selection.indices, [1, 2, 0])
    assert selection.scores[0] == pytest.approx(1.0)


def test_disagreement_names_both_answers():
    y = np.full(3, -1)
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    model = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5]])

    selection = select(3, y=y, proba=proba, model_proba=model, strategies="disagreement",
                       classes=np.array(["cat", "dog"]), random_state=0)

    assert selection.indices[0] == 1
    assert selection.reasons[0] == "propagation says dog, model says cat"
    assert selection.reasons[1] == "disagreement 0.10"


def test_max_per_cluster_spreads_uncertain_picks():
    X, clusters = grid_clusters(per_cluster=10, n_clusters=3)
    y = np.zeros(len(X), dtype=int)
    y[clusters == 0] = -1
    y[np.flatnonzero(clusters == 1)[:5]] = -1
    proba = np.tile([0.5, 0.5], (len(X), 1))
    proba[clusters == 1] = [0.6, 0.4]

    selection = select(4, y=y, proba=proba, cluster_labels=clusters, strategies="margin",
                       max_per_cluster=2, random_state=0)

    assert sorted(clusters[selection.indices]) == [0, 0, 1, 1]


def test_same_random_state_gives_same_selection():
    X, clusters = grid_clusters()
    y = np.full(len(X), -1)
    proba = np.full((len(X), 2), 0.5)

    def run(seed):
        return select(12, y=y, X=X, cluster_labels=clusters, proba=proba, random_state=seed)

    np.testing.assert_array_equal(run(4).indices, run(4).indices)
    assert run(4).reasons == run(4).reasons


def test_strategies_are_registered_by_name():
    assert {"coverage", "margin", "entropy", "disagreement"} <= set(STRATEGIES)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strategies": ("nope",)}, "unknown strategies"),
        ({"strategies": ("margin",)}, "needs proba"),
        ({"strategies": ("coverage",)}, "needs X"),
        ({"strategies": ("margin",), "proba": np.full((3, 2), np.nan)}, "NaN"),
        ({"strategies": ("margin",), "proba": np.ones((2, 2))}, "shape"),
    ],
)
def test_select_rejects_bad_requests(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select(2, y=np.full(3, -1), **kwargs)


def test_select_rejects_nan_labels():
    with pytest.raises(ValueError, match="NaN"):
        select(1, y=np.array([np.nan, -1.0]), proba=np.ones((2, 2)), strategies="margin")
