import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.neighbors import kneighbors_graph

from ml.cluster import (
    fit_clusters,
    graph_recall,
    knn_graph,
    nearest_to_centroids,
    project_2d,
    reduce_dimensions,
)


def blobs(n=600, dim=8, centers=5, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(centers, dim))
    labels = rng.integers(0, centers, size=n)
    return means[labels] + rng.normal(scale=spread, size=(n, dim)), labels


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocked_exact_knn_graph_equals_brute_force(dtype):
    X = np.random.default_rng(1).normal(size=(257, 6)).astype(dtype)

    graph = knn_graph(X, 5, method="exact", max_block_bytes=40 * 257 * 8)
    expected = kneighbors_graph(X.astype(np.float64), 5, mode="distance")

    assert sp.issparse(graph) and graph.shape == (257, 257)
    assert (graph != 0).nnz == expected.nnz
    np.testing.assert_array_equal(graph.indices.reshape(257, 5) * 0 + 1,
                                  np.ones((257, 5), dtype=int))
    assert set(zip(*graph.nonzero())) == set(zip(*expected.nonzero()))
    np.testing.assert_allclose(graph.toarray(), expected.toarray(), atol=1e-4)


def test_inverted_file_search_probing_every_list_is_exact():
    X, _ = blobs(300)

    graph = knn_graph(X, 6, method="ivf", n_lists=12, n_probe=12, random_state=0)
    expected = kneighbors_graph(X, 6, mode="distance")

    assert set(zip(*graph.nonzero())) == set(zip(*expected.nonzero()))


def test_inverted_file_search_finds_most_neighbours_on_clustered_data():
    X, labels = blobs(3000, dim=4, centers=6)

    graph = knn_graph(X, 7, method="ivf", n_lists=30, n_probe=4, random_state=0)

    assert graph_recall(X, graph, n_queries=300, random_state=0) > 0.9
    neighbours = graph.indices.reshape(len(X), 7)
    assert (labels[neighbours] == labels[:, None]).mean() > 0.99


def test_inverted_file_search_widens_probes_when_lists_are_tiny():
    X, _ = blobs(60)

    graph = knn_graph(X, 5, method="ivf", n_lists=40, n_probe=1, random_state=0)

    assert np.all(np.diff(graph.indptr) == 5)
    assert not np.any(graph.indices.reshape(60, 5) == np.arange(60)[:, None])


def test_reduce_dimensions_fits_on_a_sample_and_transforms_every_row():
    X, _ = blobs(2000, dim=20)

    Z, pca = reduce_dimensions(X, 4, sample_size=500, batch_size=300, return_model=True,
                               random_state=0)

    assert Z.shape == (2000, 4) and Z.dtype == np.float32
    np.testing.assert_allclose(Z, pca.transform(X), rtol=1e-4, atol=1e-4)
    full = PCA(4).fit(X)
    overlap = np.abs(pca.components_ @ full.components_.T)
    assert np.allclose(np.sort(overlap.max(axis=1)), 1, atol=0.05)


def test_fit_clusters_assigns_every_row_to_its_nearest_centroid():
    X, _ = blobs(1500)

    labels, kmeans = fit_clusters(X, 20, sample_size=400, random_state=0)

    distances = ((X[:, None, :] - kmeans.cluster_centers_[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, distances.argmin(axis=1))
    assert kmeans.n_clusters == 20


def test_default_cluster_count_is_about_the_square_root_of_the_items():
    X, _ = blobs(900)

    _, kmeans = fit_clusters(X, random_state=0)

    assert kmeans.n_clusters == 30


def test_nearest_to_centroids_picks_the_most_central_member():
    X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [13.0]])
    labels = np.array([0, 0, 0, 1, 1, 1])

    reps = nearest_to_centroids(X, labels)

    np.testing.assert_array_equal(reps, [1, 4])


def test_same_random_state_gives_same_reduction_clusters_and_graph():
    X, _ = blobs(3000, dim=10)

    def run():
        Z = reduce_dimensions(X, 4, sample_size=1000, random_state=3)
        labels, _ = fit_clusters(Z, 25, sample_size=800, random_state=3)
        graph = knn_graph(Z, 5, method="ivf", n_lists=20, random_state=3)
        return Z, labels, graph

    first, second = run(), run()

    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert (first[2] != second[2]).nnz == 0


@pytest.mark.parametrize("method", ["pca", "clusters"])
def test_project_2d_gives_finite_coordinates_for_every_item(method):
    X, labels = blobs(400, dim=10)

    coords = project_2d(X, method=method, cluster_labels=labels, random_state=0)

    assert coords.shape == (400, 2) and np.isfinite(coords).all()


def test_cluster_map_keeps_clusters_apart():
    X, labels = blobs(400, dim=10, spread=0.1)

    coords = project_2d(X, method="clusters", cluster_labels=labels, random_state=0)

    centres = np.array([coords[labels == c].mean(axis=0) for c in range(5)])
    within = np.mean([np.linalg.norm(coords[labels == c] - centres[c], axis=1).mean()
                      for c in range(5)])
    between = np.min([np.linalg.norm(a - b) for i, a in enumerate(centres)
                      for b in centres[i + 1:]])
    assert between > 2 * within


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros(5), "2-D"),
        (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), "NaN"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
        (np.zeros((1, 3)), "at least 2 rows"),
    ],
)
def test_knn_graph_rejects_bad_features(X, message):
    with pytest.raises(ValueError, match=message):
        knn_graph(X, 1)


def test_knn_graph_rejects_more_neighbours_than_items():
    with pytest.raises(ValueError, match="n_neighbors"):
        knn_graph(np.eye(4), 4)


def test_clusters_need_a_sensible_count():
    with pytest.raises(ValueError, match="n_clusters"):
        fit_clusters(np.eye(4), 5)
