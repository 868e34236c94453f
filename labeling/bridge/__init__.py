"""The one narrow bridge between rows and ``ml/`` arrays.

Querysets become numpy arrays here and results come back as plain Python values keyed
by database ids (or dataclasses such as :class:`AggregateFit`). Nothing else in
``labeling/`` imports numpy, torch, scikit-learn or ``ml`` (``tests/test_layout.py``
checks it). One module per sub-domain:

- :mod:`~labeling.bridge.aggregation`: answers to truth inference and back;
- :mod:`~labeling.bridge.agreement`: agreement between workers, from their answers;
- :mod:`~labeling.bridge.items`: stored items as pixels and label positions;
- :mod:`~labeling.bridge.features`: the items' candidate representations, the one the
  human labels choose;
- :mod:`~labeling.bridge.semisupervised`: a semi-supervised round's clusters, map,
  spread labels and selection scores;
- :mod:`~labeling.bridge.noise`: the label-noise audit's suspects, by confident learning;
- :mod:`~labeling.bridge.modeling`: a training run's model fitted on its frozen labels,
  and its predictions as rows;
- :mod:`~labeling.bridge.inference`: model files in and out, pixels to predictions;
- :mod:`~labeling.bridge.demo`: the demo's digits as PNGs, its gold drawn at random;
- :mod:`~labeling.bridge.rendering`: an image rendered afresh for each serve, and the
  pixel statistics that decoding an import needs.
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
from labeling.bridge.agreement import answers_agreement
from labeling.bridge.demo import digit_png, digits_pngs, per_class_sample
from labeling.bridge.features import Progress, representation
from labeling.bridge.inference import Pixels, device_name, image_pixels, model_export, model_load, pixels_predict
from labeling.bridge.items import image_arrays, labels_array
from labeling.bridge.modeling import MIN_COMPARED, OnEpoch, in_validation, model_fit, predictions_rows
from labeling.bridge.noise import NoiseFit, label_noise
from labeling.bridge.rendering import gray_stretched, image_render, palette_is_gray
from labeling.bridge.semisupervised import ItemPlace, RoundFit, SpreadLabel, round_fit

__all__ = [
    "DEFAULT_ACCURACY",
    "MIN_COMPARED",
    "MODEL_PRIOR_TEMPER",
    "PRIOR_STRENGTH",
    "VISITOR_ACCURACY",
    "AggregateFit",
    "ItemPlace",
    "NoiseFit",
    "OnEpoch",
    "Pixels",
    "Progress",
    "RoundFit",
    "SpreadLabel",
    "aggregate_fit",
    "answer_evidence",
    "answers_agreement",
    "binary_accuracy",
    "blind_mix",
    "control_accuracy",
    "counted_answers",
    "device_name",
    "digit_png",
    "digits_pngs",
    "gray_stretched",
    "image_arrays",
    "image_pixels",
    "image_render",
    "in_validation",
    "item_prior",
    "items_posteriors",
    "label_noise",
    "label_positions",
    "labels_array",
    "model_export",
    "model_fit",
    "model_load",
    "one_coin_confusion",
    "palette_is_gray",
    "per_class_sample",
    "pixels_predict",
    "posterior_from_evidence",
    "predictions_rows",
    "representation",
    "round_fit",
    "settle_chance",
    "wilson_interval",
]
