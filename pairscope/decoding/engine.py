"""The one two-model decoding loop (DESIGN.md §2).

State per row is the response text. Each model holds its own token ids for its
own context (prompt + response). Text a model chose itself is fed to it as its
own token id; text chosen by the other model marks it *dirty*, and before its
next forward pass its ids are re-encoded from the text; the stream then reuses
its KV cache up to the longest common prefix of old and new ids.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from pairscope.decoding.strategies import (
    Blend,
    Decision,
    Guide,
    Nudging,
    Strategy,
    TopK,
    make_strategy,
    merge_topk,
)
from pairscope.decoding.stream import MIN_SHARED_PREFIX, ModelStream, shared_prefix
from pairscope.decoding.types import SampleResult, Step
from pairscope.decoding.vocab import END, MatchKey, TokenText
from pairscope.errors import InputError
from pairscope.models import LoadedModel, Pair

OVERLAP_K = 50
_WORD = re.compile(r"^(\s*\S+)\s")


@dataclass(frozen=True)
class Request:
    """One prompt to decode: the base's completion prompt and the guide's user turn."""

    base_prompt: str
    guide_user: str
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 128


@dataclass(frozen=True)
class DecodeSettings:
    """Method and its knobs. ``alpha`` fixes BlendIn's weight (None = adaptive)."""

    method: str = "nudging"
    tau: float = 0.4
    top_k: int = 100
    lam: float = 0.1
    alpha: float | None = None
    batch_size: int = 8
    # Compute a prompt prefix shared by a batch's rows once (same results; off only to
    # measure what it saves).
    share_prefix: bool = True

    def strategy(self) -> Strategy:
        if self.batch_size < 1:
            raise InputError(f"batch size must be >= 1 (got {self.batch_size}).")
        return make_strategy(
            self.method, tau=self.tau, lam=self.lam, top_k=self.top_k, alpha=self.alpha
        )


@dataclass
class _Context:
    """One model's view of one row."""

    prompt: list[int]
    ids: list[int]
    dirty: bool = False
    pending: list[int] = field(default_factory=list)  # own byte pieces not yet whole characters


@dataclass
class _Row:
    index: int
    request: Request
    driver: _Context
    guide: _Context | None
    text: str = ""
    steps: list[Step] = field(default_factory=list)
    reason: str | None = None


# How many greedy tokens a served driver asks for per request (capped by the model).
GREEDY_LOOKAHEAD = 64


class _Model:
    """A loaded model with its decoded-token table and its stream for one batch."""

    def __init__(self, lm: LoadedModel, tag: int) -> None:
        self.lm = lm
        self.vocab = TokenText(lm.tokenizer, lm.eos_ids, tag)
        self.stream: ModelStream | None = None
        self._prefix: ModelStream | None = None

    def open(self, prompts: list[list[int]], lookahead: int = 1, share: bool = True) -> None:
        """A fresh stream for one batch. When the prompts share a prefix (a few-shot
        block, a chat template's system text), it is computed once in a one-row stream
        and every row of this and later batches starts from a copy of it.
        ``lookahead``: how far this model's greedy path is likely followed (a served
        model then asks for that many tokens per request)."""
        stream = self.lm.new_stream(len(prompts), lookahead=lookahead)
        if share and isinstance(stream, ModelStream):
            kept = self._prefix.rows[0].ids if self._prefix is not None else []
            if len(prompts) > 1:
                prefix = shared_prefix(prompts)
            else:
                # One prompt alone says nothing about what later batches share.
                [only] = prompts
                prefix = kept if len(only) > len(kept) and only[: len(kept)] == kept else []
            if len(prefix) >= MIN_SHARED_PREFIX:
                if prefix != kept:
                    self._prefix = self.lm.new_stream(1)
                    self._prefix.forward({0: prefix})
                assert self._prefix is not None
                stream = self._prefix.fork(len(prompts))
        self.stream = stream

    def target(self, ctx: _Context, text: str) -> list[int]:
        """The ids this model should hold: re-encoded from text when dirty."""
        if ctx.dirty:
            encoded = self.lm.tokenizer.encode(text, add_special_tokens=False) if text else []
            ctx.ids = ctx.prompt + list(encoded)
            ctx.dirty = False
            ctx.pending.clear()
        return ctx.ids

    def topk(self, logprobs: torch.Tensor, k: int) -> TopK:
        values, indices = torch.topk(logprobs, k)
        probs = values.exp().tolist()
        ids = indices.tolist()
        return merge_topk(ids, probs, [self.vocab.key(i) for i in ids])

    def top_strings(self, logprobs: torch.Tensor, k: int) -> list[str]:
        ids = torch.topk(logprobs, k).indices.tolist()
        return [self.vocab.text(i) for i in ids]


def _prompt_ids(lm: LoadedModel, ids: list[int], reserve: int) -> list[int]:
    """Truncate a prompt from the left (keeping a leading BOS) to fit the context window."""
    window = lm.context_window
    if window is None or len(ids) + reserve <= window:
        return ids
    keep = max(window - reserve, 1)
    bos = lm.tokenizer.bos_token_id
    head = [ids[0]] if bos is not None and ids and ids[0] == bos else []
    warnings.warn(
        f"Prompt of {len(ids)} tokens does not fit {lm.name}'s context window of {window} "
        f"with {reserve} new tokens; truncating it from the left.",
        stacklevel=3,
    )
    return head + ids[len(ids) - keep + len(head) :]


def split_word(text: str) -> tuple[str, bool]:
    """NUDGING's word: leading whitespace + one non-space run; complete once whitespace follows."""
    match = _WORD.match(text)
    if match:
        return match.group(1), True
    return text, False


class Engine:
    """Decode requests with one strategy over a loaded pair."""

    def __init__(self, pair: Pair, settings: DecodeSettings) -> None:
        self.pair = pair
        self.settings = settings
        self.strategy = settings.strategy()
        solo_guide = isinstance(self.strategy, Guide)
        self.driver = _Model(pair.guide if solo_guide else pair.base, tag=0)
        self.guide = _Model(pair.guide, tag=1) if self.strategy.consults else None
        self.solo_guide = solo_guide

    # -- one batch -------------------------------------------------------------------------

    def _new_row(self, index: int, req: Request) -> _Row:
        if req.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1 (got {req.max_new_tokens}).")
        dlm = self.driver.lm
        raw = (
            dlm.encode_chat_prompt(req.guide_user)
            if self.solo_guide
            else (dlm.encode_completion_prompt(req.base_prompt))
        )
        dprompt = _prompt_ids(dlm, raw, req.max_new_tokens)
        driver = _Context(prompt=dprompt, ids=list(dprompt))
        guide = None
        if self.guide is not None:
            glm = self.guide.lm
            gprompt = _prompt_ids(glm, glm.encode_chat_prompt(req.guide_user), req.max_new_tokens)
            guide = _Context(prompt=gprompt, ids=list(gprompt))
        return _Row(index=index, request=req, driver=driver, guide=guide)

    def run_batch(self, indexed: Sequence[tuple[int, Request]]) -> list[tuple[int, SampleResult]]:
        rows = [self._new_row(i, r) for i, r in indexed]
        # The driver follows its own top-1 wherever it is confident; NUDGING's guide
        # follows its own greedy word; BlendIn's guide is read once per uncertain step.
        share = self.settings.share_prefix
        self.driver.open([r.driver.prompt for r in rows], GREEDY_LOOKAHEAD, share)
        if self.guide is not None:
            ahead = self.strategy.max_word_tokens + 1 if isinstance(self.strategy, Nudging) else 1
            self.guide.open([r.guide.prompt for r in rows if r.guide is not None], ahead, share)
        done: list[tuple[int, SampleResult]] = []
        while rows:
            self._step(rows)
            finished = [b for b, row in enumerate(rows) if row.reason is not None]
            if finished:
                for b in finished:
                    done.append((rows[b].index, self._result(rows[b])))
                keep = [b for b, row in enumerate(rows) if row.reason is None]
                rows = [rows[b] for b in keep]
                if rows:
                    for model in (self.driver, self.guide):
                        if model is not None and model.stream is not None:
                            model.stream.select(keep)
        return done

    def _result(self, row: _Row) -> SampleResult:
        # Bytes that never became a whole character are flushed as replacement characters.
        for ctx, model in ((row.driver, self.driver), (row.guide, self.guide)):
            if ctx is not None and model is not None and ctx.pending and row.reason != "stop":
                tail = model.vocab.decode(ctx.pending)
                row.text += tail
                ctx.pending.clear()
                if row.steps:
                    row.steps[-1] = replace(row.steps[-1], text=row.steps[-1].text + tail)
        return SampleResult(
            text=row.text,
            method=self.strategy.name,
            steps=row.steps,
            stop_reason=row.reason or "length",
            counts_interventions=not self.solo_guide,
        )

    def _step(self, rows: list[_Row]) -> None:
        driver, guide = self.driver, self.guide
        assert driver.stream is not None
        # 1. Base next-token distribution for every live row: [B, V] logprobs.
        logp = driver.stream.forward(
            {b: driver.target(r.driver, r.text) for b, r in enumerate(rows)}
        )
        top_logp, top_ids = logp.max(dim=-1)
        p_top = top_logp.exp().tolist()
        t_top = top_ids.tolist()
        uncertain = [
            b for b in range(len(rows)) if not self.solo_guide and self.strategy.uncertain(p_top[b])
        ]
        # 2. Consult the guide only where the base is uncertain.
        decisions: dict[int, tuple[Decision, Step]] = {}
        if uncertain and guide is not None:
            if isinstance(self.strategy, Blend):
                decisions = self._blend(rows, uncertain, logp, p_top)
            elif isinstance(self.strategy, Nudging):
                decisions = self._nudge(rows, uncertain, logp, p_top, t_top)
        # 3. Append (confident positions: the base's top-1 token), then check the stop rules.
        source = "guide" if self.solo_guide else "base"
        for b, row in enumerate(rows):
            if b in decisions:
                decision, step = decisions[b]
            else:
                token = t_top[b]
                decision = Decision(
                    driver.vocab.key(token), driver.vocab.text(token), source, False, base_id=token
                )
                step = Step(len(row.steps), p_top[b], None, None, "", source, b in uncertain, False)
            self._append(row, decision, step)

    # -- methods ----------------------------------------------------------------------------

    def _blend(
        self, rows: list[_Row], uncertain: list[int], logp: torch.Tensor, p_top: list[float]
    ) -> dict[int, tuple[Decision, Step]]:
        guide = self.guide
        assert guide is not None and guide.stream is not None and isinstance(self.strategy, Blend)
        glogp = self._guide_sync(rows, uncertain)
        out: dict[int, tuple[Decision, Step]] = {}
        k = self.strategy.top_k
        for j, b in enumerate(uncertain):
            btop = self.driver.topk(logp[b], k)
            gtop = guide.topk(glogp[j], k)
            decision = self.strategy.decide(btop, gtop, self._texts(btop, gtop))
            overlap, hit = self._overlap(logp[b], glogp[j])
            step = Step(
                len(rows[b].steps),
                p_top[b],
                gtop.top_prob,
                decision.alpha,
                "",
                decision.source,
                True,
                decision.override,
                overlap,
                hit,
            )
            out[b] = (decision, step)
        return out

    def _texts(self, btop: TopK, gtop: TopK) -> dict[MatchKey, str]:
        text_of: dict[MatchKey, str] = {}
        for top, model in ((gtop, self.guide), (btop, self.driver)):
            assert model is not None
            for key, token in zip(top.keys, top.ids):
                text_of[key] = (
                    key if isinstance(key, str) and key != END else model.vocab.text(token)
                )
        return text_of

    def _nudge(
        self,
        rows: list[_Row],
        uncertain: list[int],
        logp: torch.Tensor,
        p_top: list[float],
        t_top: list[int],
    ) -> dict[int, tuple[Decision, Step]]:
        guide = self.guide
        assert guide is not None and guide.stream is not None
        assert isinstance(self.strategy, Nudging)
        words = {b: "" for b in uncertain}
        word_ids: dict[int, list[int]] = {b: [] for b in uncertain}
        ended: set[int] = set()
        first: dict[int, tuple[float, float, bool]] = {}
        building = list(uncertain)
        # The guide decodes greedily, one token per call for the rows still inside their word.
        for attempt in range(self.strategy.max_word_tokens):
            if attempt == 0:
                glogp = self._guide_sync(rows, building)
            else:
                glogp = guide.stream.forward(
                    {b: self._gctx(rows[b]).ids + word_ids[b] for b in building}
                )
            still: list[int] = []
            for j, b in enumerate(building):
                token = int(glogp[j].argmax())
                if b not in first:
                    overlap, hit = self._overlap(logp[b], glogp[j])
                    first[b] = (float(glogp[j, token].exp()), overlap, hit)
                if guide.vocab.is_end(token):
                    ended.add(b)
                    continue
                candidate = guide.vocab.decode(word_ids[b] + [token])
                word, complete = split_word(candidate)
                if complete:
                    # The token that starts the next word is dropped (never fed).
                    words[b] = word
                    if candidate.startswith(word) and guide.vocab.decode(word_ids[b]) != word:
                        word_ids[b] = []  # the word ends inside a token: re-encode instead
                    continue
                words[b] = candidate
                word_ids[b].append(token)
                still.append(b)
            building = still
            if not building:
                break
        out: dict[int, tuple[Decision, Step]] = {}
        for b in uncertain:
            token = t_top[b]
            decision = self.strategy.decide_word(
                token,
                self.driver.vocab.key(token),
                self.driver.vocab.text(token),
                words[b],
                tuple(word_ids[b]) if word_ids[b] else (),
            )
            if b in ended:
                decision = replace(decision, ends=True)
            if decision.guide_ids == ():
                decision = replace(decision, guide_ids=None)
            p_guide, overlap, hit = first[b]
            step = Step(
                len(rows[b].steps),
                p_top[b],
                p_guide,
                None,
                "",
                decision.source,
                True,
                decision.override,
                overlap,
                hit,
            )
            out[b] = (decision, step)
        return out

    def _overlap(self, base_logp: torch.Tensor, guide_logp: torch.Tensor) -> tuple[float, bool]:
        from pairscope.metrics.overlap import overlap_at_k, top1_in_topk

        assert self.guide is not None
        k = min(OVERLAP_K, base_logp.shape[-1], guide_logp.shape[-1])
        base_strings = self.driver.top_strings(base_logp, k)
        guide_strings = self.guide.top_strings(guide_logp, k)
        return overlap_at_k(base_strings, guide_strings, k), top1_in_topk(
            guide_strings[0], base_strings, k
        )

    def _guide_sync(self, rows: list[_Row], wanted: list[int]) -> torch.Tensor:
        """Guide logprobs [len(wanted), V_guide], bringing *every* row up to date.

        Every call adds its width in cache slots to every row, so one narrow call that
        feeds all rows their new text beats lazy catch-ups: those are wide, and the
        slots they add to every row make each later pass attend over more.
        """
        guide = self.guide
        assert guide is not None and guide.stream is not None
        if not guide.stream.sync_all_rows:  # served: a request per row
            return guide.stream.forward(
                {b: guide.target(self._gctx(rows[b]), rows[b].text) for b in wanted}
            )
        logp = guide.stream.forward(
            {b: guide.target(self._gctx(row), row.text) for b, row in enumerate(rows)}
        )
        return logp.index_select(0, torch.tensor(wanted, device=logp.device))

    @staticmethod
    def _gctx(row: _Row) -> _Context:
        assert row.guide is not None
        return row.guide

    # -- appending --------------------------------------------------------------------------

    def _append(self, row: _Row, decision: Decision, step: Step) -> None:
        """Append the decision's text and update both models' ids (own ids or dirty)."""
        if decision.key == END:
            row.steps.append(replace(step, text=""))
            row.reason = "eos"
            return
        contexts: list[tuple[_Context, _Model, list[int] | None]] = [
            (row.driver, self.driver, None if decision.base_id is None else [decision.base_id])
        ]
        if row.guide is not None and self.guide is not None:
            guide_ids = None if decision.guide_ids is None else list(decision.guide_ids)
            contexts.append((row.guide, self.guide, guide_ids))
        # Owners get their own ids; the text added is the longest they release (a model
        # holding byte pieces releases them with its next whole token).
        released = {id(ctx): _feed(ctx, model, ids) for ctx, model, ids in contexts if ids}
        added = max(released.values(), key=len) if released else decision.text
        # Every model that did not itself release exactly this text re-encodes it later.
        for ctx, _, _ in contexts:
            if added and released.get(id(ctx)) != added:
                ctx.dirty = True
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
        """Decode all requests in batches (longest prompts first); results in input order."""
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].base_prompt))
        size = self.settings.batch_size
        results: dict[int, SampleResult] = {}
        for start in range(0, len(order), size):
            chunk = [(i, requests[i]) for i in order[start : start + size]]
            for index, result in self.run_batch(chunk):
                results[index] = result
                if on_result is not None:
                    on_result(index, result)
        return [results[i] for i in range(len(requests))]


def _feed(ctx: _Context, model: _Model, own: list[int]) -> str:
    """Give a model its own token ids; return the text they add to the response.

    Byte pieces (incomplete characters) are held until the character is whole. A
    dirty context is re-encoded from the text before its next pass anyway, so
    its ids are left alone.
    """
    if not ctx.dirty:
        ctx.ids = ctx.ids + own
    ctx.pending.extend(own)
    if model.vocab.is_byte(own[-1]):
        return ""
    text = model.vocab.decode(ctx.pending)
    ctx.pending.clear()
    return text


def generate(
    pair: Pair,
    prompts: Sequence[Request] | Sequence[str],
    settings: DecodeSettings | None = None,
    on_result: Callable[[int, SampleResult], None] | None = None,
) -> list[SampleResult]:
    """Decode prompts with a pair. A plain string is used as both base prompt and guide turn."""
    reqs = [p if isinstance(p, Request) else Request(base_prompt=p, guide_user=p) for p in prompts]
    return Engine(pair, settings or DecodeSettings()).run(reqs, on_result)
