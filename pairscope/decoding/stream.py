"""One model's batched KV cache, kept in sync with each row's target token ids.

Rows of a batch need different things at each step: one appends its own token,
another must roll back two tokens and feed four re-encoded ones. A transformers
cache can only be cropped for all rows at once, so rows never crop here.
Instead the cache lives in *slot* space: every forward call adds the same number
of slots to every row, and a per-row attention mask says which slots hold live
tokens. Rolling a row back just masks its dead slots; new tokens are fed
right-aligned in the new block, with explicit position ids that count only live
tokens. Attention over masked slots is exactly zero, so the next-token
distribution equals that of an uncached pass over the row's live ids (tested).

Sliding-window layers (Gemma 2/3, Mistral) count their window in *live tokens*:
such a model keeps every slot of every layer and gets explicit 4-D masks in which
a query sees a key only if the key is live, not later than the query, and (in a
sliding layer) fewer than ``window`` positions back. Position ids count live
tokens, so neither dead slots from rollbacks nor padding shrink a row's window,
and a result never depends on which samples share a batch (tested against
uncached passes past the window).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pairscope.decoding.kvcache import in_place
from pairscope.decoding.strategies import TopK, merge_topk
from pairscope.decoding.vocab import TokenText
from pairscope.errors import RuntimeFault


@dataclass
class _Row:
    """What is in the cache for one row: live token ids and the slot of each."""

    ids: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists.

    Called for every row at every step, where the answer is nearly always "all of the
    shorter one": that is one list comparison in C; otherwise a bisection over slice
    comparisons (log n of them) finds the first difference.
    """
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


# A shared prompt prefix shorter than this is not worth a separate pass.
MIN_SHARED_PREFIX = 8


def shared_prefix(seqs: list[list[int]]) -> list[int]:
    """The longest prefix of every sequence that leaves at least one token of each
    (so a pass that starts from it always has a last token to read logits at)."""
    if not seqs:
        return []
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for other in seqs[1:]:
        n = min(n, common_prefix(first, other))
    return first[: max(n, 0)]


def window_layout(config: Any) -> tuple[int | None, list[str]]:
    """(sliding window, the attention kinds of the model's layers): (None, []) for a
    model whose every layer attends to the whole context."""
    window = getattr(config, "sliding_window", None)
    kinds = list(getattr(config, "layer_types", None) or [])
    if not window:
        return None, []
    if kinds:
        return (int(window), kinds) if "sliding_attention" in kinds else (None, [])
    # A sliding window without per-layer kinds (Mistral): every layer slides.
    return int(window), ["sliding_attention"]


def cache_keyword(model: Any) -> str:
    """The forward() keyword of the KV cache: transformers renamed `past_key_values`
    to `cache` (5.2x); accept both."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class ModelStream:
    """Batched incremental forward passes for one model."""

    # One narrow pass that brings every row up to date is cheaper than lazy catch-ups
    # (see Engine._guide_sync): a pass costs rows x width.
    sync_all_rows = True
    # A one-row stream (a shared prompt prefix) can be copied into a batch: fork().
    can_fork = True

    def __init__(self, model: Any, batch: int, pad_id: int = 0) -> None:
        from transformers import DynamicCache

        self.model = model
        self.device = next(model.parameters()).device
        self.window, kinds = window_layout(
            getattr(model.config, "get_text_config", lambda: model.config)()
        )
        self._mixed = len(set(kinds)) > 1
        self.cache = in_place(DynamicCache(config=model.config), keep_all=self.window is not None)
        self.rows = [_Row() for _ in range(batch)]
        self.mask = torch.zeros((batch, 0), dtype=torch.long, device=self.device)
        # Position id of each slot (only read for sliding-window masks).
        self.pos = torch.zeros((batch, 0), dtype=torch.long, device=self.device)
        self._dtype = next(model.parameters()).dtype
        self.pad_id = pad_id
        self._cache_kw = cache_keyword(model)
        self.passes = 0  # forward passes so far (benchmarks and tests read it)

    @property
    def slots(self) -> int:
        return int(self.mask.shape[1])

    def select(self, keep: list[int]) -> None:
        """Keep only the rows ``keep`` (in that order), e.g. after some rows finished."""
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask.index_select(0, index)
        self.pos = self.pos.index_select(0, index)
        self.rows = [self.rows[i] for i in keep]

    def fork(self, batch: int) -> ModelStream:
        """A new stream of ``batch`` rows, each a copy of this one-row stream's state
        (a shared prompt prefix computed once, reused by every row and every batch)."""
        if len(self.rows) != 1:
            raise ValueError("Only a one-row stream can be forked.")
        out = copy.copy(self)
        out.cache = copy.deepcopy(self.cache)
        if batch > 1:  # the deep copy already is the one row (teacher forcing forks one)
            out.cache.batch_repeat_interleave(batch)
        out.mask = self.mask.repeat(batch, 1)
        out.pos = self.pos.repeat(batch, 1)
        row = self.rows[0]
        out.rows = [_Row(list(row.ids), list(row.slots)) for _ in range(batch)]
        return out

    def _rows_cache(self, index: torch.Tensor) -> Any:
        """A cache holding only the rows ``index`` (copies of their keys and values)."""
        sub = copy.copy(self.cache)
        sub.layers = []
        layer: Any
        for layer in self.cache.layers:
            part = copy.copy(layer)
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                part.keys = layer.keys.index_select(0, index)
                part.values = layer.values.index_select(0, index)
            sub.layers.append(part)
        return sub

    def _merge_rows(self, sub: Any, index: torch.Tensor, width: int) -> None:
        """Write a row-subset cache back: every other row gets ``width`` empty (masked) slots.

        Only the last ``width`` slots are new, in every layer (a sliding-window layer may
        store fewer old slots than a full one), so only those are written.
        """
        for i, (full, part) in enumerate(zip(self.cache.layers, sub.layers)):
            if getattr(part, "keys", None) is None or not part.keys.numel():
                continue
            if hasattr(full, "append_masked") and full.keys is not None and full.keys.numel():
                full.append_masked(width, index, part)
                continue
            # A layer type this module does not know: rebuild it whole, aligned from the end.
            batch, length = len(self.rows), part.keys.shape[-2]
            merged = []
            for old, new in ((full.keys, part.keys), (full.values, part.values)):
                out = torch.zeros((batch, *new.shape[1:]), dtype=new.dtype, device=new.device)
                carried = min(
                    length - width, 0 if old is None or not old.numel() else old.shape[-2]
                )
                if carried > 0:
                    out[:, :, length - width - carried : length - width] = old[:, :, -carried:]
                out.index_copy_(0, index, new)
                merged.append(out)
            part.keys, part.values = merged
            self.cache.layers[i] = part

    def _masks(self, live: torch.Tensor, key_pos: torch.Tensor, query_pos: torch.Tensor) -> Any:
        """4-D additive masks [R, 1, width, slots] by live-token distance: a query sees a
        live key at or before its position, and in a sliding layer fewer than
        ``window`` positions back (what an uncached pass over the live ids sees)."""
        assert self.window is not None
        distance = query_pos[:, :, None] - key_pos[:, None, :]  # [R, width, slots]
        visible = (live[:, None, :] > 0) & (distance >= 0)
        floor = torch.finfo(self._dtype).min
        zero = torch.zeros((), dtype=self._dtype, device=self.device)
        full = torch.where(visible, zero, floor)[:, None]
        sliding = torch.where(visible & (distance < self.window), zero, floor)[:, None]
        if self._mixed:
            return {"full_attention": full, "sliding_attention": sliding}
        return sliding

    def forward(self, targets: dict[int, list[int]]) -> torch.Tensor:
        """Bring rows to their target ids and return their next-token logprobs
        ``[len(targets), vocab]`` (float32), in the order of ``targets``.

        Raises:
            RuntimeFault: a NaN or +inf logit (see :func:`log_normaliser`).
        """
        scores = self.scores(targets)
        if scores.norm is not None:
            _check_finite(scores.norm)
        return scores.logprobs()

    @torch.inference_mode()
    def scores(self, targets: dict[int, list[int]]) -> Scores:
        """Bring rows to their target ids and return their next-token :class:`Scores`.

        Args:
            targets: row index -> the full token id list that row should hold
                (prompt + response). Rows not named are left untouched.

        Returns:
            the scores of the named rows, in the order of ``targets``.
        """
        if not targets:
            return Scores(torch.empty((0, 0)))
        return Scores.of_logits(self._advance(targets, 1)[:, -1, :])

    def forced(self, ids: list[int], n: int) -> torch.Tensor:
        """Teacher forcing on a one-row stream: bring the row to ``ids`` and return the
        float32 logits ``[n, vocab]`` after each of the last ``n`` ids (row t predicts
        what follows ``ids[: len(ids) - n + t + 1]``). The row keeps its cache, so a
        forked copy of a shared prompt prefix is computed once for every sample."""
        if len(self.rows) != 1:
            raise ValueError("Teacher forcing runs on a one-row stream.")
        return self._advance({0: ids}, n)[0]

    @torch.inference_mode()
    def _advance(self, targets: dict[int, list[int]], tail: int) -> torch.Tensor:
        """One pass bringing the named rows to their target ids: the float32 logits
        ``[len(targets), tail, vocab]`` after each row's last ``tail`` ids, in the order of
        ``targets`` (each row is fed at least its last ``tail`` ids)."""
        order = list(targets)
        self.passes += 1
        feeds: dict[int, tuple[int, list[int]]] = {}
        for r in order:
            row, want = self.rows[r], targets[r]
            if len(want) < tail:
                raise RuntimeFault("A model was asked to continue an empty context.")
            # Keep the longest common prefix, but always feed the last ``tail`` tokens:
            # the logits of cached tokens are not kept.
            keep = min(common_prefix(row.ids, want), len(want) - tail)
            if keep < len(row.ids):
                dead = torch.tensor(row.slots[keep:], dtype=torch.long, device=self.device)
                self.mask[r, dead] = 0
                del row.ids[keep:], row.slots[keep:]
            feeds[r] = (keep, want[keep:])
        width = max(len(new) for _, new in feeds.values())
        batch = len(self.rows)
        start = self.slots
        # Only the named rows are computed when they are fewer than the batch: a forward
        # pass costs rows x width, and the other rows would only carry masked pads.
        subset = len(order) < batch
        computed = order if subset else list(range(batch))
        # [R, width] inputs; each row's new tokens right-aligned, pads masked out. Built
        # as lists and sent to the device once each.
        id_rows, block_rows, pos_rows = [], [], []
        for r in computed:
            if r in feeds:
                keep, new = feeds[r]
                pad = width - len(new)
                id_rows.append([self.pad_id] * pad + new)
                block_rows.append([0] * pad + [1] * len(new))
                # Pads get the row's last live position so no position id is out of range.
                pos_rows.append([max(keep - 1, 0)] * pad + list(range(keep, keep + len(new))))
            else:
                id_rows.append([self.pad_id] * width)
                block_rows.append([0] * width)
                pos_rows.append([max(len(self.rows[r].ids) - 1, 0)] * width)
        input_ids = torch.tensor(id_rows, dtype=torch.long)
        block = torch.tensor(block_rows, dtype=torch.long, device=self.device)
        positions = torch.tensor(pos_rows, dtype=torch.long)
        index = torch.tensor(computed, dtype=torch.long, device=self.device)
        cache = self._rows_cache(index) if subset else self.cache
        past_mask = self.mask.index_select(0, index) if subset else self.mask
        positions = positions.to(self.device)
        attention: Any = torch.cat([past_mask, block], dim=1)
        if self.window is not None:
            past_pos = self.pos.index_select(0, index) if subset else self.pos
            attention = self._masks(attention, torch.cat([past_pos, positions], dim=1), positions)
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=attention,
            position_ids=positions,
            **{self._cache_kw: cache},
            cache_position=torch.arange(start, start + width, device=self.device),
            use_cache=True,
            logits_to_keep=tail,
        )
        full_block = torch.zeros((batch, width), dtype=torch.long, device=self.device)
        full_block.index_copy_(0, index, block)
        self.mask = torch.cat([self.mask, full_block], dim=1)
        if self.window is not None:
            full_pos = torch.zeros((batch, width), dtype=torch.long, device=self.device)
            full_pos.index_copy_(0, index, positions)
            self.pos = torch.cat([self.pos, full_pos], dim=1)
        if subset:
            self._merge_rows(cache, index, width)
        for r, (_, new) in feeds.items():
            row = self.rows[r]
            row.ids.extend(new)
            row.slots.extend(range(start + width - len(new), start + width))
        logits = out.logits[:, -tail:, :].float()
        if order != computed:
            logits = logits.index_select(0, torch.tensor(order, device=self.device))
        return logits


def log_normaliser(logits: torch.Tensor) -> torch.Tensor:
    """Each row's log-normaliser ``logsumexp(logits)`` over the last dimension, ``[..., 1]``.

    Raises:
        RuntimeFault: a NaN or +inf logit. It makes its row's log-normaliser
            non-finite (-inf logits, a masked vocabulary entry, do not), so one value
            per row is checked rather than the whole vocabulary.
    """
    norm = torch.logsumexp(logits, dim=-1, keepdim=True)
    _check_finite(norm)
    return norm


_NAN_LOGITS = "The model produced NaN or infinite logits."
_NAN_HINT = "Try --dtype float32; the run is resumable with --resume."


def _check_finite(norm: torch.Tensor) -> None:
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
    ) -> None:
        self.logits = logits
        self._norm = norm
        self._top: tuple[torch.Tensor, torch.Tensor] | None = None  # max logit and id, once known
        self._raw = raw and norm is None  # the normaliser is still to be computed

    @classmethod
    def of_logits(cls, logits: torch.Tensor) -> Scores:
        """Scores of raw logits ``[R, V]``, normalised lazily (see :func:`_normaliser`).

        Nothing here waits for the device. A NaN or +inf logit (or a row of -inf) makes
        its row's probabilities NaN, and every reading that brings values to the host
        (:meth:`top1`, :class:`TopLists`, :func:`greedy`) checks them there and raises
        ``RuntimeFault``: no separate synchronisation for the check.
        """
        return cls(logits, raw=True)

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    @property
    def norm(self) -> torch.Tensor | None:
        """Each row's log-normaliser ``[R, 1]`` (None: log-probabilities already)."""
        if self._raw:
            (values, ids), self._norm = _normaliser(self.logits)
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
        index = torch.tensor(list(rows), dtype=torch.long, device=self.logits.device)
        logits = self.logits.index_select(0, index)
        norm = self.norm
        if norm is None:
            return TopLists(logits, k)
        return TopLists.of_logits(logits, norm.index_select(0, index), k)

    def logprobs(self, rows: Sequence[int] | None = None) -> torch.Tensor:
        """Log-probabilities ``[len(rows), vocab]`` of these rows (all rows: None)."""
        logits = self.logits
        subset = rows is not None and list(rows) != list(range(len(self)))
        if subset:
            assert rows is not None
            index = torch.tensor(list(rows), dtype=torch.long, device=logits.device)
            logits = logits.index_select(0, index)
            if self._raw:  # only these rows are normalised
                return logits - _rows_normaliser(logits, len(self))
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


def _rows_normaliser(logits: torch.Tensor, batch: int) -> torch.Tensor:
    """The normaliser of some rows of a pass of ``batch`` rows, as the whole pass's
    normalisation computes it. A reduction with one output splits its row between
    threads (another summation order than the row-by-row reduction of several rows
    gives), so a lone row of a wider pass is reduced beside a copy of itself."""
    if logits.shape[0] == 1 and batch > 1:
        return _normaliser(logits.repeat(2, 1))[1][:1]
    return _normaliser(logits)[1]


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
    rows, vocab = logits.shape
    blocks = vocab // MAX_BLOCK
    if blocks < 2 or logits.stride(-1) != 1:
        values, ids = logits.max(dim=-1)
        return values, ids
    cut = blocks * MAX_BLOCK
    heads = logits[:, :cut].reshape(rows, blocks, MAX_BLOCK).amax(dim=-1)
    if cut < vocab:  # the last, shorter block
        heads = torch.cat([heads, logits[:, cut:].amax(dim=-1, keepdim=True)], dim=1)
    values = heads.amax(dim=-1, keepdim=True)
    first = (heads == values).to(torch.uint8).argmax(dim=-1, keepdim=True)
    starts = first * MAX_BLOCK
    at = (starts + torch.arange(MAX_BLOCK, device=logits.device)).clamp_(max=vocab - 1)
    within = (logits.gather(1, at) == values).to(torch.uint8).argmax(dim=-1, keepdim=True)
    return values[:, 0], (starts + within)[:, 0]


def greedy(logprobs: torch.Tensor) -> list[int]:
    """Each row's argmax of a logprob matrix: one host transfer (ids and the values the
    NaN check reads)."""
    values, ids = first_max(logprobs)
    tops, ids_ = torch.stack((values.double(), ids.double())).tolist()
    _check_values(tops)
    return [int(i) for i in ids_]


class TopLists:
    """The top-``k`` ids and probabilities of every row of a logprob matrix, from one
    batched top-k and one host transfer (a decision then reads them per row)."""

    def __init__(self, logprobs: torch.Tensor, k: int) -> None:
        values, indices = torch.topk(logprobs, min(k, int(logprobs.shape[-1])))
        self._read(values, indices)

    @classmethod
    def of_logits(cls, logits: torch.Tensor, norm: torch.Tensor, k: int) -> TopLists:
        """The lists of raw logits ``[R, V]`` with their normalisers ``[R, 1]``: the top-k
        of the logits, normalised at the ``k`` values alone (no ``[R, V]`` logprobs to
        allocate and fill). Subtracting a row's normaliser is monotonic, so the ids and
        values are those of the logprobs' top-k, unless the subtraction rounds two
        different logits to one value (an order ``topk`` leaves open anyway)."""
        values, indices = torch.topk(logits, min(k, int(logits.shape[-1])))
        lists = cls.__new__(cls)
        lists._read(values - norm, indices)
        return lists

    def _read(self, values: torch.Tensor, indices: torch.Tensor) -> None:
        self.k = int(values.shape[-1])
        both = torch.stack((values.exp().double(), indices.double())).tolist()
        self.probs: list[list[float]] = both[0]
        self.ids: list[list[int]] = [[int(i) for i in row] for row in both[1]]
        _check_values(row[0] for row in self.probs)

    def top(self, i: int, vocab: TokenText, k: int) -> TopK:
        """Row ``i``'s top-``k`` (``k`` at most this list's), merged by match key."""
        ids, probs = self.ids[i][:k], self.probs[i][:k]
        return merge_topk(ids, probs, vocab.keys(ids))


def top_k(logprobs: torch.Tensor, vocab: TokenText, k: int) -> TopK:
    """A model's top-``k`` next tokens at one position, merged by match key."""
    return TopLists(logprobs.unsqueeze(0), k).top(0, vocab, k)
