"""Vocabulary overlap: normalisation, overlap@k, top-1 hits, static Jaccard."""

from __future__ import annotations

import json

import pytest

from pairscope.errors import InputError
from pairscope.metrics.overlap import (
    normalize_token_string,
    overlap_at_k,
    overlap_summary,
    static_vocab_overlap,
    top1_in_topk,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("▁the", " the"),
        ("Ġthe", " the"),
        ("Ċ", "\n"),
        ("ĊĊ", "\n\n"),
        ("ĉ", "\t"),
        ("▁▁", "  "),
        ("<0x0A>", "\n"),
        ("<0x20>", " "),
        ("<0xE2>", "<0xE2>"),  # a non-ASCII byte piece stays as it is
        (" the", " the"),  # decoded strings pass through
        ("hello", "hello"),
        ("", ""),
    ],
)
def test_normalize_token_string(raw: str, expected: str) -> None:
    assert normalize_token_string(raw) == expected


def test_overlap_hand_case() -> None:
    base = ["▁the", "▁a", "▁an", "▁this"]
    guide = ["Ġthe", "Ġthis", "Ġthat", "Ġa"]
    # Top-3: {the, a, an} vs {the, this, that} -> 1 common.
    assert overlap_at_k(base, guide, k=3) == pytest.approx(1 / 3)
    assert overlap_at_k(base, guide, k=4) == pytest.approx(3 / 4)
    assert overlap_at_k(base, guide, k=4, normalize=False) == 0.0
    assert overlap_at_k(base, base, k=4) == 1.0


def test_overlap_duplicates_collapse_and_denominator_is_k() -> None:
    base = [" x", "▁x", " y"]  # two ids decoding to " x"
    guide = [" x", " y", " z"]
    # {" x", " y"} & {" x", " y", " z"}: 2 common, not 3, and still divided by k.
    assert overlap_at_k(base, guide, k=3) == pytest.approx(2 / 3)
    assert overlap_at_k([" x"], [" x"], k=50) == pytest.approx(1 / 50)
    assert overlap_at_k([], [], k=5) == 0.0


def test_top1_in_topk() -> None:
    base = ["▁the", "▁a", "▁an"]
    assert top1_in_topk("Ġa", base, k=2)
    assert not top1_in_topk("Ġan", base, k=2)
    assert top1_in_topk(" an", base, k=3)
    assert not top1_in_topk("Ġa", base, k=2, normalize=False)


@pytest.mark.parametrize("k", [0, -1, True, 2.5])
def test_bad_k(k) -> None:
    with pytest.raises(InputError):
        overlap_at_k(["a"], ["a"], k=k)
    with pytest.raises(InputError):
        top1_in_topk("a", ["a"], k=k)


def test_static_vocab_overlap() -> None:
    base = ["▁the", "▁a", "b", "<0x0A>"]
    guide = ["Ġthe", "Ċ", "c", "b", "Ġthe"]
    out = static_vocab_overlap(base, guide)
    # base {" the", " a", "b", "\n"}, guide {" the", "\n", "c", "b"}
    assert out == {
        "jaccard": pytest.approx(3 / 5),
        "base_size": 4,
        "guide_size": 4,
        "intersection": 3,
        "union": 5,
    }
    assert static_vocab_overlap([], [])["jaccard"] is None
    assert static_vocab_overlap(iter(["a"]), iter(["b"]))["jaccard"] == 0.0


def test_overlap_summary() -> None:
    overlaps = [0.2, 0.4, 0.6, 0.8] * 25
    hits = [True, False, True, True] * 25
    out = overlap_summary(overlaps, hits, seed=1)
    assert out["n_positions"] == 100
    assert out["overlap_at_k"]["point"] == pytest.approx(0.5)
    assert out["top1_in_topk"]["point"] == pytest.approx(0.75)
    assert out["overlap_at_k"]["low"] < 0.5 < out["overlap_at_k"]["high"]
    assert out["top1_in_topk"]["low"] < 0.75 < out["top1_in_topk"]["high"]
    assert overlap_summary(overlaps, hits, seed=1) == out
    json.dumps(out, allow_nan=False)


def test_overlap_summary_without_positions() -> None:
    # tau = 0 never intervenes, so there is nothing to summarise.
    assert overlap_summary([], []) == {"n_positions": 0, "overlap_at_k": None, "top1_in_topk": None}


@pytest.mark.parametrize(
    ("overlaps", "hits"), [([0.5], []), ([1.5], [True]), ([0.5], [2]), ([float("nan")], [True])]
)
def test_overlap_summary_rejects_bad_input(overlaps, hits) -> None:
    with pytest.raises(InputError):
        overlap_summary(overlaps, hits)
