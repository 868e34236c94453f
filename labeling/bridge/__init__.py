"""The one narrow bridge between rows and ``ml/`` arrays.

Querysets become numpy arrays here and results come back as plain Python values keyed
by database ids (or dataclasses such as :class:`AggregateFit`). Nothing else in
``labeling/`` imports numpy, torch, scikit-learn or ``ml`` (``tests/test_layout.py``
checks it). One module per sub-domain:

- :mod:`~labeling.bridge.aggregation`: answers to truth inference and back;
- :mod:`~labeling.bridge.items`: stored items as pixels and label positions.
"""
from labeling.bridge.aggregation import (
    DEFAULT_ACCURACY,
    MODEL_PRIOR_TEMPER,
    PRIOR_STRENGTH,
    VISITOR_ACCURACY,
    AggregateFit,
    aggregate_fit,
    answer_evidence,
    binary_accuracy,
    blind_mix,
    control_accuracy,
    counted_answers,
    item_prior,
    items_posteriors,
    label_positions,
    one_coin_confusion,
    posterior_from_evidence,
    settle_chance,
    wilson_interval,
)
from labeling.bridge.items import image_arrays, labels_array

__all__ = [
    "DEFAULT_ACCURACY",
    "MODEL_PRIOR_TEMPER",
    "PRIOR_STRENGTH",
    "VISITOR_ACCURACY",
    "AggregateFit",
    "aggregate_fit",
    "answer_evidence",
    "binary_accuracy",
    "blind_mix",
    "control_accuracy",
    "counted_answers",
    "image_arrays",
    "item_prior",
    "items_posteriors",
    "label_positions",
    "labels_array",
    "one_coin_confusion",
    "posterior_from_evidence",
    "settle_chance",
    "wilson_interval",
]
