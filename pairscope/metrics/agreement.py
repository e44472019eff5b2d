"""Agreement of two labellings of the same items: raw agreement and Cohen's kappa.

Pure functions on label sequences (no numpy needed). Cohen's kappa is
(p_o - p_e) / (1 - p_e): the observed agreement p_o corrected for the agreement p_e
expected by chance from each rater's own label frequencies. It is 1 for perfect
agreement, 0 for chance level, negative below it; undefined (None) when both raters
use one and the same label throughout (p_e = 1), or there are no items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

__all__ = ["cohen_kappa", "raw_agreement"]


def _check(a: Sequence[Hashable], b: Sequence[Hashable]) -> None:
    if len(a) != len(b):
        raise ValueError(f"label sequences differ in length ({len(a)} vs {len(b)})")


def raw_agreement(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Share of items both label alike (None without items)."""
    _check(a, b)
    if not a:
        return None
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two labellings of the same items (None when undefined)."""
    observed = raw_agreement(a, b)
    if observed is None:
        return None
    n = len(a)
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)
