"""Reading a pass's next-token scores: normalisers, the top-1, greedy ids and top-k lists.

A pass's logits stay on the device as :class:`Scores` and are normalised only where
they are read; each reading brings what a step needs to the host in one transfer and
checks it there for the NaN a broken pass leaves (no synchronisation of its own).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from pairscope.errors import RuntimeFault
from pairscope.runtime.vocab import MatchKey, TokenText


@dataclass(frozen=True)
class TopK:
    """One model's top-k next tokens at a position, merged by match key.

    ``keys`` are in rank order of their merged probability; ``probs[i]`` is the
    summed probability of every id whose string is ``keys[i]``; ``ids[i]`` is the
    most probable of those ids (fed to its own model when the key is chosen).
    ``top_prob`` is the unmerged top-1 token probability.
    """

    keys: tuple[MatchKey, ...]
    probs: tuple[float, ...]
    ids: tuple[int, ...]
    top_prob: float
    top_key: MatchKey

    def prob(self, key: MatchKey) -> float:
        for k, p in zip(self.keys, self.probs):
            if k == key:
                return p
        return 0.0

    def id_of(self, key: MatchKey) -> int | None:
        for k, i in zip(self.keys, self.ids):
            if k == key:
                return i
        return None


def merge_topk(ids: Sequence[int], probs: Sequence[float], keys: Sequence[MatchKey]) -> TopK:
    """Sum the probabilities of ids that share a key; keep the best id per key.

    Args:
        ids: token ids in descending probability order.
        probs: their probabilities.
        keys: their match keys (decoded strings, END, or model-unique keys).
    """
    if len(set(keys)) == len(keys) and all(a >= b for a, b in zip(probs, probs[1:])):
        # No two ids share a key (the usual case): the lists are already merged, and in
        # rank order, as the sort below (stable, on non-increasing probabilities) keeps them.
        return TopK(tuple(keys), tuple(probs), tuple(ids), float(probs[0]), keys[0])
    total: dict[MatchKey, float] = {}
    best: dict[MatchKey, int] = {}
    for i, p, k in zip(ids, probs, keys):
        if k in total:
            total[k] += p
        else:
            total[k] = p
            best[k] = i
    order = sorted(total, key=lambda k: -total[k])
    return TopK(
        keys=tuple(order),
        probs=tuple(total[k] for k in order),
        ids=tuple(best[k] for k in order),
        top_prob=float(probs[0]),
        top_key=keys[0],
    )


def log_normaliser(logits: torch.Tensor) -> torch.Tensor:
    """Each row's log-normaliser ``logsumexp(logits)`` over the last dimension, ``[..., 1]``.

    Raises:
        RuntimeFault: a NaN or +inf logit. It makes its row's log-normaliser
            non-finite (-inf logits, a masked vocabulary entry, do not), so one value
            per row is checked rather than the whole vocabulary.
    """
    norm = torch.logsumexp(logits, dim=-1, keepdim=True)
    check_finite(norm)
    return norm


_NAN_LOGITS = "The model produced NaN or infinite logits."
_NAN_HINT = "Try --dtype float32; the run is resumable with --resume."


def check_finite(norm: torch.Tensor) -> None:
    if not torch.isfinite(norm).all():
        raise RuntimeFault(_NAN_LOGITS, hint=_NAN_HINT)


def _check_values(values: Iterable[float]) -> None:
    """Host-side check of values read from a pass: NaN means a NaN or +inf logit."""
    if any(v != v for v in values):
        raise RuntimeFault(_NAN_LOGITS, hint=_NAN_HINT)


def log_normalise(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities from logits over the last dimension (see :func:`log_normaliser`)."""
    return logits - log_normaliser(logits)


class Scores:
    """Next-token scores of the rows of one pass, normalised only where they are read.

    ``logits`` is ``[R, vocab]``. Scores made by :meth:`of_logits` are raw logits whose
    per-row max and log-normaliser are computed when first read: for every row by
    :meth:`top1` (the base's, at every step) or :attr:`norm`, and for the rows asked
    only by :meth:`logprobs` before that (a guide read at its uncertain rows normalises
    those rows alone). ``norm`` given (or None with ``raw`` false) means the logits are
    log-probabilities already, as a served model's are. The top-1 probability needs no
    full-vocabulary subtraction (``max(l - n) == max(l) - n`` exactly, rounding being
    monotonic), and log-probabilities are made only for the rows a decision reads, with
    the same arithmetic as a full normalisation (each row's reduction is its own: a
    row's normaliser does not depend on which rows it is computed with, tested).
    """

    def __init__(
        self,
        logits: torch.Tensor,
        norm: torch.Tensor | None = None,
        raw: bool = False,
        batch: int | None = None,
    ) -> None:
        self.logits = logits
        self._norm = norm
        # Rows of the pass these scores come from (more than ``logits`` holds when only
        # some rows' logits were computed): a row is normalised as that pass's would be.
        self._batch = int(logits.shape[0]) if batch is None else batch
        self._top: tuple[torch.Tensor, torch.Tensor] | None = None  # max logit and id, once known
        self._raw = raw and norm is None  # the normaliser is still to be computed

    @classmethod
    def of_logits(cls, logits: torch.Tensor, batch: int | None = None) -> Scores:
        """Scores of raw logits ``[R, V]``, normalised lazily (see :func:`_normaliser`):
        the rows read from a pass of ``batch`` rows (None: R).

        Nothing here waits for the device. A NaN or +inf logit (or a row of -inf) makes
        its row's probabilities NaN, and every reading that brings values to the host
        (:meth:`top1`, :class:`TopLists`, :func:`greedy`) checks them there and raises
        ``RuntimeFault``: no separate synchronisation for the check.
        """
        return cls(logits, raw=True, batch=batch)

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    @property
    def norm(self) -> torch.Tensor | None:
        """Each row's log-normaliser ``[R, 1]`` (None: log-probabilities already)."""
        if self._raw:
            (values, ids), self._norm = _rows_normaliser(self.logits, self._batch)
            self._top, self._raw = (values, ids), False
        return self._norm

    def top1(self) -> tuple[list[float], list[int]]:
        """Each row's top-1 probability and id: one host transfer for both."""
        norm = self.norm
        values, ids = self._top if self._top is not None else first_max(self.logits)
        if norm is not None:
            values = values - norm[:, 0]
        probs, ids_ = torch.stack((values.exp().double(), ids.double())).tolist()
        _check_values(probs)
        return probs, [int(i) for i in ids_]

    def top_lists(self, rows: Sequence[int], k: int) -> TopLists:
        """:class:`TopLists` of these rows, from the logits and the rows' normalisers
        (computed for all rows once, as :meth:`top1` needs them anyway)."""
        return TopLists.read(self.ranked(rows, k))[0]

    def ranked(self, rows: Sequence[int], k: int) -> Ranked:
        """These rows' top-``k`` log-probabilities and ids, still on the device (for
        :meth:`TopLists.read`): the top-k of the logits, normalised at the k values."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.logits.device)
        logits = self.logits.index_select(0, index)
        norm = self.norm
        return TopLists.rank(logits, k, None if norm is None else norm.index_select(0, index))

    def logprobs(self, rows: Sequence[int] | None = None) -> torch.Tensor:
        """Log-probabilities ``[len(rows), vocab]`` of these rows (all rows: None)."""
        logits = self.logits
        subset = rows is not None and list(rows) != list(range(len(self)))
        if subset:
            assert rows is not None
            index = torch.tensor(list(rows), dtype=torch.long, device=logits.device)
            logits = logits.index_select(0, index)
            if self._raw:  # only these rows are normalised
                return logits - _rows_normaliser(logits, self._batch)[1]
            norm = None if self._norm is None else self._norm.index_select(0, index)
        else:
            norm = self.norm
        return logits if norm is None else logits - norm


@torch.inference_mode()
def _normaliser(logits: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Each row's (max logit, its id) and log-normaliser ``[R, 1]``.

    The normaliser is ``torch.logsumexp``'s own arithmetic (max, shift, exp, sum, log,
    add), so it equals it bit for bit (tested), reusing the max the top-1 needs. The
    shifted logits are written into a buffer kept between calls: a fresh tensor of
    16 x 262k floats costs about as much in page faults as the exp itself. It runs in
    inference mode wherever it is called (a lazy read comes after the pass's own
    inference-mode block), so the kept buffer may always be written in place.
    """
    values, ids = first_max(logits)
    values = values[:, None]
    shift = values.masked_fill(values.abs() == math.inf, 0.0)
    shifted = torch.sub(logits, shift, out=_workspace(logits))
    norm = shifted.exp_().sum(dim=-1, keepdim=True).log_().add_(shift)
    return (values[:, 0], ids), norm


def _rows_normaliser(
    logits: torch.Tensor, batch: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """:func:`_normaliser` of some rows of a pass of ``batch`` rows, as the whole pass's
    normalisation computes it. A reduction with one output splits its row between
    threads (another summation order than the row-by-row reduction of several rows
    gives), so a lone row of a wider pass is reduced beside a copy of itself."""
    if logits.shape[0] == 1 and batch > 1:
        (values, ids), norm = _normaliser(logits.repeat(2, 1))
        return (values[:1], ids[:1]), norm[:1]
    return _normaliser(logits)


_WORKSPACES: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _workspace(like: torch.Tensor) -> torch.Tensor:
    """A scratch tensor of ``like``'s shape, reused by every call with the same vocabulary,
    dtype and device (one per model; it grows to the widest batch seen)."""
    rows, vocab = like.shape
    key = (int(vocab), like.dtype, like.device)
    buffer = _WORKSPACES.get(key)
    if buffer is None or buffer.shape[0] < rows:
        buffer = _WORKSPACES[key] = torch.empty((rows, vocab), dtype=like.dtype, device=like.device)
    return buffer[:rows]


def block_maxima(scores: torch.Tensor, block: int) -> tuple[torch.Tensor, int]:
    """Each row's maximum per whole block of ``block`` scores ``[R, V // block]`` (plain
    reductions, no indices), and where the last, shorter block starts."""
    rows, vocab = scores.shape
    cut = vocab // block * block
    return scores[:, :cut].reshape(rows, cut // block, block).amax(dim=-1), cut


# first_max's block: a row's maxima are taken per block of this many logits, then only
# the first block that holds the row's maximum is searched for its index.
MAX_BLOCK = 512


@torch.inference_mode()
def first_max(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's maximum and the index of its first occurrence, as ``logits.max(dim=-1)``
    returns them (tested against it: ties, +-inf, NaN rows, any vocabulary size).

    ``max`` with indices is an index-tracking reduction that CPUs run several times
    slower than a plain maximum (1.4 ms against 0.2 ms on 16 x 262k logits here). So
    the maxima are taken per block (plain reductions), and the index is sought only in
    the first block whose maximum is the row's. A NaN row's index is not that of
    ``max``; its NaN value is what every host reading checks and raises on.
    """
    vocab = logits.shape[-1]
    if vocab // MAX_BLOCK < 2 or logits.stride(-1) != 1:
        values, ids = logits.max(dim=-1)
        return values, ids
    heads, cut = block_maxima(logits, MAX_BLOCK)
    if cut < vocab:  # the last, shorter block
        heads = torch.cat([heads, logits[:, cut:].amax(dim=-1, keepdim=True)], dim=1)
    values = heads.amax(dim=-1, keepdim=True)
    first = (heads == values).to(torch.uint8).argmax(dim=-1, keepdim=True)
    starts = first * MAX_BLOCK
    at = (starts + torch.arange(MAX_BLOCK, device=logits.device)).clamp_(max=vocab - 1)
    within = (logits.gather(1, at) == values).to(torch.uint8).argmax(dim=-1, keepdim=True)
    return values[:, 0], (starts + within)[:, 0]


# block_top_k's block: a row's maxima are taken per block of this many scores, and only
# the blocks of the k highest maxima are searched for the row's top-k.
TOP_BLOCK = 128


def block_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` largest scores (``k`` capped at the vocabulary) and their ids, as
    ``torch.topk`` returns them: the same values in the same order, and the same ids
    wherever two scores are not equal (among equal scores ``topk`` leaves the order,
    and at the k-th value the choice, open; tested against it).

    ``topk`` over a whole row of a large vocabulary is a selection over every score
    (about 0.6 ms a row for 262k scores here); a plain maximum per block is several
    times cheaper. Every one of a row's top-k scores lies in a block whose maximum is
    among the row's k highest block maxima (a score outside them has k block maxima,
    each a distinct score, at least as high), so ``topk`` runs over those k blocks and
    the last, shorter one alone: 6.5k candidates instead of 262k for k = 50, for 2-4x
    less time at 1-16 rows. A NaN makes its block's maximum NaN, which ``topk`` ranks
    first, so it still heads its row's list, where every host reading checks for it.
    Vocabularies under ``4·k·TOP_BLOCK`` scores take the plain ``topk``.
    """
    rows, vocab = (int(n) for n in scores.shape)
    k = min(k, vocab)
    if vocab < 4 * k * TOP_BLOCK or scores.stride(-1) != 1:
        values, ids = torch.topk(scores, k)
        return values, ids
    heads, cut = block_maxima(scores, TOP_BLOCK)
    chosen = torch.topk(heads, k).indices.sort(dim=-1).values
    within = torch.arange(TOP_BLOCK, device=scores.device)
    at = (chosen[:, :, None] * TOP_BLOCK + within).reshape(rows, k * TOP_BLOCK)
    if cut < vocab:  # the last, shorter block is always searched
        tail = torch.arange(cut, vocab, device=scores.device).expand(rows, vocab - cut)
        at = torch.cat([at, tail], dim=1)
    values, picked = torch.topk(scores.gather(1, at), k)
    return values, at.gather(1, picked)


def greedy(logprobs: torch.Tensor) -> list[int]:
    """Each row's argmax of a logprob matrix: one host transfer (ids and the values the
    NaN check reads)."""
    values, ids = first_max(logprobs)
    tops, ids_ = torch.stack((values.double(), ids.double())).tolist()
    _check_values(tops)
    return [int(i) for i in ids_]


# A top-k still on the device: values (log-probabilities) and ids, ``[R, k]`` each.
Ranked = tuple[torch.Tensor, torch.Tensor]


class TopLists:
    """The top-``k`` ids and probabilities of every row of a logprob matrix, from one
    batched top-k and one host transfer (a decision then reads them per row)."""

    @staticmethod
    def rank(scores: torch.Tensor, k: int, norm: torch.Tensor | None = None) -> Ranked:
        """Each row's top-``k`` of ``scores`` ``[R, V]`` (``k`` at most ``V``), as
        log-probabilities: ``scores`` are log-probabilities, or raw logits with their
        normalisers ``norm`` ``[R, 1]``, subtracted at the ``k`` values alone (no ``[R, V]``
        log-probabilities to allocate and fill). Subtracting a row's normaliser is
        monotonic, so the ids and values are those of the log-probabilities' top-k, unless
        the subtraction rounds two different logits to one value (an order ``topk`` leaves
        open anyway)."""
        values, indices = block_top_k(scores, k)
        return (values if norm is None else values - norm), indices

    def __init__(self, logprobs: torch.Tensor, k: int) -> None:
        self._fill(*_host([TopLists.rank(logprobs, k)])[0])

    @classmethod
    def of_logits(cls, logits: torch.Tensor, norm: torch.Tensor, k: int) -> TopLists:
        """The lists of raw logits ``[R, V]`` with their normalisers ``[R, 1]``."""
        return cls.read(cls.rank(logits, k, norm))[0]

    @classmethod
    def read(cls, *tops: Ranked) -> list[TopLists]:
        """The lists of several device-side top-k results, in one host transfer for all
        (a BlendIn step reads the base's and the guide's together)."""
        out = []
        for k, probs, ids in _host(list(tops)):
            lists = cls.__new__(cls)
            lists._fill(k, probs, ids)
            out.append(lists)
        return out

    def _fill(self, k: int, probs: list[list[float]], ids: list[list[int]]) -> None:
        self.k, self.probs, self.ids = k, probs, ids
        _check_values(row[0] for row in probs)

    def top(self, i: int, vocab: TokenText, k: int) -> TopK:
        """Row ``i``'s top-``k`` (``k`` at most this list's), merged by match key."""
        ids, probs = self.ids[i][:k], self.probs[i][:k]
        return merge_topk(ids, probs, vocab.keys(ids))


def _host(tops: list[Ranked]) -> list[tuple[int, list[list[float]], list[list[int]]]]:
    """Probabilities and ids of device-side top-k results, brought over in one transfer."""
    flat = torch.cat([t.double().flatten() for values, ids in tops for t in (values.exp(), ids)])
    host = flat.tolist()
    out = []
    at = 0
    for top, _ in tops:
        rows, k = (int(n) for n in top.shape)
        probs = [host[at + r * k : at + (r + 1) * k] for r in range(rows)]
        at += rows * k
        ids = [[int(i) for i in host[at + r * k : at + (r + 1) * k]] for r in range(rows)]
        at += rows * k
        out.append((k, probs, ids))
    return out


def top_k(logprobs: torch.Tensor, vocab: TokenText, k: int) -> TopK:
    """A model's top-``k`` next tokens at one position, merged by match key."""
    return TopLists(logprobs.unsqueeze(0), k).top(0, vocab, k)
