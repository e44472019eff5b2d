"""The backend interface: what decoding, teacher forcing and the pipeline ask of a model.

Two backends implement it: ``backends/local.py`` (a transformers model in this
process) and ``backends/served.py`` (a model behind a vLLM server). Nothing outside
``pairscope/backends/`` knows which one it holds; ``pairscope.models.load_model``
picks one by the spec's prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the interface itself needs no torch (``pairscope check`` imports it)
    import torch

    from pairscope.runtime.scores import Scores

# Used when a guide's tokenizer has no chat template (docs/methods.md §2).
FALLBACK_CHAT_TEMPLATE = "User: {user}\nAssistant:"


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from, for config.json and the cache key."""

    spec: str
    kind: str  # embedded | gguf | local | hub | vllm
    path: str | None = None
    sha256: str | None = None
    revision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class Stream(Protocol):
    """Batched incremental next-token distributions for the rows of one batch."""

    # One pass that brings every row up to date is cheaper than lazy catch-ups (a
    # local model, where a pass costs rows x width); a served model answers per row.
    sync_all_rows: bool
    # The stream can start as copies of a one-row stream (a shared prompt prefix).
    can_fork: bool

    def forward(self, targets: dict[int, list[int]]) -> torch.Tensor:
        """Bring the named rows to these full token ids; their next-token logprobs
        ``[len(targets), vocab]`` in the order of ``targets``."""
        ...

    def scores(self, targets: dict[int, list[int]], read: Sequence[int] | None = None) -> Scores:
        """As :meth:`forward`, as :class:`~pairscope.runtime.scores.Scores` (logits and
        log-normalisers, normalised where read: the decoding loop's hot path), of the
        rows ``read`` alone, in that order (None: every row of ``targets``)."""
        ...

    def select(self, keep: list[int]) -> None:
        """Keep only the rows ``keep``, in that order."""
        ...

    def fork(self, batch: int) -> Stream:
        """``batch`` rows, each a copy of this one-row stream (only if ``can_fork``)."""
        ...

    def admit(self, prompts: list[list[int]], prefix: Any = None) -> None:
        """Add a row after the batch's rows for each prompt (a finished row's place),
        from a copy of the one-row stream ``prefix`` where the prompt starts with its ids
        (only if ``can_fork``; None: from nothing)."""
        ...


class Forcer(Protocol):
    """Teacher-forced distributions of one model over the prompts of one probe."""

    def scores(self, prompt: Sequence[int], reference: Sequence[int]) -> torch.Tensor:
        """Log-probabilities ``[len(reference), vocab]`` predicting each reference token."""
        ...

    def next_probs(self, prompt: Sequence[int], wanted: Sequence[int]) -> dict[int, float]:
        """The next-token probability of each ``wanted`` id after ``prompt``."""
        ...


class Backend(Protocol):
    """A causal LM and its tokenizer, with the facts decoding needs about them."""

    source: ModelSource
    tokenizer: Any
    device: str
    dtype: str
    load_seconds: float
    eos_ids: frozenset[int]

    @property
    def name(self) -> str: ...

    @property
    def has_chat_template(self) -> bool: ...

    @property
    def context_window(self) -> int | None: ...

    def encode_completion_prompt(self, text: str) -> list[int]: ...

    def chat_prompt_text(self, user: str, system: str | None = None) -> str: ...

    def encode_chat_prompt(
        self, user: str, system: str | None = None, prefix: str = ""
    ) -> list[int]: ...

    def new_stream(self, batch: int, lookahead: int = 1) -> Stream:
        """A stream of ``batch`` rows; ``lookahead``: how far the caller expects to follow
        the model's own greedy path (a served model asks for that many tokens at once)."""
        ...

    def forcer(self, prompts: Sequence[Sequence[int]] = ()) -> Forcer:
        """Teacher forcing over ``prompts`` (a local model computes their shared prefix once)."""
        ...

    def identity(self) -> dict[str, Any]:
        """What config.json records about this model."""
        ...

    def close(self) -> None:
        """Release what the model holds besides memory (threads, connections)."""
        ...


class Prompts:
    """Prompt building from ``self.tokenizer`` and ``self.source``, the same for every
    backend (the tokenizer is always local)."""

    source: ModelSource
    tokenizer: Any

    @property
    def name(self) -> str:
        return self.source.spec

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode_completion_prompt(self, text: str) -> list[int]:
        """Plain completion prompt: BOS (if the tokenizer adds one) + text."""
        return list(self.tokenizer.encode(text, add_special_tokens=True))

    def chat_prompt_text(self, user: str, system: str | None = None) -> str:
        """The chat-template text with ``user`` as the user turn (after an optional system
        message) and an open assistant turn."""
        if not self.has_chat_template:
            plain = FALLBACK_CHAT_TEMPLATE.replace("{user}", user)
            return f"{system}\n\n{plain}" if system else plain
        messages = [{"role": "user", "content": user}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return str(text)

    def encode_chat_prompt(
        self, user: str, system: str | None = None, prefix: str = ""
    ) -> list[int]:
        """Token ids of :meth:`chat_prompt_text` + ``prefix`` (the start of the answer);
        the template already holds its special tokens."""
        text = self.chat_prompt_text(user, system) + prefix
        add_special = not self.has_chat_template
        return list(self.tokenizer.encode(text, add_special_tokens=add_special))
