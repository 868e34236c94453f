"""The cheap path: one item's posterior from its answers with worker parameters fixed.

Used after every new answer, between full EM runs; equals the E-step of a full fit
for that item (see :meth:`BaseAggregator.update_item`) when given the fitted
confusions. Stateless, so the caller may keep worker parameters wherever it likes.
"""
import numpy as np


def posterior_from_confusions(labels, confusions, class_priors, known_label=-1):
    """Posterior over the true class of one item.

    Parameters
    ----------
    labels : array-like of int, shape (m,)
        The label each of the ``m`` answers gave.
    confusions : array-like of float, shape (m, K, K)
        Each answering worker's confusion matrix, rows = true class, rows sum to 1.
    class_priors : array-like of float, shape (K,)
    known_label : int, default=-1
        A clamped label (gold or settled) gives a one-hot posterior.

    Returns
    -------
    ndarray of shape (K,)
    """
    priors = np.asarray(class_priors, dtype=float)
    n_classes = priors.shape[0]
    if known_label != -1:
        if not 0 <= known_label < n_classes:
            raise ValueError(f"known_label must be -1 or in [0, {n_classes}), got {known_label}")
        posterior = np.zeros(n_classes)
        posterior[known_label] = 1.0
        return posterior
    labels = np.asarray(labels, dtype=np.intp).ravel()
    confusions = np.asarray(confusions, dtype=float).reshape(labels.size, n_classes, n_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must be in [0, {n_classes}), got {labels.tolist()}")
    scores = np.log(np.clip(priors, 1e-12, None))
    if labels.size:
        scores = scores + np.log(np.clip(confusions[np.arange(labels.size), :, labels], 1e-12, None)).sum(axis=0)
    scores = np.exp(scores - scores.max())
    return scores / scores.sum()


def one_coin_confusion(accuracy, n_classes):
    """The confusion matrix of a worker right with probability ``accuracy``, wrong
    uniformly otherwise."""
    off = (1.0 - accuracy) / (n_classes - 1)
    confusion = np.full((n_classes, n_classes), off)
    np.fill_diagonal(confusion, accuracy)
    return confusion
