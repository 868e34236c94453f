"""Truth inference: from crowd answers to posteriors over each item's true label.

Answers are an int array of shape ``(n_answers, 3)`` with columns ``item``, ``worker``,
``label`` (0-based). ``known`` marks gold or admin-settled items with their label and
everything else with ``-1``; known items are clamped and calibrate the workers.

Methods, all with ``fit(answers, known=None, n_items=None, n_workers=None, init=None)``
and ``update_item(workers, labels, known_label=-1)``:

- :class:`MajorityVote` - vote shares;
- :class:`WeightedMajorityVote` - votes weighted by the log-odds of worker accuracy;
- :class:`DawidSkene` - EM with a full confusion matrix per worker;
- :class:`OneCoinDawidSkene` - EM with one accuracy per worker;
- :func:`make_aggregator` builds any of them by name, ``"auto"`` choosing per project
  with :func:`choose_method`.
"""

from ._auto import AutoAggregator, choose_method, make_aggregator
from ._base import UNKNOWN, BaseAggregator, check_answers
from ._dawid_skene import DawidSkene, OneCoinDawidSkene
from ._voting import MajorityVote, WeightedMajorityVote

__all__ = [
    "UNKNOWN",
    "AutoAggregator",
    "BaseAggregator",
    "DawidSkene",
    "MajorityVote",
    "OneCoinDawidSkene",
    "WeightedMajorityVote",
    "check_answers",
    "choose_method",
    "make_aggregator",
]
