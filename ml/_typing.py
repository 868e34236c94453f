"""Type aliases shared by the modules of ``ml``."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np

RandomStateLike: TypeAlias = int | np.random.RandomState | None
"""What ``random_state`` accepts, as in scikit-learn: a seed, a RandomState or None."""
