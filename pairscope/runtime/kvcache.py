"""KV-cache layers that append in place.

transformers' ``DynamicLayer`` appends by concatenation, which copies a layer's
whole cache on every forward call: on a CPU that was about a fifth of guided
decoding's time (the torch profiler's ``aten::cat``). These layers keep keys and
values in a buffer with spare room (doubling when full) and expose the filled part
as views, so an append writes only the new slots. They behave exactly like the
layers they replace; anything that replaces ``keys``/``values`` from outside (batch
selection, repeat, a row-subset copy) is picked up on the next append, at the cost
of one copy then.

The sliding-window layer keeps at least its last ``sliding_window - 1`` slots (more
until the buffer is next regrown) and hands attention exactly the slots the stock
layer would: the last ``sliding_window - 1`` plus the new ones.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

MIN_CAPACITY = 64


def _is_prefix_view(t: torch.Tensor | None, buf: torch.Tensor | None) -> bool:
    return (
        t is not None
        and buf is not None
        and t.numel() > 0
        and t.data_ptr() == buf.data_ptr()
        and t.stride() == buf.stride()
        and t.shape[:2] == buf.shape[:2]
        and t.shape[-1] == buf.shape[-1]
    )


class _InPlace:
    """Keys and values in buffers with spare room; ``keys``/``values`` are views."""

    keys: torch.Tensor | None
    values: torch.Tensor | None
    _kbuf: torch.Tensor | None = None
    _vbuf: torch.Tensor | None = None
    _keep: int | None = None  # slots to carry over when regrowing (sliding window); None = all

    def _append(self, key_states: torch.Tensor, value_states: torch.Tensor) -> int:
        """Write the new slots after the stored ones; return how many are stored now."""
        old_k, old_v = self.keys, self.values
        n = old_k.shape[-2] if old_k is not None and old_k.numel() else 0
        w = key_states.shape[-2]
        buf = self._kbuf
        if (
            buf is None
            or n + w > buf.shape[-2]
            or buf.shape[:2] != key_states.shape[:2]
            or buf.dtype != key_states.dtype
            or (n and not _is_prefix_view(old_k, buf))
        ):
            carry = n if self._keep is None else min(n, self._keep)
            capacity = max(MIN_CAPACITY, 2 * (carry + w))
            shape = (*key_states.shape[:2], capacity, key_states.shape[-1])
            kbuf = key_states.new_empty(shape)
            vbuf = value_states.new_empty((*shape[:3], value_states.shape[-1]))
            if carry:
                assert old_k is not None and old_v is not None
                kbuf[:, :, :carry] = old_k[:, :, n - carry :]
                vbuf[:, :, :carry] = old_v[:, :, n - carry :]
            self._kbuf, self._vbuf, n = kbuf, vbuf, carry
        assert self._kbuf is not None and self._vbuf is not None
        self._kbuf[:, :, n : n + w] = key_states
        self._vbuf[:, :, n : n + w] = value_states
        self.keys = self._kbuf[:, :, : n + w]
        self.values = self._vbuf[:, :, : n + w]
        return n + w

    def append_masked(
        self, width: int, index: torch.Tensor | None = None, part: Any = None
    ) -> None:
        """Add ``width`` slots to every row: zeros, except rows ``index``, which get the
        last ``width`` slots of ``part`` (a row-subset copy that ran the forward pass;
        None: zeros for every row, room for rows admitted later)."""
        assert self.keys is not None and self.values is not None
        blocks = []
        for held, name in ((self.keys, "keys"), (self.values, "values")):
            zeros = held.new_zeros((held.shape[0], held.shape[1], width, held.shape[-1]))
            if part is not None and index is not None:
                zeros.index_copy_(0, index, getattr(part, name)[:, :, -width:])
            blocks.append(zeros)
        self._append(*blocks)
        if hasattr(self, "cumulative_length"):
            self.cumulative_length += width


class InPlaceLayer(_InPlace, DynamicLayer):
    """A full-attention layer (``DynamicLayer``) that appends in place."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._append(key_states, value_states)
        assert self.keys is not None and self.values is not None
        return self.keys, self.values


class InPlaceSlidingLayer(_InPlace, DynamicSlidingWindowLayer):
    """A sliding-window layer (``DynamicSlidingWindowLayer``) that appends in place."""

    def __init__(self, sliding_window: int, **kwargs: Any) -> None:
        super().__init__(sliding_window=sliding_window, **kwargs)
        self._keep = sliding_window - 1

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.cumulative_length += key_states.shape[-2]
        stored = self._append(key_states, value_states)
        assert self.keys is not None and self.values is not None
        # Exactly what the stock layer returns: its last window - 1 slots plus the new ones.
        visible = min(stored, self.sliding_window - 1 + key_states.shape[-2])
        return self.keys[:, :, stored - visible :], self.values[:, :, stored - visible :]


def in_place(cache: Any, keep_all: bool = False) -> Any:
    """Swap a ``DynamicCache``'s stock layers for in-place ones (others are kept).

    ``keep_all``: sliding-window layers keep every slot too (the stream then masks
    by live-token distance, so a window never counts dead or padding slots)."""
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicSlidingWindowLayer:
            cache.layers[i] = (
                InPlaceLayer() if keep_all else InPlaceSlidingLayer(layer.sliding_window)
            )
        elif type(layer) is DynamicLayer:
            cache.layers[i] = InPlaceLayer()
    return cache
