"""Reduce, cluster and connect feature vectors in time linear in the number of items.

The steps of the semi-supervised pipeline that only look at the features:

* :func:`reduce_dimensions` -- randomized PCA fitted on a sample, applied in batches;
* :func:`fit_clusters` -- MiniBatchKMeans with many more clusters than classes;
* :func:`knn_graph` -- a k-nearest-neighbour graph as a ``scipy.sparse`` matrix, by a
  blocked exact search (memory bounded by ``max_block_bytes``) or, for large inputs, an
  inverted-file search that compares each item only with the members of the clusters
  nearest to its own;
* :func:`project_2d` -- a two-dimensional map for the dashboard.

Everything here works on arrays and never looks at labels.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import scipy.sparse as sp
from numpy import ndarray
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.utils import check_random_state

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from numpy.typing import ArrayLike, DTypeLike
    from scipy.sparse import csr_matrix

    from ml._typing import RandomStateLike

logger = logging.getLogger(__name__)

EXACT_SEARCH_MAX_ROWS = 20_000
"""Above this many rows ``knn_graph(method="auto")`` switches to the inverted-file search."""

EXACT_KMEANS_MAX_ROWS = 5_000
"""Up to this many rows, :func:`fit_clusters` runs full k-means (three restarts): on small
data minibatches only add noise."""


def check_features(X: ArrayLike, *, name: str = "X", min_rows: int = 1) -> ndarray:
    """Return ``X`` as a finite 2-D float array, or raise ``ValueError`` saying what is wrong.

    float32 and float64 inputs keep their dtype (no copy); anything else becomes float64.
    """
    if sp.issparse(X):
        raise ValueError(f"{name} must be a dense 2-D array, got a sparse matrix")
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_items, n_features), got shape {X.shape}")
    if X.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {X.shape[0]}")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has no feature columns, shape {X.shape}")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if not _all_finite(X):
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def _all_finite(X: ndarray, block_rows: int = 65_536) -> bool:
    for start in range(0, X.shape[0], block_rows):
        if not np.isfinite(X[start:start + block_rows]).all():
            return False
    return True


def fit_pca(
    X: ArrayLike, n_components: int, *, sample_size: int = 100_000, random_state: RandomStateLike = None
) -> PCA:
    """Fit a randomized PCA on at most ``sample_size`` rows of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_items, n_features)
    n_components : int
        Kept components; clipped to ``min(n_features, n_rows_used)``.
    sample_size : int, default=100_000
        Rows drawn without replacement to fit on; the principal directions of a large
        sample are those of the whole data to within sampling noise.
    random_state : int, RandomState instance or None

    Returns
    -------
    pca : sklearn.decomposition.PCA
        Fitted on the sample.
    """
    X = check_features(X, min_rows=2)
    rng = check_random_state(random_state)
    n = X.shape[0]
    if n > sample_size:
        rows = np.sort(rng.choice(n, size=sample_size, replace=False))
        sample = X[rows]
    else:
        sample = X
    k = int(min(n_components, sample.shape[1], sample.shape[0]))
    if k < 1:
        raise ValueError(f"n_components must be at least 1, got {n_components}")
    if sample.shape[1] <= 2048:
        solver = "covariance_eigh"
    elif k < min(sample.shape):
        solver = "randomized"
    else:
        solver = "full"
    return PCA(n_components=k, svd_solver=solver, random_state=rng).fit(sample)


def transform_in_batches(
    transformer: Any, X: ndarray, *, batch_size: int = 65_536, dtype: DTypeLike = np.float32
) -> ndarray:
    """Apply ``transformer.transform`` to ``X`` a block of rows at a time.

    Peak extra memory is one block of input and output; the result is preallocated.
    """
    n = X.shape[0]
    first = np.asarray(transformer.transform(X[: min(batch_size, n)]), dtype=dtype)
    out = np.empty((n, first.shape[1]), dtype=dtype)
    out[: first.shape[0]] = first
    for start in range(first.shape[0], n, batch_size):
        stop = min(start + batch_size, n)
        out[start:stop] = transformer.transform(X[start:stop])
    return out


@overload
def reduce_dimensions(
    X: ArrayLike,
    n_components: int = ...,
    *,
    sample_size: int = ...,
    batch_size: int = ...,
    dtype: DTypeLike = ...,
    return_model: Literal[False] = ...,
    random_state: RandomStateLike = ...,
) -> ndarray: ...
@overload
def reduce_dimensions(
    X: ArrayLike,
    n_components: int = ...,
    *,
    sample_size: int = ...,
    batch_size: int = ...,
    dtype: DTypeLike = ...,
    return_model: Literal[True],
    random_state: RandomStateLike = ...,
) -> tuple[ndarray, PCA]: ...
def reduce_dimensions(
    X: ArrayLike,
    n_components: int = 32,
    *,
    sample_size: int = 100_000,
    batch_size: int = 65_536,
    dtype: DTypeLike = np.float32,
    return_model: bool = False,
    random_state: RandomStateLike = None,
) -> ndarray | tuple[ndarray, PCA]:
    """Project ``X`` on its top principal components, fitting on a sample.

    Parameters
    ----------
    X : ndarray of shape (n_items, n_features)
    n_components : int, default=32
    sample_size : int, default=100_000
        Rows used to fit the PCA (see :func:`fit_pca`).
    batch_size : int, default=65_536
        Rows transformed at a time.
    dtype : numpy dtype, default=np.float32
        Dtype of the reduced array (float32 halves the memory of what follows).
    return_model : bool, default=False
        Also return the fitted PCA, to project new items the same way.
    random_state : int, RandomState instance or None

    Returns
    -------
    Z : ndarray of shape (n_items, n_components_kept)
    pca : sklearn.decomposition.PCA
        Only with ``return_model=True``.
    """
    X = check_features(X, min_rows=2)
    pca = fit_pca(X, n_components, sample_size=sample_size, random_state=random_state)
    Z = transform_in_batches(pca, X, batch_size=batch_size, dtype=dtype)
    logger.debug(
        "PCA %d -> %d dims keeps %.1f%% of the variance",
        X.shape[1],
        pca.n_components_,
        100 * pca.explained_variance_ratio_.sum(),
    )
    return (Z, pca) if return_model else Z


def default_n_clusters(n_items: int, n_classes: int | None = None) -> int:
    """About ``sqrt(n_items)`` clusters, at least four per class, at most ``n_items``."""
    if n_items < 1:
        raise ValueError("n_items must be positive")
    k = round(math.sqrt(n_items))
    if n_classes:
        k = max(k, 4 * int(n_classes))
    return int(max(1, min(k, n_items)))


def fit_clusters(
    X: ArrayLike,
    n_clusters: int | None = None,
    *,
    sample_size: int = 100_000,
    batch_size: int = 4096,
    max_iter: int = 20,
    init: str | ndarray = "k-means++",
    random_state: RandomStateLike = None,
) -> tuple[ndarray, KMeans]:
    """Cluster ``X`` into many small clusters with MiniBatchKMeans.

    The centroids are learnt on a sample of at most ``sample_size`` rows (enough for
    centroids of clusters of a few hundred items); every row is then assigned to its
    nearest centroid in batches. Samples of up to :data:`EXACT_KMEANS_MAX_ROWS` rows get
    full k-means instead.

    Parameters
    ----------
    X : ndarray of shape (n_items, n_features)
    n_clusters : int or None
        Defaults to :func:`default_n_clusters` (about ``sqrt(n_items)``).
    sample_size : int, default=100_000
    batch_size : int, default=4096
    max_iter : int, default=20
        Passes over the sample at most; early stopping usually ends sooner.
    init : {"k-means++", "random"}, default="k-means++"
    random_state : int, RandomState instance or None

    Returns
    -------
    labels : ndarray of shape (n_items,), int
        Cluster of every row.
    kmeans : sklearn.cluster.MiniBatchKMeans or sklearn.cluster.KMeans
        The fitted model (``cluster_centers_``, ``predict`` for new items).
    """
    X = check_features(X)
    n = X.shape[0]
    k = default_n_clusters(n) if n_clusters is None else int(n_clusters)
    if not 1 <= k <= n:
        raise ValueError(f"n_clusters must be between 1 and n_items={n}, got {n_clusters}")
    rng = check_random_state(random_state)
    sample = X
    if n > max(sample_size, 4 * k):
        sample = X[np.sort(rng.choice(n, size=max(sample_size, 4 * k), replace=False))]
    m = sample.shape[0]
    if m <= EXACT_KMEANS_MAX_ROWS:
        kmeans = KMeans(n_clusters=k, init=init, n_init=3, max_iter=100, random_state=rng).fit(sample)
        return kmeans.predict(X) if sample is not X else kmeans.labels_.astype(np.int64), kmeans
    kmeans = MiniBatchKMeans(
        n_clusters=k,
        batch_size=min(batch_size, m),
        init=init,
        init_size=min(m, max(3 * batch_size, 3 * k)),
        n_init=1,
        max_iter=max_iter,
        compute_labels=False,
        reassignment_ratio=0.01,
        random_state=rng,
    ).fit(sample)
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, 262_144):
        stop = min(start + 262_144, n)
        labels[start:stop] = kmeans.predict(X[start:stop])
    return labels, kmeans


def nearest_to_centroids(X: ArrayLike, cluster_labels: ArrayLike, centers: ArrayLike | None = None) -> ndarray:
    """Index of the member nearest each cluster's centroid (``-1`` for an empty cluster).

    Parameters
    ----------
    X : ndarray of shape (n_items, n_features)
    cluster_labels : ndarray of shape (n_items,)
        Cluster ids in ``0 .. n_clusters - 1``.
    centers : ndarray of shape (n_clusters, n_features) or None
        Defaults to the mean of each cluster's members.

    Returns
    -------
    representatives : ndarray of shape (n_clusters,), int
    """
    X = check_features(X)
    labels = np.asarray(cluster_labels)
    if labels.shape != (X.shape[0],):
        raise ValueError(f"cluster_labels must have shape ({X.shape[0]},), got {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError("cluster_labels must be non-negative cluster ids")
    if centers is None:
        n_clusters = int(labels.max()) + 1
        counts = np.bincount(labels, minlength=n_clusters).astype(np.float64)
        sums = np.zeros((n_clusters, X.shape[1]))
        np.add.at(sums, labels, X)
        centers = sums / np.maximum(counts, 1)[:, None]
    centers = np.asarray(centers)
    n_clusters = centers.shape[0]
    dist = np.empty(X.shape[0])
    for start in range(0, X.shape[0], 65_536):
        stop = min(start + 65_536, X.shape[0])
        diff = X[start:stop] - centers[labels[start:stop]]
        dist[start:stop] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    order = np.lexsort((dist, labels))
    sorted_labels = labels[order]
    first = np.searchsorted(sorted_labels, np.arange(n_clusters), side="left")
    present = (first < len(order)) & (sorted_labels[np.minimum(first, len(order) - 1)] == np.arange(n_clusters))
    reps = np.full(n_clusters, -1, dtype=np.int64)
    reps[present] = order[first[present]]
    return reps


def _block_rows(n_columns: int, itemsize: int, max_block_bytes: int) -> int:
    return int(max(1, max_block_bytes // max(1, n_columns * itemsize)))


def _nearest(
    query: torch.Tensor,
    query_norms: torch.Tensor,
    candidates: torch.Tensor,
    candidate_norms: torch.Tensor,
    k: int,
    self_columns: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` squared distances from each query row to the candidate rows (torch).

    ``self_columns[i]`` is the candidate column holding query ``i`` itself, excluded.
    """
    import torch

    D = torch.addmm(candidate_norms, query, candidates.T, alpha=-2)
    D[torch.arange(D.shape[0]), self_columns] = float("inf")
    vals, pos = torch.topk(D, k, dim=1, largest=False, sorted=True)
    vals += query_norms[:, None]
    return pos, vals


def _exact_neighbors(X: ndarray, k: int, max_block_bytes: int) -> tuple[ndarray, ndarray]:
    import torch

    n = X.shape[0]
    Xt = torch.from_numpy(X)
    norms = (Xt * Xt).sum(1)
    indices = np.empty((n, k), dtype=np.int64)
    dist2 = np.empty((n, k), dtype=X.dtype)
    rows = _block_rows(n, X.dtype.itemsize, max_block_bytes)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        pos, vals = _nearest(Xt[start:stop], norms[start:stop], Xt, norms, k, torch.arange(start, stop))
        indices[start:stop] = pos.numpy()
        dist2[start:stop] = vals.numpy()
    return indices, dist2


def _probe_lists(centers: ndarray, n_probe: int, block: int = 2048) -> ndarray:
    """For each list, the ``n_probe`` lists whose centroids are nearest (itself first)."""
    import torch

    n_lists = centers.shape[0]
    n_probe = min(n_probe, n_lists)
    Ct = torch.from_numpy(np.ascontiguousarray(centers, dtype=np.float64))
    norms = (Ct * Ct).sum(1)
    probes = np.empty((n_lists, n_probe), dtype=np.int64)
    for start in range(0, n_lists, block):
        stop = min(start + block, n_lists)
        D = torch.addmm(norms, Ct[start:stop], Ct.T, alpha=-2)
        D[torch.arange(stop - start), torch.arange(start, stop)] = -float("inf")
        probes[start:stop] = torch.topk(D, n_probe, dim=1, largest=False).indices.numpy()
    return probes


def _ivf_neighbors(
    X: ndarray,
    k: int,
    list_labels: ndarray,
    centers: ndarray,
    n_probe: int,
    max_block_bytes: int,
    n_jobs: int | None = None,
) -> tuple[ndarray, ndarray]:
    """Inverted-file search, the lists shared among ``n_jobs`` Python threads.

    Each list's product is small (a list against a few lists), so rather than splitting
    every product across torch's threads, each thread takes whole lists with torch
    limited to one thread (torch releases the GIL): no synchronisation per product,
    which matters most on a busy machine.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import torch

    n = X.shape[0]
    n_lists = centers.shape[0]
    order = np.argsort(list_labels, kind="stable")
    bounds = np.searchsorted(list_labels[order], np.arange(n_lists + 1))
    sizes = np.diff(bounds)
    probes = [list(p) for p in _probe_lists(centers, n_probe)]
    for c in np.flatnonzero((sizes[np.array(probes)].sum(axis=1) <= k) & (sizes > 0)):
        dist = ((centers - centers[c]) ** 2).sum(axis=1)
        dist[c] = -1.0
        ranking = np.argsort(dist, kind="stable")
        reach = np.searchsorted(np.cumsum(sizes[ranking]), k + 1) + 1
        probes[c] = list(ranking[:reach])
    indices = np.empty((n, k), dtype=np.int64)
    dist2 = np.empty((n, k), dtype=X.dtype)
    work = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0]
    jobs = max(1, int(n_jobs or os.cpu_count() or 1))
    shares = [work[j::jobs] for j in range(jobs)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        context = (X, k, order, bounds, sizes, probes, max_block_bytes, indices, dist2)
        if jobs == 1:
            _ivf_search(shares[0], *context)
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for done in [pool.submit(_ivf_search, share, *context) for share in shares]:
                    done.result()
    finally:
        torch.set_num_threads(threads)
    return indices, dist2


def _ivf_search(
    lists_to_do: Sequence[int],
    X: ndarray,
    k: int,
    order: ndarray,
    bounds: ndarray,
    sizes: ndarray,
    probes: Sequence[Sequence[int]],
    max_block_bytes: int,
    indices: ndarray,
    dist2: ndarray,
) -> None:
    import torch

    Xt = torch.from_numpy(X)
    order_t = torch.from_numpy(order)
    for c in lists_to_do:
        candidates = torch.cat([order_t[bounds[j] : bounds[j + 1]] for j in probes[c]])
        C = Xt.index_select(0, candidates)
        cand_norms = (C * C).sum(1)
        rows = _block_rows(len(candidates), X.dtype.itemsize, max_block_bytes)
        for start in range(0, int(sizes[c]), rows):
            stop = min(start + rows, int(sizes[c]))
            # The query's own list comes first among the candidates, so its member j
            # sits at candidate column j.
            pos, vals = _nearest(C[start:stop], cand_norms[start:stop], C, cand_norms, k, torch.arange(start, stop))
            query = candidates[start:stop].numpy()
            indices[query] = candidates[pos].numpy()
            dist2[query] = vals.numpy()


def knn_graph(
    X: ArrayLike,
    n_neighbors: int = 10,
    *,
    method: str = "auto",
    max_block_bytes: int = 64 * 2**20,
    n_lists: int | None = None,
    n_probe: int = 3,
    index: tuple[ArrayLike, ArrayLike] | None = None,
    random_state: RandomStateLike = None,
) -> csr_matrix:
    """Directed k-nearest-neighbour graph of the rows of ``X`` (Euclidean, self excluded).

    Parameters
    ----------
    X : ndarray of shape (n_items, n_features)
    n_neighbors : int, default=10
    method : {"auto", "exact", "ivf"}, default="auto"
        ``"exact"`` compares every pair, a block of query rows at a time, keeping only the
        top ``n_neighbors`` of each row: O(n^2 d) time, O(max_block_bytes) extra memory.
        ``"ivf"`` (inverted file) compares each item only with the members of the
        ``n_probe`` clusters whose centroids are nearest its own cluster's centroid:
        O(n * n_probe * n / n_lists * d) time, approximate. ``"auto"`` is exact up to
        :data:`EXACT_SEARCH_MAX_ROWS` rows.
    max_block_bytes : int, default=64 MiB
        Bound on the distance block held at once.
    n_lists : int or None
        Clusters of the inverted file, default ``n_items // 512``. Ignored with ``index``.
    n_probe : int, default=3
        Clusters searched per query cluster; more is slower and more exact.
    index : tuple (cluster_labels, centers) or None
        Reuse a clustering of ``X`` (e.g. from :func:`fit_clusters`) as the inverted file.
    random_state : int, RandomState instance or None
        Seeds the inverted-file clustering.

    Returns
    -------
    graph : scipy.sparse.csr_matrix of shape (n_items, n_items)
        Row ``i`` holds the distances to the ``n_neighbors`` nearest other items, like
        ``sklearn.neighbors.kneighbors_graph(mode="distance")``.
    """
    X = np.ascontiguousarray(check_features(X, min_rows=2))
    n = X.shape[0]
    k = int(n_neighbors)
    if not 1 <= k < n:
        raise ValueError(f"n_neighbors must be between 1 and n_items - 1 = {n - 1}, got {k}")
    if method not in ("auto", "exact", "ivf"):
        raise ValueError(f"method must be 'auto', 'exact' or 'ivf', got {method!r}")
    if method == "auto":
        method = "exact" if n <= EXACT_SEARCH_MAX_ROWS else "ivf"
    if method == "exact":
        indices, dist2 = _exact_neighbors(X, k, max_block_bytes)
    else:
        if index is None:
            lists = max(1, n // 512) if n_lists is None else int(n_lists)
            list_labels, kmeans = fit_clusters(
                X, lists, sample_size=64 * lists, init="random", max_iter=10, random_state=random_state
            )
            centers = kmeans.cluster_centers_
        else:
            list_labels, centers = np.asarray(index[0]), index[1]
            if list_labels.shape != (n,):
                raise ValueError(f"index cluster labels must have shape ({n},)")
        indices, dist2 = _ivf_neighbors(X, k, list_labels, np.asarray(centers), n_probe, max_block_bytes)
    np.maximum(dist2, 0, out=dist2)
    np.sqrt(dist2, out=dist2)
    index_dtype = np.int32 if n < 2**31 - 1 else np.int64
    graph = sp.csr_matrix(
        (
            dist2.ravel(),
            indices.ravel().astype(index_dtype),
            np.arange(0, n * k + 1, k, dtype=np.int64 if n * k >= 2**31 else index_dtype),
        ),
        shape=(n, n),
    )
    return graph


def graph_recall(
    X: ArrayLike,
    graph: csr_matrix,
    *,
    n_queries: int = 1000,
    max_block_bytes: int = 64 * 2**20,
    random_state: RandomStateLike = None,
) -> float:
    """Fraction of the true nearest neighbours that ``graph`` found, on sampled rows.

    Parameters
    ----------
    X : ndarray of shape (n_items, n_features)
    graph : sparse matrix from :func:`knn_graph`
        Every row must hold the same number of neighbours.
    n_queries : int, default=1000
    max_block_bytes : int, default=64 MiB
    random_state : int, RandomState instance or None

    Returns
    -------
    recall : float
    """
    import torch

    X = np.ascontiguousarray(check_features(X, min_rows=2))
    graph = sp.csr_matrix(graph)
    k = int(np.diff(graph.indptr).max())
    rng = check_random_state(random_state)
    rows = np.sort(rng.choice(X.shape[0], size=min(n_queries, X.shape[0]), replace=False))
    Xt = torch.from_numpy(X)
    norms = (Xt * Xt).sum(1)
    hits = 0
    block = _block_rows(X.shape[0], X.dtype.itemsize, max_block_bytes)
    for start in range(0, len(rows), block):
        query = torch.from_numpy(rows[start : start + block])
        pos, _ = _nearest(Xt[query], norms[query], Xt, norms, k, query)
        for row, true in zip(query.numpy(), pos.numpy()):
            found = graph.indices[graph.indptr[row] : graph.indptr[row + 1]]
            hits += np.intersect1d(found, true).size
    return hits / (len(rows) * k)


def project_2d(
    X: ArrayLike, *, method: str = "pca", cluster_labels: ArrayLike | None = None, random_state: RandomStateLike = None
) -> ndarray:
    """Two-dimensional coordinates of every item, for a dashboard map.

    Parameters
    ----------
    X : ndarray of shape (n_items, n_features)
    method : {"pca", "clusters"}, default="pca"
        ``"pca"``: the top two principal components (fitted on a sample).
        ``"clusters"``: a t-SNE map of the cluster centroids, each item drawn near its
        centroid, offset by its own position along the two main within-cluster
        directions; t-SNE only sees the centroids, so the cost stays linear in items.
    cluster_labels : ndarray of shape (n_items,) or None
        Required for ``"clusters"``.
    random_state : int, RandomState instance or None

    Returns
    -------
    coords : ndarray of shape (n_items, 2), float32
    """
    X = check_features(X, min_rows=3)
    if method == "pca":
        if X.shape[1] < 2:
            raise ValueError("a 2-D projection needs at least 2 feature columns")
        return reduce_dimensions(X, 2, random_state=random_state)
    if method != "clusters":
        raise ValueError(f"method must be 'pca' or 'clusters', got {method!r}")
    if cluster_labels is None:
        raise ValueError("method='clusters' needs cluster_labels")
    from sklearn.manifold import TSNE

    labels = np.asarray(cluster_labels)
    if labels.shape != (X.shape[0],):
        raise ValueError(f"cluster_labels must have shape ({X.shape[0]},)")
    ids, labels = np.unique(labels, return_inverse=True)
    counts = np.bincount(labels).astype(np.float64)
    centers = np.zeros((len(ids), X.shape[1]))
    np.add.at(centers, labels, X)
    centers /= counts[:, None]
    if len(ids) >= 4:
        perplexity = float(min(30.0, (len(ids) - 1) / 3))
        anchor = TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            method="exact" if len(ids) <= 1000 else "barnes_hut",
            random_state=random_state,
        ).fit_transform(centers)
    else:
        anchor = np.zeros((len(ids), 2))
        anchor[:, 0] = np.arange(len(ids))
    residual = np.empty_like(X, dtype=np.float64)
    for start in range(0, X.shape[0], 65_536):
        stop = min(start + 65_536, X.shape[0])
        residual[start:stop] = X[start:stop] - centers[labels[start:stop]]
    offsets = reduce_dimensions(residual, 2, random_state=random_state, dtype=np.float64)
    if offsets.shape[1] < 2:
        offsets = np.pad(offsets, ((0, 0), (0, 2 - offsets.shape[1])))
    if len(anchor) > 1:
        gaps = np.linalg.norm(anchor[:, None] - anchor[None], axis=-1)
        np.fill_diagonal(gaps, np.inf)
        spacing = np.median(gaps.min(axis=1))
    else:
        spacing = 1.0
    spread = np.percentile(np.linalg.norm(offsets, axis=1), 95) or 1.0
    coords = anchor[labels] + offsets * (0.4 * spacing / spread)
    return coords.astype(np.float32)
