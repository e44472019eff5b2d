"""In-place KV-cache layers against the stock transformers layers they replace."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from pairscope.runtime.kvcache import MIN_CAPACITY, InPlaceLayer, InPlaceSlidingLayer


def _kv(batch: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 2, width, 8), torch.randn(batch, 2, width, 8)


def _drive(stock, ours, widths, select_at=None):
    torch.manual_seed(0)
    batch = 4
    for step, width in enumerate(widths):
        if step == select_at:
            index = torch.tensor([2, 0, 3])
            stock.batch_select_indices(index)
            ours.batch_select_indices(index)
            batch = 3
        k, v = _kv(batch, width)
        sk, sv = stock.update(k, v)
        ok, ov = ours.update(k.clone(), v.clone())
        assert torch.equal(sk, ok) and torch.equal(sv, ov), step
        assert stock.get_seq_length() == ours.get_seq_length()
        assert stock.get_mask_sizes(1) == ours.get_mask_sizes(1)


def test_full_layer_returns_what_the_stock_layer_returns():
    widths = [5, 1, 1, 3, 1, 70, 1, 2, 1, 1]
    _drive(DynamicLayer(), InPlaceLayer(), widths, select_at=4)


def test_sliding_layer_returns_what_the_stock_layer_returns():
    widths = [5, 1, 1, 3, 1, 70, 1, 2, 1, 1, 40, 1, 1]
    _drive(DynamicSlidingWindowLayer(sliding_window=16), InPlaceSlidingLayer(16), widths, 6)


def test_appends_write_in_place_until_the_buffer_is_full():
    layer = InPlaceLayer()
    k, v = _kv(2, 3)
    layer.update(k, v)
    buffer = layer._kbuf
    assert buffer is not None and buffer.shape[-2] == MIN_CAPACITY
    for _ in range(MIN_CAPACITY - 3):
        layer.update(*_kv(2, 1))
    assert layer._kbuf is buffer  # no reallocation, no copy of the old slots
    assert layer.keys is not None and layer.keys.data_ptr() == buffer.data_ptr()
    layer.update(*_kv(2, 1))
    assert layer._kbuf is not buffer and layer.keys.shape[-2] == MIN_CAPACITY + 1


def test_append_masked_adds_zero_slots_except_for_named_rows():
    layer = InPlaceLayer()
    layer.update(*_kv(3, 4))
    part = InPlaceLayer()
    part.update(*_kv(1, 6))
    before = layer.keys.clone()
    layer.append_masked(2, torch.tensor([1]), part)
    assert layer.keys.shape[-2] == 6
    assert torch.equal(layer.keys[:, :, :4], before)
    assert torch.equal(layer.keys[1, :, 4:], part.keys[0, :, -2:])
    assert not layer.keys[0, :, 4:].any() and not layer.keys[2, :, 4:].any()
