"""Vocabulary overlap between base and guide at uncertain positions (docs/methods.md §3).

Token strings are compared after :func:`normalize_token_string`, so a
SentencePiece ``"▁the"`` and a byte-level BPE ``"Ġthe"`` both count as ``" the"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pairscope.errors import InputError
from pairscope.metrics.stats import bootstrap_mean, to_binary, to_vector

_MARKERS = str.maketrans({"▁": " ", "Ġ": " ", "Ċ": "\n", "ĉ": "\t"})
_BYTE_TOKEN = re.compile(r"<0x([0-7][0-9A-Fa-f])>")


def normalize_token_string(s: str) -> str:
    """Map tokenizer space markers in a raw vocabulary string to the text they stand for.

    SentencePiece ``"▁"`` and byte-level BPE ``"Ġ"`` become a space, ``"Ċ"`` a
    newline and ``"ĉ"`` a tab; a whole SentencePiece byte-fallback token for an
    ASCII byte (``"<0x0A>"``) becomes that character. Meant for raw tokens from
    ``convert_ids_to_tokens``; decoded strings pass through unchanged unless
    they contain these marker characters themselves (rare letters, e.g. Maltese
    "Ġ" or Esperanto "ĉ", which are then mapped too).
    """
    match = _BYTE_TOKEN.fullmatch(s)
    if match:
        return chr(int(match.group(1), 16))
    return s.translate(_MARKERS)


def _top_set(strings: Sequence[str], k: int, normalize: bool) -> set[str]:
    top = list(strings[:k])
    return {normalize_token_string(s) for s in top} if normalize else set(top)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer; got {k!r}.")


def overlap_at_k(
    base_strings: Sequence[str], guide_strings: Sequence[str], k: int = 50, normalize: bool = True
) -> float:
    """``|top-k base ∩ top-k guide| / k`` over token strings.

    Strings are given in rank order (most probable first); only the first
    ``k`` of each list count. They are compared as sets, so duplicates (several
    ids that decode to one string) collapse, and the denominator stays ``k``
    even when a list has fewer than ``k`` distinct strings.

    Args:
        base_strings: Base model's top tokens as strings, in rank order.
        guide_strings: Guide model's top tokens as strings, in rank order.
        k: How many top tokens of each model to compare.
        normalize: Apply :func:`normalize_token_string` first.
    """
    _check_k(k)
    common = _top_set(base_strings, k, normalize) & _top_set(guide_strings, k, normalize)
    return len(common) / k


def top1_in_topk(
    guide_top1: str, base_strings: Sequence[str], k: int = 50, normalize: bool = True
) -> bool:
    """Whether the guide's top-1 string is among the base model's top-k strings."""
    _check_k(k)
    needle = normalize_token_string(guide_top1) if normalize else guide_top1
    return needle in _top_set(base_strings, k, normalize)


def static_vocab_overlap(base_vocab: Iterable[str], guide_vocab: Iterable[str]) -> dict[str, Any]:
    """Jaccard overlap of the two vocabularies as sets of normalised strings.

    Returns:
        ``{"jaccard", "base_size", "guide_size", "intersection", "union"}``; sizes
        count distinct normalised strings. ``jaccard`` is None if both are empty.
    """
    base = {normalize_token_string(s) for s in base_vocab}
    guide = {normalize_token_string(s) for s in guide_vocab}
    common = len(base & guide)
    union = len(base | guide)
    return {
        "jaccard": common / union if union else None,
        "base_size": len(base),
        "guide_size": len(guide),
        "intersection": common,
        "union": union,
    }


def overlap_summary(
    overlaps: Sequence[float],
    hits: Sequence[bool],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Mean overlap@k and top-1-in-top-k rate over uncertain positions, with bootstrap CIs.

    The bootstrap resamples *positions*, treating them as independent; positions
    within one response are correlated, so these intervals are somewhat too
    narrow. They describe the pair, they do not gate it.

    Args:
        overlaps: overlap@k at each uncertain position.
        hits: top1_in_topk at the same positions.
        n_boot: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``.
        confidence: Two-sided confidence level.

    Returns:
        ``{"n_positions", "overlap_at_k", "top1_in_topk"}``, the last two as
        ``Estimate.to_dict()`` or None when there are no positions (e.g. τ = 0).
    """
    values = to_vector(overlaps, "overlaps", allow_empty=True)
    flags = to_binary(hits, "hits", allow_empty=True)
    if values.shape != flags.shape:
        raise InputError(f"overlaps and hits differ in length ({values.size} vs {flags.size}).")
    if np.any((values < 0.0) | (values > 1.0)):
        raise InputError("overlaps must lie in [0, 1].")
    if values.size == 0:
        return {"n_positions": 0, "overlap_at_k": None, "top1_in_topk": None}
    # One seed for both, so the two intervals come from the same resamples.
    mean_overlap = bootstrap_mean(values, n_boot=n_boot, seed=seed, confidence=confidence)
    hit_rate = bootstrap_mean(flags, n_boot=n_boot, seed=seed, confidence=confidence)
    return {
        "n_positions": int(values.size),
        "overlap_at_k": mean_overlap.to_dict(),
        "top1_in_topk": hit_rate.to_dict(),
    }
