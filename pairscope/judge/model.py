"""A model judge: any chat model pairscope can load classifies responses by the XSTest rubric.

The judge is loaded through :func:`pairscope.models.load_model` (embedded models, GGUF
files, local or Hub transformers models, served endpoints) and decodes greedily with
the engine's guide-only method: its chat template, the rubric as the user turn
(:func:`~pairscope.judge.verdict.judge_prompt`), at most :data:`MAX_NEW_TOKENS` tokens.
Verdicts are cached on disk (:mod:`pairscope.judge.cache`), and the model is loaded only
when some verdict is missing, so a rerun over judged items neither loads nor calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairscope.judge.cache import (
    CachedVerdict,
    VerdictCache,
    default_cache_dir,
    item_key,
    judge_key,
)
from pairscope.judge.verdict import PROMPT_VERSION, judge_prompt, parse_verdict

__all__ = ["MAX_NEW_TOKENS", "Judge", "JudgeItem", "Verdicts"]

# As the XSTest authors' judge: a class name needs a few tokens.
MAX_NEW_TOKENS = 16
# Judge prompts are sent, and their verdicts stored, this many at a time.
_CHUNK = 16

Complete = Callable[[Sequence[str]], list[str]]


@dataclass(frozen=True)
class JudgeItem:
    """One response to judge and the prompt it answers."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class Verdicts:
    """The judge's class for each item (None: unparseable), its replies, and what it cost."""

    labels: list[str | None]
    replies: list[str]
    calls: int  # items the judge model was asked about in this call
    cached: int  # items answered from the cache

    @property
    def unparseable(self) -> int:
        return sum(label is None for label in self.labels)


class Judge:
    """A judge model by spec; ``complete`` replaces the model (judge prompts -> replies)."""

    def __init__(
        self,
        spec: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        batch_size: int = 8,
        cache_dir: Path | None = None,
        complete: Complete | None = None,
    ) -> None:
        self.spec = spec
        self._load_args: dict[str, Any] = {
            "device": device,
            "dtype": dtype,
            "trust_remote_code": trust_remote_code,
        }
        self._batch_size = batch_size
        self._complete = complete
        self._model: Any = None
        identity = {"judge": spec, "dtype": dtype, "prompt_version": PROMPT_VERSION}
        self.cache = VerdictCache(
            cache_dir or default_cache_dir(), judge_key(spec, dtype, PROMPT_VERSION), identity
        )

    def identity(self) -> dict[str, Any]:
        """What a run records about its judge (the loaded model's facts if it loaded)."""
        facts = {"spec": self.spec, "prompt_version": PROMPT_VERSION}
        if self._model is not None:
            facts["model"] = self._model.identity()
        return facts

    def judge(self, items: Sequence[JudgeItem]) -> Verdicts:
        """Classify each item, from the cache where possible, calling the model for the rest."""
        keys = [item_key(i.prompt, i.completion) for i in items]
        missing = list(dict.fromkeys(k for k in keys if self.cache.get(k) is None))
        first = {k: i for k, i in reversed(list(zip(keys, items, strict=True)))}
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            prompts = [judge_prompt(first[k].prompt, first[k].completion) for k in chunk]
            replies = self._replies(prompts)
            self.cache.put(
                {k: CachedVerdict(parse_verdict(r), r) for k, r in zip(chunk, replies, strict=True)}
            )
        found = [self.cache.get(k) for k in keys]
        asked = set(missing)
        return Verdicts(
            labels=[v.label if v else None for v in found],
            replies=[v.reply if v else "" for v in found],
            calls=len(missing),
            cached=sum(k not in asked for k in keys),
        )

    def _replies(self, prompts: Sequence[str]) -> list[str]:
        if self._complete is None:
            self._complete = self._load()
        replies = self._complete(prompts)
        if len(replies) != len(prompts):
            raise ValueError(f"the judge answered {len(replies)} of {len(prompts)} prompts")
        return replies

    def _load(self) -> Complete:
        from pairscope.decoding.engine import DecodeSettings, Request, generate
        from pairscope.models import Pair, load_model

        self._model = load_model(self.spec, **self._load_args)
        pair = Pair(base=self._model, guide=self._model)
        settings = DecodeSettings(method="guide", batch_size=self._batch_size)

        def complete(prompts: Sequence[str]) -> list[str]:
            requests = [
                Request(base_prompt=p, guide_user=p, max_new_tokens=MAX_NEW_TOKENS) for p in prompts
            ]
            return [r.text for r in generate(pair, requests, settings)]

        return complete

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
