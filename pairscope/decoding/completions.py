"""Strategies that decode by whole completions, run on a batch (the reference protocol).

A strategy with ``completes = True`` decodes each request as a generator of
:class:`Ask` (``strategy.row(count, max_tokens, stops)``); this module answers
the asks of all rows of a batch together: every row asking the guide, then every row
asking the base, each a greedy completion computed in batched passes of that model's
stream (one pass per token, rows that ended dropping out). Each ask's context is its
model's prompt plus the text it names, encoded afresh as one string (what a completions
API does with a prompt); the stream reuses each row's cache up to the longest common
prefix, so a row's result does not depend on its batch or on what its cache held.

A finished row's place goes to the next waiting request, as in the engine's own loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pairscope.decoding.contexts import Context, ModelView, check_max_new
from pairscope.decoding.types import SampleResult, Step

# Room kept in each model's window past the prompt: the response, its overshoot (a
# base continuation or a guide completion may pass the token budget) and one completion.
OVERSHOOT = 64

Engine = Any  # engine.Engine (which imports this module)


@dataclass(frozen=True)
class Ask:
    """A greedy completion of ``tokens`` tokens by ``model`` ("base" or "guide") after
    its prompt followed by ``text``.

    ``enough``, when given, is asked after each token with the completion so far
    (``ended`` false): true once those tokens decide everything the asker will read of
    the whole completion, which is then answered with them and not computed further.
    It saves compute only: an asker must read the shorter completion exactly as it
    would have read the whole one."""

    model: str
    text: str
    tokens: int
    enough: Callable[[Completion], bool] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Completion:
    """A model's greedy completion: each token's text, the probability of the model's
    top-1 at each position, the completion's text, and whether the model ended."""

    tokens: tuple[str, ...]
    top_probs: tuple[float, ...]
    text: str
    ended: bool


@dataclass
class RoundsResult:
    """A response under the reference protocol, with its counts."""

    text: str
    rounds: int
    base_tokens: int
    stop_reason: str
    # (text appended, source, round start, top-1 probability of its first token or None)
    trace: list[tuple[str, str, bool, float | None]] = field(default_factory=list)


Row = Generator[Ask, Completion, RoundsResult]


@dataclass
class _Live:
    index: int
    request: Any
    contexts: dict[str, Context]
    row: Row
    ask: Ask | None = None
    result: RoundsResult | None = None


def _encode(view: ModelView, ctx: Context, text: str) -> list[int]:
    """The model's ids of its prompt followed by ``text``, as one string."""
    ids = view.lm.tokenizer.encode(ctx.prompt_text + text, add_special_tokens=ctx.add_special)
    return [int(i) for i in ids]


def _token_string(view: ModelView, token: int) -> str:
    """A token's string as a completions API lists it: its text, or a special token's
    name (``<|im_end|>``; the completion's text leaves it out)."""
    if view.vocab.is_special(token):
        return str(view.lm.tokenizer.convert_ids_to_tokens(token))
    return view.vocab.text(token)


def complete(view: ModelView, asks: dict[int, tuple[Context, Ask]]) -> dict[int, Completion]:
    """Greedy completions for the stream rows named, in batched passes: each row's
    tokens (an end token is the last, written as its name), its model's top-1
    probability at each position, its text and whether it ended."""
    ids = {b: _encode(view, ctx, ask.text) for b, (ctx, ask) in asks.items()}
    made: dict[int, list[int]] = {b: [] for b in asks}
    strings: dict[int, list[str]] = {b: [] for b in asks}
    probs: dict[int, list[float]] = {b: [] for b in asks}
    ended: set[int] = set()
    settled: set[int] = set()  # rows whose asker has read enough (Ask.enough)
    live = [b for b in asks if asks[b][1].tokens > 0]
    while live:
        scores = view.stream.scores({b: ids[b] + made[b] for b in live})
        p_top, t_top = scores.top1()
        for b, p, t in zip(live, p_top, t_top):
            made[b].append(t)
            strings[b].append(_token_string(view, t))
            probs[b].append(p)
            if view.vocab.is_end(t):
                ended.add(b)
                continue
            enough = asks[b][1].enough
            if enough is not None and enough(_so_far(view, made[b], strings[b], probs[b])):
                settled.add(b)
        live = [
            b
            for b in live
            if b not in ended and b not in settled and len(made[b]) < asks[b][1].tokens
        ]
    out = {}
    for b in asks:
        text = view.vocab.decode(made[b])
        out[b] = Completion(tuple(strings[b]), tuple(probs[b]), text, b in ended)
    return out


def _so_far(view: ModelView, made: list[int], strings: list[str], probs: list[float]) -> Completion:
    """A completion's first tokens, as the asker would read them (not ended)."""
    return Completion(tuple(strings), tuple(probs), view.vocab.decode(made), False)


def base_counter(view: ModelView) -> Callable[[str], int]:
    """The reference's length counter: base tokens of a string, without special tokens."""
    tok = view.lm.tokenizer
    return lambda text: len(tok.encode(text, add_special_tokens=False)) if text else 0


def _trace(result: RoundsResult, count: Callable[[str], int]) -> list[Step]:
    """One step a piece of the response (a guide's words, a base's turn), weighted by its
    length in base tokens (``count``, the loop's own counter): a response's positions
    are its tokens, the uncertain ones the rounds' starts (the base fell below τ there,
    or the response began), the overridden ones the guide's tokens."""
    steps = []
    for n, (text, source, start, p) in enumerate(result.trace):
        p_first = 1.0 if p is None else p
        steps.append(
            Step(
                n,
                p_first,
                None,
                None,
                text,
                source,
                uncertain=start,
                override=source == "guide",
                round_start=start,
                tokens=count(text),
            )
        )
    return steps


class CompletionRuns:
    """Decode batches with a strategy that ``completes`` (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.strategy = engine.strategy
        self.views: dict[str, ModelView] = {"base": engine.driver, "guide": engine.guide}
        self.count = base_counter(engine.driver)

    def _new(self, index: int, req: Any) -> _Live:
        check_max_new(req.max_new_tokens)
        reserve = req.max_new_tokens + OVERSHOOT
        base = self.views["base"].context(req.base_prompt, True, reserve)
        glm = self.views["guide"].lm
        gtext = glm.chat_prompt_text(req.guide_user, req.guide_system) + req.guide_prefix
        guide = self.views["guide"].context(gtext, not glm.has_chat_template, reserve)
        row = self.strategy.row(self.count, req.max_new_tokens, tuple(req.stop))
        live = _Live(index, req, {"base": base, "guide": guide}, row)
        live.ask = next(row)
        return live

    def _send(self, live: _Live, completion: Completion) -> None:
        try:
            live.ask = live.row.send(completion)
        except StopIteration as stop:
            live.ask, live.result = None, stop.value

    def _result(self, live: _Live) -> SampleResult:
        result = live.result
        assert result is not None
        return SampleResult(
            text=result.text,
            method=self.strategy.name,
            steps=_trace(result, self.count),
            stop_reason=result.stop_reason,
            ir_kind=self.strategy.ir_kind,
            counted=(result.rounds, result.base_tokens),
        )

    def run_batch(
        self,
        indexed: Sequence[tuple[int, Any]],
        waiting: deque[tuple[int, Any]] | None = None,
    ) -> Iterator[tuple[int, SampleResult]]:
        rows = [self._new(i, r) for i, r in indexed]
        share = self.engine.settings.share_prefix
        for name, view in self.views.items():
            view.open([r.contexts[name].prompt_ids for r in rows], 1, share)
        while rows:
            for name in ("guide", "base"):
                asks = {
                    b: (r.contexts[name], r.ask)
                    for b, r in enumerate(rows)
                    if r.ask is not None and r.ask.model == name
                }
                if asks:
                    for b, c in complete(self.views[name], asks).items():
                        self._send(rows[b], c)
            done = [b for b, r in enumerate(rows) if r.ask is None]
            for b in done:
                yield rows[b].index, self._result(rows[b])
            if not done:
                continue
            keep = [b for b, r in enumerate(rows) if r.ask is not None]
            rows = [rows[b] for b in keep]
            if not rows:
                return
            for view in self.views.values():
                view.stream.select(keep)
            if waiting and self.engine.settings.refill:
                new = [self._new(*waiting.popleft()) for _ in range(min(len(done), len(waiting)))]
                for name, view in self.views.items():
                    view.admit([r.contexts[name].prompt_ids for r in new])
                rows += new
