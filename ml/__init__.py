"""Crowdloop's machine-learning library: plain numpy, scikit-learn and PyTorch.

Nothing in this package imports Django; it works on arrays and is tested on arrays.
Unlabeled entries are ``-1``, as in scikit-learn's semi-supervised estimators.
"""
