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

Caveat, documented in the README: a sliding-window layer (Gemma 3) counts its
window in slots, so once a row holds more slots than the window, dead slots and
left padding shrink that row's effective window slightly, as they do for
``generate()`` with left padding.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from pairscope.errors import RuntimeFault


@dataclass
class _Row:
    """What is in the cache for one row: live token ids and the slot of each."""

    ids: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class ModelStream:
    """Batched incremental forward passes for one model."""

    def __init__(self, model: Any, batch: int, pad_id: int = 0) -> None:
        from transformers import DynamicCache

        self.model = model
        self.device = next(model.parameters()).device
        self.cache = DynamicCache(config=model.config)
        self.rows = [_Row() for _ in range(batch)]
        self.mask = torch.zeros((batch, 0), dtype=torch.long, device=self.device)
        self.pad_id = pad_id
        self.fed_tokens = 0  # live tokens fed, for throughput accounting
        # transformers renamed `past_key_values` to `cache` (5.2x); accept both.
        params = inspect.signature(type(model).forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    @property
    def slots(self) -> int:
        return int(self.mask.shape[1])

    def select(self, keep: list[int]) -> None:
        """Keep only the rows ``keep`` (in that order), e.g. after some rows finished."""
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask.index_select(0, index)
        self.rows = [self.rows[i] for i in keep]

    @torch.inference_mode()
    def forward(self, targets: dict[int, list[int]]) -> torch.Tensor:
        """Bring rows to their target ids and return their next-token logprobs.

        Args:
            targets: row index -> the full token id list that row should hold
                (prompt + response). Rows not named are left untouched.

        Returns:
            float32 log-probabilities of shape [len(targets), vocab], in the order
            of ``targets``.
        """
        order = list(targets)
        if not order:
            return torch.empty((0, 0))
        feeds: dict[int, tuple[int, list[int]]] = {}
        for r in order:
            row, want = self.rows[r], targets[r]
            if not want:
                raise RuntimeFault("A model was asked to continue an empty context.")
            # Keep the longest common prefix, but always feed at least one token:
            # the logits of the last cached token are not kept.
            keep = min(common_prefix(row.ids, want), len(want) - 1)
            if keep < len(row.ids):
                dead = torch.tensor(row.slots[keep:], dtype=torch.long, device=self.device)
                self.mask[r, dead] = 0
                del row.ids[keep:], row.slots[keep:]
            feeds[r] = (keep, want[keep:])
        width = max(len(new) for _, new in feeds.values())
        batch = len(self.rows)
        start = self.slots
        # [B, width] inputs; each row's new tokens right-aligned, pads masked out.
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        block_mask = torch.zeros((batch, width), dtype=torch.long)
        positions = torch.zeros((batch, width), dtype=torch.long)
        for r, (keep, new) in feeds.items():
            n = len(new)
            input_ids[r, width - n :] = torch.tensor(new, dtype=torch.long)
            block_mask[r, width - n :] = 1
            positions[r, width - n :] = torch.arange(keep, keep + n)
            # Pads get the row's last live position so no position id is out of range.
            positions[r, : width - n] = max(keep - 1, 0)
        for r in range(batch):
            if r not in feeds:
                positions[r, :] = max(len(self.rows[r].ids) - 1, 0)
        self.mask = torch.cat([self.mask, block_mask.to(self.device)], dim=1)
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=self.mask,
            position_ids=positions.to(self.device),
            **{self._cache_kw: self.cache},
            cache_position=torch.arange(start, start + width, device=self.device),
            use_cache=True,
            logits_to_keep=1,
        )
        for r, (_, new) in feeds.items():
            row = self.rows[r]
            row.ids.extend(new)
            row.slots.extend(range(start + width - len(new), start + width))
            self.fed_tokens += len(new)
        index = torch.tensor(order, dtype=torch.long, device=self.device)
        logits = out.logits[:, -1, :].index_select(0, index).float()
        if not torch.isfinite(logits).all():
            raise RuntimeFault(
                "The model produced NaN or infinite logits.",
                hint="Try --dtype float32; the run is resumable with --resume.",
            )
        return torch.log_softmax(logits, dim=-1)
