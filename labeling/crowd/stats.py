"""Small statistics for the crowd's reports and the benchmarks (plain Python)."""


def percentile(values, q):
    """The ``q``-th percentile (nearest rank) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(-(-q * len(ordered) // 100) - 1, 0)
    return ordered[min(int(rank), len(ordered) - 1)]
