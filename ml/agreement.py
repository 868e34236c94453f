"""Inter-annotator agreement on nominal labels: Fleiss' kappa and Krippendorff's alpha.

Both work on a *ratings table*: one row per item, one column per category, each cell
the number of annotators who gave that item that category (build one from answer pairs
with :func:`ratings_table`). Items with fewer than two ratings carry no information on
agreement and are left out. Crowd data rarely has the same number of answers per item,
so both accept a varying number of ratings per row.

A value of 1 is perfect agreement, 0 is what chance gives, below 0 is systematic
disagreement. When every rating falls in one category the chance agreement is 1 and
both are undefined: they return ``nan``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy import ndarray

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["fleiss_kappa", "krippendorff_alpha", "ratings_table"]


def ratings_table(
    units: ArrayLike, labels: ArrayLike, counts: ArrayLike | None = None, *, n_categories: int | None = None
) -> ndarray:
    """Count ratings per (item, category).

    Parameters
    ----------
    units : array-like of int, shape (n,)
        Item identifiers, any integers (database ids are fine); rows of the result
        follow their sorted unique values.
    labels : array-like of int, shape (n,)
        Category indices in ``[0, n_categories)``.
    counts : array-like of int, shape (n,), optional
        How many ratings each (unit, label) pair stands for; ones when omitted, so
        raw answers and pre-aggregated ``GROUP BY`` rows both work.
    n_categories : int, optional
        Number of categories; ``labels.max() + 1`` when omitted.

    Returns
    -------
    ndarray of int64, shape (n_items, n_categories)

    Raises
    ------
    ValueError
        When the inputs differ in length, a label is out of range or a count negative.
    """
    units = np.asarray(units, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    counts = np.ones_like(labels) if counts is None else np.asarray(counts, dtype=np.int64).reshape(-1)
    if not (units.shape == labels.shape == counts.shape):
        raise ValueError(
            f"units, labels and counts must have one length, got {units.size}, {labels.size}, {counts.size}"
        )
    if n_categories is None:
        n_categories = int(labels.max()) + 1 if labels.size else 0
    if labels.size and (labels.min() < 0 or labels.max() >= n_categories):
        raise ValueError(f"labels must lie in [0, {n_categories}), got {labels.min()}..{labels.max()}")
    if counts.size and counts.min() < 0:
        raise ValueError("counts must not be negative")
    rows, inverse = np.unique(units, return_inverse=True)
    table = np.zeros((rows.size, n_categories), dtype=np.int64)
    np.add.at(table, (inverse, labels), counts)
    return table


def _check_table(table: ArrayLike) -> ndarray:
    table = np.asarray(table)
    if table.ndim != 2:
        raise ValueError(f"the ratings table must be 2-D (items x categories), got shape {table.shape}")
    if table.size and (not np.all(np.isfinite(table)) or table.min() < 0):
        raise ValueError("the ratings table must hold non-negative counts")
    table = table.astype(np.float64)
    return table[table.sum(axis=1) >= 2]


def fleiss_kappa(table: ArrayLike) -> float:
    """Fleiss' kappa of a ratings table.

    With the same number of ratings on every item this is Fleiss (1971); with varying
    numbers, each item's observed agreement uses its own count and the chance agreement
    uses the pooled category shares.

    Parameters
    ----------
    table : array-like, shape (n_items, n_categories)
        Ratings per item and category (:func:`ratings_table`).

    Returns
    -------
    float
        Kappa, or ``nan`` when no item has two ratings or chance agreement is 1.
    """
    table = _check_table(table)
    if not table.shape[0]:
        return float("nan")
    n = table.sum(axis=1)
    observed = ((table * table).sum(axis=1) - n) / (n * (n - 1))
    shares = table.sum(axis=0) / n.sum()
    chance = float((shares * shares).sum())
    if np.isclose(chance, 1.0):
        return float("nan")
    return float((observed.mean() - chance) / (1.0 - chance))


def krippendorff_alpha(table: ArrayLike) -> float:
    """Krippendorff's alpha for nominal data from a ratings table.

    Built on the coincidence matrix (Krippendorff, *Computing Krippendorff's
    Alpha-Reliability*, 2011): each item with ``m`` ratings contributes its
    ``m (m - 1)`` ordered pairs of ratings, weighted ``1 / (m - 1)``.

    Parameters
    ----------
    table : array-like, shape (n_items, n_categories)
        Ratings per item and category (:func:`ratings_table`).

    Returns
    -------
    float
        Alpha, or ``nan`` when no item has two ratings or all ratings are one category.
    """
    table = _check_table(table)
    if not table.shape[0]:
        return float("nan")
    m = table.sum(axis=1)
    same = ((table * (table - 1)).sum(axis=1) / (m - 1)).sum()
    n_c = table.sum(axis=0)
    total = n_c.sum()
    expected = total * total - (n_c * n_c).sum()
    if np.isclose(expected, 0.0):
        return float("nan")
    return float(1.0 - (total - 1.0) * (total - same) / expected)
