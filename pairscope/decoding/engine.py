"""The one two-model decoding loop (docs/methods.md §2).

State per row is the response text. Each model holds its own token ids for its
own context (prompt + response), kept by the tokenization policy of
``decoding/contexts.py``; the stream reuses its KV cache up to the longest common
prefix of old and new ids. One step is one base position.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

import pairscope.methods as methods
from pairscope.decoding.completions import CompletionRuns
from pairscope.decoding.contexts import Context, ModelView, check_max_new, check_policy
from pairscope.decoding.strategies import (
    OVERLAP_K,
    Decision,
    KeyTexts,
    Stepper,
    Strategy,
    TopK,
    base_top1,
    uncertain_step,
)
from pairscope.decoding.types import SampleResult, Step
from pairscope.defaults import LAMBDA, TAU, TOP_K
from pairscope.errors import InputError
from pairscope.metrics.overlap import normalize_token_string, overlap_at_k
from pairscope.models import Pair
from pairscope.runtime.scores import Scores, TopLists
from pairscope.runtime.vocab import END, UNMATCHABLE, MatchKey

__all__ = ["DecodeSettings", "Engine", "Request", "generate"]


@dataclass(frozen=True)
class Request:
    """One prompt to decode: the base's completion prompt and the guide's user turn,
    with the guide's optional system message and the start of its answer."""

    base_prompt: str
    guide_user: str
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 128
    guide_system: str | None = None
    guide_prefix: str = ""


@dataclass(frozen=True)
class DecodeSettings:
    """Method and its knobs (``methods.Knobs``: ``alpha`` fixes a blend's weight)."""

    method: str = methods.gated()[0]
    tau: float = TAU
    top_k: int = TOP_K
    lam: float = LAMBDA
    alpha: float | None = None
    batch_size: int = 8
    tokenization: str = "canonical"
    protocol: str = "position"  # for a method with protocols (methods.PROTOCOLS)
    # Compute a prompt prefix shared by a batch's rows once (same results; off only to
    # measure what it saves).
    share_prefix: bool = True
    # Give a finished row's place to the next request while the batch runs (same
    # results; off only to measure what it saves).
    refill: bool = True

    def strategy(self) -> Strategy:
        if self.batch_size < 1:
            raise InputError(f"batch size must be >= 1 (got {self.batch_size}).")
        check_policy(self.tokenization)
        knobs = methods.Knobs(self.tau, self.lam, self.top_k, self.alpha, self.protocol)
        return methods.build(self.method, knobs)


@dataclass
class _Row:
    index: int
    request: Request
    driver: Context
    guide: Context | None
    text: str = ""
    steps: list[Step] = field(default_factory=list)
    reason: str | None = None
    state: Any = None  # the strategy's own (Strategy.new_state)


# How far the driver's own greedy path is likely followed (it keeps its top-1 wherever
# it is confident): the ``lookahead`` hint of Backend.new_stream. A stream that can
# answer several positions per call (a served one) uses it; a local one ignores it.
DRIVER_LOOKAHEAD = 64


class Engine:
    """Decode requests with one strategy over a loaded pair."""

    def __init__(
        self, pair: Pair, settings: DecodeSettings, strategy: Strategy | None = None
    ) -> None:
        """``strategy`` replaces the one ``settings.method`` names (a method of one's own)."""
        self.pair = pair
        self.settings = settings
        self.strategy = strategy if strategy is not None else settings.strategy()
        self.solo_guide = self.strategy.drives == "guide"
        policy = settings.tokenization
        self.driver = ModelView(pair.guide if self.solo_guide else pair.base, 0, policy)
        self.guide = ModelView(pair.guide, 1, policy) if self.strategy.consults else None
        # Per model tag: token id -> its string for overlap@k (normalised; a model-unique
        # key for strings that match nothing across models).
        self._strings: tuple[dict[int, str], dict[int, str]] = ({}, {})
        # A method's own step schedule, if it has one (made once the streams are open).
        self._schedule: Stepper | None = None

    def local(self) -> bool:
        """Whether every stream runs here (a pass brings all of its rows up to date)."""
        streams = (self.driver.stream, self.guide.stream if self.guide is not None else None)
        return all(s is not None and s.sync_all_rows for s in streams)

    # -- one batch -------------------------------------------------------------------------

    def _guide_context(self, view: ModelView, req: Request) -> Context:
        lm = view.lm
        text = lm.chat_prompt_text(req.guide_user, req.guide_system) + req.guide_prefix
        return view.context(text, not lm.has_chat_template, req.max_new_tokens)

    def _new_row(self, index: int, req: Request) -> _Row:
        req = self.strategy.setup(req)
        check_max_new(req.max_new_tokens)
        if self.solo_guide:
            driver = self._guide_context(self.driver, req)
        else:
            driver = self.driver.context(req.base_prompt, True, req.max_new_tokens)
        guide = self._guide_context(self.guide, req) if self.guide is not None else None
        state = self.strategy.new_state()
        return _Row(index=index, request=req, driver=driver, guide=guide, state=state)

    def run_batch(
        self,
        indexed: Sequence[tuple[int, Request]],
        waiting: deque[tuple[int, Request]] | None = None,
    ) -> Iterator[tuple[int, SampleResult]]:
        """Decode a batch, yielding each row's result as it finishes. With ``waiting``
        (and ``settings.refill``), a finished row's place goes to the next request there
        while other rows still run, so a batch does not thin out to its slowest row."""
        if self.strategy.completes:  # a method that decodes by whole completions
            yield from CompletionRuns(self).run_batch(indexed, waiting)
            return
        rows = [self._new_row(i, r) for i, r in indexed]
        # The driver follows its own top-1 wherever it is confident; the guide is fed up to
        # the strategy's lookahead past the text (its own greedy ids, for a method that
        # writes the guide's words).
        share = self.settings.share_prefix
        self.driver.open([r.driver.ids for r in rows], DRIVER_LOOKAHEAD, share)
        if self.guide is not None:
            ahead = self.strategy.guide_lookahead
            self.guide.open([self.guide_context(r).ids for r in rows], ahead, share)
        models = [m for m in (self.driver, self.guide) if m is not None]
        self._schedule = self.strategy.schedule(self)
        while rows:
            self._step(rows)
            finished = [b for b, row in enumerate(rows) if row.reason is not None]
            if not finished:
                continue
            for b in finished:
                yield rows[b].index, self._result(rows[b])
            keep = [b for b, row in enumerate(rows) if row.reason is None]
            rows = [rows[b] for b in keep]
            if not rows:
                return
            for model in models:
                model.stream.select(keep)
            if waiting and self.settings.refill:
                new = [
                    self._new_row(*waiting.popleft())
                    for _ in range(min(len(finished), len(waiting)))
                ]
                self.driver.admit([r.driver.ids for r in new])
                if self.guide is not None:
                    self.guide.admit([self.guide_context(r).ids for r in new])
                rows += new

    def _result(self, row: _Row) -> SampleResult:
        # Bytes that never became a whole character are flushed as replacement characters.
        if row.reason != "stop":
            for ctx, model in ((row.driver, self.driver), (row.guide, self.guide)):
                if ctx is not None and model is not None and ctx.held:
                    tail = model.flush_held(ctx)
                    row.text += tail
                    if row.steps:
                        row.steps[-1] = replace(row.steps[-1], text=row.steps[-1].text + tail)
        return SampleResult(
            text=row.text,
            method=self.strategy.name,
            steps=row.steps,
            stop_reason=row.reason or "length",
            ir_kind=self.strategy.ir_kind,
        )

    def _step(self, rows: list[_Row]) -> None:
        if self._schedule is not None:
            self._schedule.step(rows)
            return
        driver = self.driver
        # 1. Base next-token scores for every live row; top-1 probability and id in one
        #    host transfer (no full-vocabulary normalisation: see Scores).
        ids = driver.targets([r.driver for r in rows], [r.text for r in rows])
        scores = driver.stream.scores(dict(enumerate(ids)))
        p_top, t_top = scores.top1()
        uncertain = [b for b in range(len(rows)) if self.strategy.uncertain(p_top[b])]
        # 2. The strategy decides at the uncertain rows; the guide is read only if it asks.
        decisions: dict[int, tuple[Decision, Step]] = {}
        if uncertain:
            view = _Uncertain(self, rows, uncertain, scores, t_top)
            for b, decision in self.strategy.intervene(view).items():
                decisions[b] = (self.not_text(decision), view.step(b, p_top[b], decision))
        # 3. Append (confident positions: the base's top-1 token), then check the stop rules.
        source = "guide" if self.solo_guide else "base"
        for b, row in enumerate(rows):
            if b in decisions:
                decision, step = decisions[b]
            else:
                decision = self.base_decision(t_top[b], source)
                step = Step(len(row.steps), p_top[b], None, None, "", source, b in uncertain, False)
            self.append(row, decision, step)

    def base_decision(self, token: int, source: str) -> Decision:
        key = self.driver.vocab.key(token)
        decision = Decision(key, self.driver.vocab.text(token), source, False, base_id=token)
        return self.not_text(decision)

    def not_text(self, decision: Decision) -> Decision:
        """A special token that is not text is never appended as text: an end token ends
        the response; any other is fed as its model's own id under the own policy (as
        generate() does) and ends the response under canonical, where no text carries it."""
        if decision.key == END or not isinstance(decision.key, tuple):
            return decision
        _, tag, token = decision.key
        model = self.driver if tag == 0 else self.guide
        assert model is not None
        if model.vocab.is_special(token) and self.settings.tokenization == "canonical":
            return replace(decision, key=END, text="", base_id=None, guide_ids=None)
        return decision

    # -- reading the guide ------------------------------------------------------------------

    def overlap(self, base_ids: Sequence[int], guide_ids: Sequence[int]) -> tuple[float, bool]:
        """overlap@k and whether the guide's top-1 is in the base's top-k, from each
        model's top-k ids (rank order, k = OVERLAP_K or the vocabulary if smaller)."""
        assert self.guide is not None
        k = min(OVERLAP_K, len(base_ids), len(guide_ids))
        base_strings = self._top_strings(self.driver, base_ids[:k])
        guide_strings = self._top_strings(self.guide, guide_ids[:k])
        hit = guide_strings[0] in set(base_strings)
        return overlap_at_k(base_strings, guide_strings, k, normalize=False), hit

    def _top_strings(self, model: ModelView, ids: Sequence[int]) -> list[str]:
        """Normalised token strings (metrics.overlap); strings that match nothing across
        models ("", byte pieces, special tokens) get a key of their own, so they never
        count as shared. Memoised per id."""
        memo = self._strings[model.tag]
        try:
            return [memo[i] for i in ids]
        except KeyError:
            pass
        out = []
        for i in ids:
            string = memo.get(i)
            if string is None:
                key = model.vocab.key(i)
                text = model.vocab.text(i)
                shared = isinstance(key, str) and key != END and text not in UNMATCHABLE
                string = normalize_token_string(text) if shared else f"\x00{model.tag}:{i}"
                memo[i] = string
            out.append(string)
        return out

    def guide_sync(
        self, rows: list[_Row], wanted: list[int], extra: dict[int, list[int]] | None = None
    ) -> torch.Tensor:
        """Guide logprobs [len(wanted), V_guide], bringing *every* row up to date.

        Every call adds its width in cache slots to every row, so one narrow call that
        feeds all rows their new text beats lazy catch-ups: those are wide, and the
        slots they add to every row make each later pass attend over more. ``extra``:
        guide ids a wanted row is fed after its text (a method's own guide ids).
        """
        guide = self.guide
        assert guide is not None and guide.stream is not None
        every = guide.stream.sync_all_rows
        named = list(range(len(rows))) if every else list(wanted)
        ids = guide.targets(
            [self.guide_context(rows[b]) for b in named], [rows[b].text for b in named]
        )
        more = extra or {}
        targets = {b: i + more.get(b, []) for b, i in zip(named, ids)}
        # Only the wanted rows' logits are computed; the others are only brought up to date.
        return guide.stream.scores(targets, read=wanted if every else None).logprobs()

    @staticmethod
    def guide_context(row: _Row) -> Context:
        assert row.guide is not None
        return row.guide

    # -- appending --------------------------------------------------------------------------

    def append(self, row: _Row, decision: Decision, step: Step) -> None:
        """Append the decision's text and give each model that wrote it its own ids."""
        if decision.key == END:
            if row.state is not None:
                self.strategy.appended(row.state, decision, False)
            row.steps.append(replace(step, text=""))
            row.reason = "eos"
            return
        owners: list[tuple[Context, ModelView, list[int], bool]] = []
        if decision.base_id is not None:
            owners.append((row.driver, self.driver, [decision.base_id], False))
        if row.guide is not None and self.guide is not None and decision.guide_ids:
            follow = decision.source == "guide"  # a guide that wrote it keeps its own path
            owners.append((row.guide, self.guide, list(decision.guide_ids), follow))
        # The first owner says what text is added: one holding byte pieces (they go out
        # with this token), else the base. Another owner keeps its own ids only if they
        # release exactly that text.
        owners.sort(key=lambda o: not o[0].held)
        before = row.text
        added = decision.text
        flushed = False
        for n, (ctx, model, ids, follow) in enumerate(owners):
            released = model.feed_own(ctx, ids, before, follow)
            if n == 0:
                added = released or ""  # None: byte pieces wait for a whole character
            elif released != added:
                ctx.synced, ctx.held = -1, []
        if added:
            # Text comes next: byte pieces held by a model that did not write it are given up.
            pairs = [(row.driver, self.driver), (row.guide, self.guide)]
            for held_ctx, held_model in pairs:
                if held_ctx is not None and held_model is not None and held_ctx.held:
                    if not any(held_ctx is c for c, _, _, _ in owners):
                        added = held_model.flush_held(held_ctx) + added
                        flushed = True
        if row.state is not None:
            self.strategy.appended(row.state, decision, flushed)
        row.text += added
        row.steps.append(replace(step, text=added))
        if decision.ends:
            row.reason = "eos"
            return
        self._check_stop(row, len(added))

    @staticmethod
    def _check_stop(row: _Row, added: int) -> None:
        stops = row.request.stop
        if stops:
            window = max(len(s) for s in stops) + added
            tail_start = max(0, len(row.text) - window)
            hits = [i for s in stops if (i := row.text.find(s, tail_start)) >= 0]
            if hits:
                row.text = row.text[: min(hits)]
                row.reason = "stop"
                return
        if len(row.steps) >= row.request.max_new_tokens:
            row.reason = "length"

    # -- many batches -----------------------------------------------------------------------

    def run(
        self,
        requests: Sequence[Request],
        on_result: Callable[[int, SampleResult], None] | None = None,
    ) -> list[SampleResult]:
        """Decode all requests in batches (longest prompts first), a finished row's place
        going to the next request (``settings.refill``); results in input order, each
        given to ``on_result`` as its row finishes."""
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].base_prompt))
        size = self.settings.batch_size
        waiting = deque((i, requests[i]) for i in order)
        results: dict[int, SampleResult] = {}
        while waiting:
            batch = [waiting.popleft() for _ in range(min(size, len(waiting)))]
            for index, result in self.run_batch(batch, waiting):
                results[index] = result
                if on_result is not None:
                    on_result(index, result)
        return [results[i] for i in range(len(requests))]


class _Uncertain:
    """The :class:`~pairscope.decoding.strategies.Uncertain` view of one engine step.

    It normalises the base's scores only at the uncertain rows, takes each model's
    top-k for all of them in one batched top-k, reads the guide once for all rows on
    a strategy's first request, and keeps what the guide said at each row's position
    (top-1 probability, overlap@k) for the step's trace.
    """

    def __init__(
        self,
        engine: Engine,
        rows: list[_Row],
        uncertain: list[int],
        scores: Scores,
        t_top: list[int],
    ) -> None:
        self.engine, self.batch, self.rows = engine, rows, uncertain
        self.at = {b: i for i, b in enumerate(uncertain)}  # batch row -> row of logp
        self._scores = scores
        self.t_top = t_top
        self._glogp: torch.Tensor | None = None
        self._tops: dict[str, tuple[int, TopLists]] = {}  # which -> (k asked, lists)
        self.facts: dict[int, tuple[float, float, bool]] = {}  # p_guide, overlap, hit

    def _top_lists(self, which: str, k: int) -> TopLists:
        """Top-k lists of every uncertain row (at least OVERLAP_K long), made once."""
        k = max(k, OVERLAP_K)
        made = self._tops.get(which)
        if made is not None and made[0] >= k:
            return made[1]
        if which == "base":  # ranked on the logits: no [rows, V] logprobs
            tops = self._scores.top_lists(self.rows, k)
        else:
            tops = TopLists(self._guide_all(), k)
        self._tops[which] = (k, tops)
        return tops

    def base_top(self, row: int, k: int) -> TopK:
        return self._top_lists("base", k).top(self.at[row], self.engine.driver.vocab, k)

    def tops(self, row: int, k: int) -> tuple[TopK, TopK]:
        """Both lists at the row; made together for every uncertain row on the first
        call, in one host transfer (one wait for the device, not two)."""
        want = max(k, OVERLAP_K)
        if any(self._tops.get(which, (0,))[0] < want for which in ("base", "guide")):
            base = self._scores.ranked(self.rows, want)
            guide = TopLists.rank(self._guide_all(), want)
            lists = TopLists.read(base, guide)
            self._tops = {"base": (want, lists[0]), "guide": (want, lists[1])}
        return self.base_top(row, k), self.guide_top(row, k)

    def base_token(self, row: int) -> tuple[int, MatchKey, str | None]:
        return base_top1(self.engine.driver.vocab, self.t_top[row])

    def _guide_all(self) -> torch.Tensor:
        if self._glogp is None:
            self._glogp = self.engine.guide_sync(self.batch, self.rows)
        return self._glogp

    def _note(self, row: int, p_guide: float, guide_ids: Sequence[int]) -> None:
        """Record the guide's top-1 probability and overlap@k at the row's position."""
        if row not in self.facts:
            base_ids = self._top_lists("base", OVERLAP_K).ids[self.at[row]]
            overlap, hit = self.engine.overlap(base_ids, guide_ids)
            self.facts[row] = (p_guide, overlap, hit)

    def note_all(self, rows: list[int], guide_logp: torch.Tensor) -> None:
        """:meth:`_note` for several rows from their guide logprobs (one top-k)."""
        tops = TopLists(guide_logp, OVERLAP_K)
        for i, b in enumerate(rows):
            self._note(b, tops.probs[i][0], tops.ids[i])

    def guide_top(self, row: int, k: int) -> TopK:
        guide = self.engine.guide
        assert guide is not None
        tops = self._top_lists("guide", k)
        top = tops.top(self.at[row], guide.vocab, k)
        self._note(row, top.top_prob, tops.ids[self.at[row]])
        return top

    def texts(self, base: TopK, guide: TopK) -> Mapping[MatchKey, str]:
        guide_model = self.engine.guide
        assert guide_model is not None
        return KeyTexts(base, guide, self.engine.driver.vocab, guide_model.vocab)

    def state(self, row: int) -> Any:
        return self.batch[row].state

    def step(self, row: int, p_base: float, decision: Decision) -> Step:
        """The trace of an uncertain position the strategy decided."""
        facts = self.facts.get(row)
        return uncertain_step(len(self.batch[row].steps), p_base, facts, decision)


def generate(
    pair: Pair,
    prompts: Sequence[Request] | Sequence[str],
    settings: DecodeSettings | None = None,
    on_result: Callable[[int, SampleResult], None] | None = None,
) -> list[SampleResult]:
    """Decode prompts with a pair. A plain string is used as both base prompt and guide turn."""
    reqs = [p if isinstance(p, Request) else Request(base_prompt=p, guide_user=p) for p in prompts]
    return Engine(pair, settings or DecodeSettings()).run(reqs, on_result)
