"""The decoding loop's hot-path arithmetic against the plain computations it replaces.

Scores normalises only where a decision reads, TopLists takes every row's top-k at
once, common_prefix compares lists in C: each must give exactly (bit for bit) what
the straightforward version gives, or decoded texts could change.
"""

from __future__ import annotations

import random

import pytest
import torch

from pairscope.errors import RuntimeFault
from pairscope.runtime.scores import (
    TOP_BLOCK,
    Scores,
    TopLists,
    block_top_k,
    first_max,
    greedy,
    merge_topk,
    top_k,
)
from pairscope.runtime.stream import common_prefix
from pairscope.runtime.vocab import TokenText


def logits(rows: int, vocab: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((rows, vocab), generator=g) * scale
    x[0, : min(3, vocab - 1)] = -torch.inf  # masked entries (a vocabulary pad)
    return x


@pytest.mark.parametrize("shape", [(16, 262144), (5, 49152), (3, 1000), (1, 7)])
@pytest.mark.parametrize("scale", [1.0, 12.0, 60.0])
def test_normaliser_is_logsumexp_bit_for_bit(shape, scale):
    x = logits(*shape, scale, seed=shape[1])
    scores = Scores.of_logits(x)
    reference = torch.logsumexp(x, dim=-1, keepdim=True)
    assert torch.equal(scores.norm, reference)
    assert torch.equal(scores.logprobs(), x - reference)


def test_top1_and_row_subsets_equal_full_normalisation():
    x = logits(9, 5000, 8.0, seed=1)
    full = x - torch.logsumexp(x, dim=-1, keepdim=True)
    p_top, ids = Scores.of_logits(x).top1()
    values, expected_ids = full.max(dim=-1)
    assert ids == expected_ids.tolist()
    assert p_top == values.exp().double().tolist()
    rows = [7, 2, 2, 0]
    assert torch.equal(Scores.of_logits(x).logprobs(rows), full[rows])


@pytest.mark.parametrize("vocab", [49152, 262144])
@pytest.mark.parametrize("scale", [1.0, 5.0, 9.0])
def test_a_row_subset_is_normalised_alone_with_the_full_arithmetic(vocab, scale):
    # A guide read at its uncertain rows normalises only those rows; each row's
    # log-probabilities must then be those of the whole pass's normalisation, bit for
    # bit, whichever rows and however many are read with it. (A flat distribution, where
    # many terms of the exp-sum count, shows a change of summation order: a lone row
    # reduced on its own is split between threads.)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))  # the test suite's workers run single-threaded
    try:
        _check_row_subsets(logits(16, vocab, scale, seed=vocab))
    finally:
        torch.set_num_threads(threads)


def _check_row_subsets(x: torch.Tensor) -> None:
    full = Scores.of_logits(x).logprobs()
    for size in range(1, 17):
        for rows in (list(range(size)), list(range(16 - size, 16))[::-1]):
            lazy = Scores.of_logits(x)
            assert torch.equal(lazy.logprobs(rows), full[rows])
            if size < 16:
                assert lazy._raw, "a subset read normalises only the subset"
    for row in range(16):  # every row alone
        assert torch.equal(Scores.of_logits(x).logprobs([row]), full[[row]])
    # Once every row is normalised (the base's top-1), a subset reads those values.
    scores = Scores.of_logits(x)
    scores.top1()
    assert not scores._raw and torch.equal(scores.logprobs([5, 1]), full[[5, 1]])


@pytest.mark.parametrize("vocab", [7, 1000, 1024, 1500, 49152, 262144, 262145])
@pytest.mark.parametrize("rows", [1, 3, 16])
def test_first_max_is_max_with_its_first_index(vocab, rows):
    g = torch.Generator().manual_seed(vocab + rows)
    x = torch.randn((rows, vocab), generator=g) * 8
    # Ties for the maximum: in one block, across blocks, in the last (shorter) block.
    top = x.max() + 1
    x[0, [vocab // 2, vocab - 1]] = top
    if rows > 1:
        x[1, [vocab - 1, min(5, vocab - 1)]] = top
    if rows > 2:
        x[2] = 0.0  # a constant row: the first index
    values, ids = first_max(x)
    expected = x.max(dim=-1)
    assert torch.equal(values, expected.values) and torch.equal(ids, expected.indices)
    # +inf and a row of -inf (a fully masked row) as max gives them.
    x[0, 3] = torch.inf
    x[-1] = -torch.inf
    values, ids = first_max(x)
    expected = x.max(dim=-1)
    assert torch.equal(values, expected.values) and torch.equal(ids, expected.indices)
    # A NaN makes its row's maximum NaN, which every host reading raises on.
    x[0, vocab // 3] = torch.nan
    assert torch.isnan(first_max(x)[0][0])


def test_a_lazy_read_outside_inference_mode_after_one_inside_it():
    # The buffer made by a read inside inference mode (a pass) is written again by a
    # lazy read after it, outside: that must neither raise nor change the values.
    x = logits(4, 262144, 10.0, seed=11)
    expected = torch.logsumexp(x, dim=-1, keepdim=True)
    with torch.inference_mode():
        inside = Scores.of_logits(x.clone())
        assert torch.equal(inside.norm, expected)
        later = Scores.of_logits(x.clone())
    assert torch.equal(later.norm, expected)
    assert torch.equal(later.logprobs([2]), x[[2]] - expected[[2]])
    assert torch.equal(Scores.of_logits(x).norm, expected)  # a normal tensor, outside


def test_the_kept_workspace_never_leaks_into_a_later_pass():
    # The shifted logits go to a buffer reused across calls (one per vocabulary): a
    # narrower pass after a wider one, and a wider after, still normalise exactly.
    for rows in (16, 3, 16, 1, 20):
        x = logits(rows, 262144, 10.0, seed=rows)
        scores = Scores.of_logits(x)
        assert torch.equal(scores.norm, torch.logsumexp(x, dim=-1, keepdim=True))
        assert scores.top1()[1] == x.argmax(dim=-1).tolist()


def test_already_normalised_scores_pass_through():
    logp = torch.log_softmax(logits(4, 300, 3.0, seed=2), dim=-1)
    scores = Scores(logp)
    assert torch.equal(scores.logprobs([3, 1]), logp[[3, 1]])
    p_top, ids = scores.top1()
    assert ids == logp.argmax(dim=-1).tolist()
    assert p_top == logp.max(dim=-1).values.exp().double().tolist()


@pytest.mark.parametrize("vocab", [7, 1000, 25600, 4 * 50 * TOP_BLOCK, 49152, 262144, 262145])
@pytest.mark.parametrize("k", [1, 50, 100])
def test_block_top_k_is_topk(vocab, k):
    """Distinct scores: exactly torch.topk's values and ids, at every vocabulary size
    (under the blocked path's threshold, on it, a last shorter block)."""
    g = torch.Generator().manual_seed(vocab + k)
    x = torch.randn((4, vocab), generator=g) * 8
    x[1, -1] = x[1].max() + 1  # the row's top-1 in the last, shorter block
    x[2, : vocab // 2] = -torch.inf  # half the row masked
    values, ids = block_top_k(x, k)
    expected = torch.topk(x, min(k, vocab))
    assert torch.equal(values, expected.values) and torch.equal(ids, expected.indices)
    strided = x.t().contiguous().t()  # not contiguous along the vocabulary: plain topk
    assert torch.equal(block_top_k(strided, k)[1], expected.indices)


@pytest.mark.parametrize("seed", range(6))
def test_block_top_k_with_ties_has_topk_values_and_a_valid_choice(seed):
    """Few distinct scores (bf16-like): the same values as torch.topk in the same order;
    the ids are distinct, carry those values, and hold every score above the k-th."""
    g = torch.Generator().manual_seed(seed)
    vocab, k = 262144 + 37 * seed, 50
    x = torch.randint(0, 4 + 20 * seed, (3, vocab), generator=g).float()
    x[2] = 0.0  # a constant row
    values, ids = block_top_k(x, k)
    assert torch.equal(values, torch.topk(x, k).values)
    for row in range(3):
        chosen = ids[row].tolist()
        assert len(set(chosen)) == k
        assert torch.equal(x[row, ids[row]], values[row])
        above = (x[row] > values[row, -1]).nonzero().flatten().tolist()
        assert set(above) <= set(chosen)


def test_block_top_k_puts_a_nan_first():
    x = torch.randn((3, 262144)) * 4
    x[1, 70001] = torch.nan
    x[2] = torch.nan
    values, ids = block_top_k(x, 50)
    assert not values[0].isnan().any()
    assert values[1, 0].isnan() and int(ids[1, 0]) == 70001
    assert values[2, 0].isnan()


@pytest.mark.parametrize("bad", ["nan", "inf", "all -inf"])
def test_a_nan_or_inf_logit_is_a_runtime_fault_at_every_reading(bad):
    """No synchronisation of its own: each host reading of a pass checks its values."""
    x = logits(3, 100, 1.0, seed=3)
    if bad == "all -inf":
        x[1] = -torch.inf
    else:
        x[1, 17] = float(bad)
    scores = Scores.of_logits(x)  # nothing read yet: nothing raised
    readings = [
        scores.top1,
        lambda: TopLists(scores.logprobs([1]), 5),
        lambda: greedy(scores.logprobs()),
    ]
    for read in readings:
        with pytest.raises(RuntimeFault, match="NaN or infinite"):
            read()
    clean = Scores.of_logits(logits(3, 100, 1.0, seed=3))
    clean.top1(), TopLists(clean.logprobs(), 5), greedy(clean.logprobs())  # no fault


class _Tok:
    """Just enough of a tokenizer for TokenText: every id decodes to its own string."""

    all_special_ids: list[int] = []

    def encode(self, text, add_special_tokens=False):
        return [0] if text == "a" else [1]

    def decode(self, ids, clean_up_tokenization_spaces=False):
        return "".join("a" if i == 0 else f"<{i % 50}>" for i in ids)


def test_batched_top_lists_equal_per_row_top_k():
    vocab = TokenText(_Tok(), frozenset(), 0)
    logp = torch.log_softmax(logits(6, 3000, 5.0, seed=4), dim=-1)
    lists = TopLists(logp, 100)
    for i in range(6):
        for k in (1, 50, 100):
            values, indices = torch.topk(logp[i], k)  # one row alone, the plain way
            ids = indices.tolist()
            plain = merge_topk(ids, values.exp().tolist(), [vocab.key(t) for t in ids])
            assert lists.top(i, vocab, k) == plain
            assert top_k(logp[i], vocab, k) == plain
    assert TopLists(logp[:, :40], 100).k == 40  # a vocabulary smaller than k


@pytest.mark.parametrize("vocab", [3000, 262144])
def test_top_lists_of_logits_equal_the_lists_of_their_logprobs(vocab):
    x = logits(6, vocab, 20.0, seed=11)
    scores = Scores.of_logits(x)
    scores.top1()
    rows = [0, 2, 5]
    full = TopLists(scores.logprobs(rows), 100)
    lean = scores.top_lists(rows, 100)
    assert lean.ids == full.ids
    assert lean.probs == full.probs
    normalised = Scores(torch.log_softmax(x, dim=-1))  # a served model's log-probabilities
    assert normalised.top_lists(rows, 100).ids == full.ids


def test_lists_read_together_equal_the_lists_read_alone():
    """One host transfer for several top-k results (a BlendIn step's base and guide
    lists, of different vocabularies and widths) gives each the lists it gives alone."""
    base = Scores.of_logits(logits(5, 262144, 20.0, seed=12))
    base.top1()
    guide = torch.log_softmax(logits(3, 3000, 5.0, seed=13), dim=-1)
    small = torch.log_softmax(logits(2, 40, 5.0, seed=14), dim=-1)  # a vocabulary under k
    rows = [4, 0, 3]
    together = TopLists.read(
        base.ranked(rows, 100), TopLists.rank(guide, 100), TopLists.rank(small, 100)
    )
    alone = [base.top_lists(rows, 100), TopLists(guide, 100), TopLists(small, 100)]
    for a, b in zip(together, alone):
        assert (a.k, a.ids, a.probs) == (b.k, b.ids, b.probs)
    assert [t.k for t in together] == [100, 100, 40]
    assert together[0].ids[1] == torch.topk(base.logits[0], 100).indices.tolist()


def _naive_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_common_prefix_equals_the_element_loop():
    rng = random.Random(5)
    for _ in range(3000):
        a = [rng.randrange(4) for _ in range(rng.randrange(0, 40))]
        b = a[: rng.randrange(0, len(a) + 1)] + [rng.randrange(4) for _ in range(rng.randrange(6))]
        if rng.random() < 0.5:
            a, b = b, a
        assert common_prefix(a, b) == _naive_prefix(a, b), (a, b)
