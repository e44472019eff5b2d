"""The local backend: a transformers causal LM in this process.

Loading (embedded pair, GGUF conversion, local directories, Hub ids) lives in
``pairscope/models.py``; this module is the loaded model behind the backend
interface (``backends/base.py``): streams over its KV cache and teacher forcing
that computes a probe's shared prompt prefix once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pairscope.backends.base import ModelSource, Prompts
from pairscope.errors import RuntimeFault
from pairscope.runtime.scores import log_normalise
from pairscope.runtime.stream import MIN_SHARED_PREFIX, ModelStream, shared_prefix


@dataclass
class LocalModel(Prompts):
    """A causal LM, its tokenizer, and the facts the engine needs about them."""

    source: ModelSource
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    load_seconds: float
    eos_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def context_window(self) -> int | None:
        value = getattr(self.model.config, "max_position_embeddings", None)
        return int(value) if value else None

    def new_stream(self, batch: int, lookahead: int = 1) -> ModelStream:
        """A batched incremental-decoding stream over this model (see runtime/stream.py);
        it computes one position per call, so ``lookahead`` changes nothing."""
        pad = self.tokenizer.pad_token_id
        return ModelStream(self.model, batch, int(pad) if pad is not None else 0)

    def forcer(self, prompts: Sequence[Sequence[int]] = ()) -> LocalForcer:
        return LocalForcer(self, prompts)

    def identity(self) -> dict[str, Any]:
        return {
            **self.source.to_dict(),
            "architecture": type(self.model).__name__,
            "vocab_size": len(self.tokenizer),
            "device": self.device,
            "dtype": self.dtype,
            "chat_template": self.has_chat_template,
        }

    def close(self) -> None:
        """Nothing to release besides memory."""


class LocalForcer:
    """Teacher-forced log-probabilities of one local model over the prompts of one probe.

    The prompts of a probe share a long prefix (the few-shot block, a chat
    template's system text). It is computed once, by the same mechanism decoding
    uses: a one-row :class:`ModelStream` holding the prefix, forked for every
    sample, so the rest of the prompt and the reference are one more pass over that
    cache. The most recent pass is kept, so calibration and the arbitration check on
    the same reference, and option letters after the same prompt, cost nothing more.
    """

    MIN_PREFIX = MIN_SHARED_PREFIX

    def __init__(self, lm: LocalModel, prompts: Sequence[Sequence[int]] = ()) -> None:
        self.lm = lm
        self.prefix: list[int] = []
        self._shared: ModelStream | None = None
        # ((prompt, continuation), logprobs) of the most recent pass.
        self._last: tuple[tuple[tuple[int, ...], tuple[int, ...]], torch.Tensor] | None = None
        if not prompts:
            return
        prefix = shared_prefix([list(p) for p in prompts])
        if len(prefix) >= self.MIN_PREFIX:
            self.prefix = prefix
            self._shared = ModelStream(lm.model, 1)
            self._shared.forced(prefix, 1)

    def logprobs(self, prompt: Sequence[int], continuation: Sequence[int]) -> torch.Tensor:
        """``[len(continuation) + 1, vocab]``: row t is the distribution after
        ``prompt + continuation[:t]``."""
        key = (tuple(prompt), tuple(continuation))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        if not prompt:
            raise RuntimeFault("Teacher forcing needs a non-empty prompt.")
        n, shared = len(self.prefix), self._shared
        if shared is not None and len(prompt) > n and list(prompt[:n]) == self.prefix:
            stream = shared.fork(1)
        else:
            stream = ModelStream(self.lm.model, 1)
        logits = stream.forced(list(prompt) + list(continuation), len(continuation) + 1)
        logp = log_normalise(logits)
        self._last = (key, logp)
        return logp

    def scores(self, prompt: Sequence[int], reference: Sequence[int]) -> torch.Tensor:
        if not reference:
            return torch.empty((0, 0))
        return self.logprobs(prompt, reference)[:-1]

    def next_logprobs(self, prompt: Sequence[int]) -> torch.Tensor:
        """The next-token distribution after ``prompt``: row 0 of the last pass if it
        had the same prompt, so option letters after a forced reference are free."""
        if self._last is not None and self._last[0][0] == tuple(prompt):
            return self._last[1][0]
        return self.logprobs(prompt, [])[0]

    def next_probs(self, prompt: Sequence[int], wanted: Sequence[int]) -> dict[int, float]:
        probs = self.next_logprobs(prompt).exp()
        return {int(t): float(probs[t]) for t in wanted}
