"""NUDGING's words on a one-pass-per-step schedule (local models).

The lockstep word loop (:class:`Lockstep`, a served guide's) finishes every uncertain
row's word inside the step: a guide pass per token of the longest word, plus one that
shows the word has ended, while every other row waits. On a CPU as on a GPU a pass
costs about the same whatever its width, so that is about three guide passes a step.
Here a step makes one base pass and at most one guide pass:

* a row inside a word (an *open* word) gets one guide token per step;
* the base reads the row's text plus its word so far (speculation). When the next
  guide token shows the word has ended, the base's scores for the position after it
  are already there, and the row goes on in the same step;
* a speculation is used only where the text appended is exactly the word the base read
  and the base did not write it (a guide word is foreign text to the base, re-encoded
  under either policy, as the speculative read was). Otherwise the base's context is
  put back as it was, and the next pass re-reads from there.

* a row the base writes for is given its token before the guide pass, so that pass
  (which brings every row up to date anyway) ends at the row's next position: the
  guide's greedy id there is kept (read ahead). If the base is uncertain there, a round
  starts from that id, a step sooner than from the context alone. A step with no word
  open makes no guide pass for this: at batch 1 such a pass would cost more than the
  steps it saves (bench/ahead.py measures both).

* a step waits for the device twice: for the base's top-1 (which rows are uncertain
  decides what the guide is fed), and once after the guide pass for everything else
  (the guide's greedy ids and every top-k list the step's notes need, ``_Lists``).

The words, and Nudging's choices on them, are those of the lockstep loop, so texts and
traces are the same (tested); only the schedule of the passes differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from pairscope.decoding.contexts import Context
from pairscope.decoding.strategies import (
    OVERLAP_K,
    Decision,
    Uncertain,
    base_top1,
    uncertain_step,
)
from pairscope.decoding.types import Step
from pairscope.methods.nudging_text import RowState, Word, split_word
from pairscope.runtime.scores import Ranked, TopLists, first_max, greedy
from pairscope.runtime.vocab import TokenText

# The engine and its rows (``engine.Engine``, ``engine._Row``) are typed Any here: the
# engine reaches this module through the registry, and imports stay free of cycles.
Engine = Any
_Row = Any


def extend_word(
    vocab: TokenText, toks: list[int], token: int, left: int
) -> tuple[Word | None, bool]:
    """A word after the guide's next greedy id ``token`` (``toks``: its ids so far, to
    which an id that continues it is appended; ``left``: ids it may still take,
    this one included).

    Returns the settled word (None while it goes on) and whether ``token`` starts the
    next word (it then waits as the round's plan)."""
    if vocab.is_end(token) or vocab.is_special(token):
        return Word(vocab.decode(toks), tuple(toks), True), False
    word, complete = split_word(vocab.decode(toks + [token]))
    if not complete:
        toks.append(token)
        if left <= 1:  # the word-length cap: what the guide wrote so far
            return Word(vocab.decode(toks), tuple(toks), False), False
        return None, False
    if vocab.decode(toks) == word:
        return Word(word, tuple(toks), False), True
    return Word(word, None, False), False  # the word ends inside a token


@dataclass
class OpenWord:
    """A row's word still being written, with the base position it is for."""

    in_round: bool
    p_base: float
    base_token: int
    base_tops: list[int]  # the base's top-k ids at the position (overlap@k)
    left: int
    toks: list[int] = field(default_factory=list)
    facts: tuple[float, float, bool] | None = None  # p_guide, overlap@k, hit
    spec: str | None = None  # the text after the row's own that the base read this step
    saved: tuple[list[int], int, list[int], list[int]] | None = None


# A word opened from an id, with the guide's top-k at its position (probability of the
# top-1, ids) or the distribution that chose the id, still on the device.
Pending = tuple[OpenWord, torch.Tensor | tuple[float, list[int]]]


@dataclass
class _BaseTop:
    """The base's top-1 probability and id at each row it read this step."""

    probs: list[float]
    ids: list[int]
    at: dict[int, int]  # batch row -> row of the base pass

    def prob(self, b: int) -> float:
        return self.probs[self.at[b]]

    def token(self, b: int) -> int:
        return self.ids[self.at[b]]


def _rank_pending(pending: list[Pending]) -> Ranked | None:
    """The top-k of the pending words' distributions still on the device (None: none)."""
    logps = [top for _, top in pending if isinstance(top, torch.Tensor)]
    return TopLists.rank(torch.stack(logps), OVERLAP_K) if logps else None


class _Lists:
    """Device-side top-k lists a step reads together, in one host transfer."""

    def __init__(self) -> None:
        self._parts: dict[str, Ranked] = {}

    def add(self, name: str, ranked: Ranked) -> None:
        self._parts[name] = ranked

    def read(self) -> dict[str, TopLists]:
        if not self._parts:
            return {}
        return dict(zip(self._parts, TopLists.read(*self._parts.values())))


def _save(ctx: Context) -> tuple[list[int], int, list[int], list[int]]:
    return list(ctx.ids), ctx.synced, list(ctx.held), list(ctx.starts)


def _restore(ctx: Context, saved: tuple[list[int], int, list[int], list[int]]) -> None:
    ctx.ids, ctx.synced, ctx.held, ctx.starts = saved


class WordSteps:
    """One engine step of NUDGING on the one-pass schedule (see the module docstring)."""

    def __init__(self, engine: Engine, strategy: Any) -> None:
        """``strategy``: the position protocol's (``nudging.Nudging``)."""
        self.engine = engine
        self.strategy = strategy

    def step(self, rows: list[_Row]) -> None:
        assert self.engine.guide is not None and self.engine.guide.stream is not None
        lists = _Lists()  # what this step reads after the guide pass, in one transfer
        # 1. One base pass: rows outside a word read their text, rows inside one their
        #    text and the word so far.
        fed, texts, specs = self._base_feed(rows)
        top, wanted = self._base_pass(rows, fed, texts, lists)
        uncertain = set(wanted)
        # 2. Rows outside a word: the uncertain ones open one (a settled word is one the
        #    id read ahead ends); the base writes the others' tokens now, so the guide
        #    pass reads what comes after them.
        outside = [b for b in fed if rows[b].state.open is None]
        opened = [b for b in outside if b in uncertain]
        settled, pending = self._open(rows, opened, top, {})
        confident = [b for b in outside if b not in uncertain]
        self._base_writes(rows, confident, top)
        older = _rank_pending(pending)  # earlier passes' distributions of words' first ids
        if older is not None:
            lists.add("older", older)
        # 3. One guide pass (every row synced): each open word takes its next token, and
        #    the rows the base wrote for ride along (only in a pass made anyway: a pass
        #    costs about the same whatever its width, more than the step it may save).
        named = [b for b, r in enumerate(rows) if r.state.open is not None and b not in settled]
        ahead = [b for b in confident if self._reads_ahead(rows[b])] if named else []
        glogp = self._guide_pass(rows, named, ahead, lists)
        # The step's one read of the device after the guide pass: the guide's greedy ids,
        # its top-k at the words' rows, the base's at the uncertain positions and the
        # older distributions'.
        read = lists.read()
        base_tops = dict(zip(wanted, read["base"].ids)) if wanted else {}
        for b in opened:
            self._word(rows[b]).base_tops = base_tops[b]
        if pending:
            self._note_pending(pending, read["older"])
        plan_tops: dict[int, tuple[float, list[int]]] = {}
        if glogp is not None:
            plan_tops = self._take_guide_ids(rows, named, ahead, glogp, read, settled)
        # 4. Settled words are appended; where the base read exactly that word, its
        #    scores are the next position's and the row goes on.
        goes_on = self._append_words(rows, settled, specs)
        # 5. The positions after the words that went on.
        self._go_on(rows, goes_on, base_tops, top, plan_tops)

    def _base_feed(self, rows: list[_Row]) -> tuple[list[int], list[str], dict[int, OpenWord]]:
        """The rows the base pass reads and their texts: a row outside a word its text, a
        row inside one its text and the word so far (a speculation, saved to be put
        back), where the word's text can be read. Returns the rows, their texts and the
        speculating rows' words."""
        gvocab = self.engine.guide.vocab
        fed: list[int] = []
        texts: list[str] = []
        specs: dict[int, OpenWord] = {}
        for b, row in enumerate(rows):
            w = row.state.open
            if w is None:
                fed.append(b)
                texts.append(row.text)
                continue
            w.spec = None
            if w.toks and not row.driver.held and not self.engine.guide_context(row).held:
                spec = gvocab.decode(w.toks)
                if spec and "\ufffd" not in spec:
                    w.spec, w.saved = spec, _save(row.driver)
                    specs[b] = w
                    fed.append(b)
                    texts.append(row.text + spec)
        return fed, texts, specs

    def _base_pass(
        self, rows: list[_Row], fed: list[int], texts: list[str], lists: _Lists
    ) -> tuple[_BaseTop, list[int]]:
        """The step's base pass over the rows fed: its top-1 at each, and the uncertain
        ones among them, whose base top-k (overlap@k, one top-k for all) joins ``lists``."""
        top = _BaseTop([], [], {b: i for i, b in enumerate(fed)})
        wanted: list[int] = []  # the uncertain positions read
        if fed:
            driver = self.engine.driver
            ids = driver.targets([rows[b].driver for b in fed], texts)
            scores = driver.stream.scores(dict(zip(fed, ids)))
            top.probs, top.ids = scores.top1()
            wanted = [b for b in fed if self.strategy.uncertain(top.prob(b))]
            if wanted:
                lists.add("base", scores.ranked([top.at[b] for b in wanted], OVERLAP_K))
        return top, wanted

    def _guide_pass(
        self, rows: list[_Row], named: list[int], ahead: list[int], lists: _Lists
    ) -> torch.Tensor | None:
        """The step's guide pass, if any row wants one (None: no pass): the open words of
        the ``named`` rows are fed their ids so far, the ``ahead`` rows ride along. Its
        greedy ids, and the guide's top-k at the named rows, join ``lists``."""
        if not (named or ahead):
            return None
        feed = {b: list(self._word(rows[b]).toks) for b in named}
        glogp = self.engine.guide_sync(rows, named + ahead, feed)
        values, ids = first_max(glogp)
        lists.add("greedy", (values[:, None], ids[:, None]))
        if named:  # read where a word starts or a plan is made (known after greedy)
            lists.add("guide", TopLists.rank(glogp[: len(named)], OVERLAP_K))
        return glogp

    def _take_guide_ids(
        self,
        rows: list[_Row],
        named: list[int],
        ahead: list[int],
        glogp: torch.Tensor,
        read: dict[str, TopLists],
        settled: dict[int, Word],
    ) -> dict[int, tuple[float, list[int]]]:
        """The guide pass's greedy ids: kept at the rows read ahead; appended to the
        named rows' open words (a word's first position noted), a word they settle
        joining ``settled``, an id that starts the next word kept as the row's plan.
        Returns the guide's top-k (probability of the top-1, ids) at those plans."""
        gvocab = self.engine.guide.vocab
        best = [ids[0] for ids in read["greedy"].ids]
        for j, b in enumerate(ahead, start=len(named)):
            rows[b].state.ahead = (best[j], glogp[j])
        gtops = read.get("guide")
        plan_tops: dict[int, tuple[float, list[int]]] = {}
        for j, b in enumerate(named):
            w = self._word(rows[b])
            assert gtops is not None
            if w.facts is None:  # the first position of a new word
                self._note(w, (gtops.probs[j][0], gtops.ids[j]))
            word, starts_next = extend_word(gvocab, w.toks, best[j], w.left)
            w.left -= 1
            if word is not None:
                settled[b] = word
                if starts_next:  # the next word's first position
                    rows[b].state.plan, rows[b].state.plan_logps = [best[j]], [glogp[j]]
                    plan_tops[b] = (gtops.probs[j][0], gtops.ids[j])
        return plan_tops

    def _append_words(
        self, rows: list[_Row], settled: dict[int, Word], specs: dict[int, OpenWord]
    ) -> list[int]:
        """Append the settled words. Returns the rows that go on in this step: where the
        base read exactly the word, and the guide wrote it (foreign text to the base), its
        scores are the next position's. Every other speculation is put back."""
        engine = self.engine
        goes_on: list[int] = []
        for b, word in settled.items():
            row = rows[b]
            w = self._word(row)
            row.state.open = None
            before = row.text
            decision = self._decide(w, word)
            engine.append(row, engine.not_text(decision), self._trace(row, w, decision))
            if (
                w.spec is not None
                and row.reason is None
                and row.state.in_round  # the guide wrote it (foreign text to the base)
                and row.text == before + w.spec
            ):
                goes_on.append(b)
        for b, w in specs.items():
            if b not in goes_on:
                assert w.saved is not None
                _restore(rows[b].driver, w.saved)
        return goes_on

    def _go_on(
        self,
        rows: list[_Row],
        goes_on: list[int],
        base_tops: dict[int, list[int]],
        top: _BaseTop,
        plan_tops: dict[int, tuple[float, list[int]]],
    ) -> None:
        """The positions after the words that went on: a confident base writes its token;
        an uncertain one opens the next word (read by the next pass)."""
        live = [b for b in goes_on if rows[b].reason is None]
        self._base_writes(rows, [b for b in live if b not in base_tops], top)
        later = [b for b in live if b in base_tops]
        settled_later, pending = self._open(rows, later, top, plan_tops)
        assert not settled_later  # a row inside a round starts from its plan, not ahead
        for b in later:
            self._word(rows[b]).base_tops = base_tops[b]
        self._note_pending(pending)  # this pass's plans (a plan of an earlier one: read here)

    def _base_writes(self, rows: list[_Row], which: list[int], top: _BaseTop) -> None:
        """Append the base's top-1 token at these rows' confident positions."""
        engine = self.engine
        for b in which:
            row, p = rows[b], top.prob(b)
            decision = engine.base_decision(top.token(b), "base")
            engine.append(
                row, decision, Step(len(row.steps), p, None, None, "", "base", False, False)
            )

    def _reads_ahead(self, row: _Row) -> bool:
        """Whether the guide's next id is read for a row the base just wrote for: a
        round may start at its next position from the guide's view of its text alone."""
        return row.reason is None and not row.driver.held

    def _open(
        self,
        rows: list[_Row],
        which: list[int],
        top: _BaseTop,
        plan_tops: dict[int, tuple[float, list[int]]],
    ) -> tuple[dict[int, Word], list[Pending]]:
        """Open a word at each of these rows' uncertain positions (their base scores are
        this step's). A row inside a round starts from its plan, the guide's own id after
        its last word; a row starting a round starts from the id read ahead at its
        position, if any. Returns the rows whose word that id already settles (an end of
        turn), with their words, still open; and for each word starting from an id, the
        guide's top-k at its position (``plan_tops``, when this step's pass made it) or
        the distribution of an earlier pass that chose the id, to be noted once the
        words' base top-k lists are known (:meth:`_note_pending`)."""
        pending: list[Pending] = []
        settled: dict[int, Word] = {}
        gvocab = self.engine.guide.vocab
        for b in which:
            row = rows[b]
            w = OpenWord(
                in_round=row.state.in_round,
                p_base=top.prob(b),
                base_token=top.token(b),
                base_tops=[],
                left=self.strategy.max_word_tokens,
            )
            row.state.open = w
            if row.state.in_round and row.state.plan:
                w.toks = row.state.plan[:1]
                pending.append((w, plan_tops.get(b, row.state.plan_logps[0])))
            row.state.plan, row.state.plan_logps = [], []  # a plan serves one word
            if not row.state.in_round and row.state.ahead is not None:
                token, logp = row.state.ahead
                pending.append((w, logp))
                word, starts_next = extend_word(gvocab, w.toks, token, w.left)
                w.left -= 1
                if word is not None:
                    settled[b] = word
                    if starts_next:
                        row.state.plan, row.state.plan_logps = [token], [logp]
            row.state.ahead = None
        return settled, pending

    def _note_pending(self, pending: list[Pending], tops: TopLists | None = None) -> None:
        """Note each pending word from its top-k, or from its distribution's row of
        ``tops`` (the lists of those distributions, in order; made here when None)."""
        if tops is None:
            ranked = _rank_pending(pending)
            tops = TopLists.read(ranked)[0] if ranked is not None else None
        n = 0
        for w, known in pending:
            if isinstance(known, torch.Tensor):
                assert tops is not None
                known, n = (tops.probs[n][0], tops.ids[n]), n + 1
            self._note(w, known)

    def _note(self, w: OpenWord, guide_top: tuple[float, list[int]]) -> None:
        """The guide's top-1 probability and overlap@k at the word's position."""
        overlap, hit = self.engine.overlap(w.base_tops, guide_top[1])
        w.facts = (guide_top[0], overlap, hit)

    @staticmethod
    def _word(row: _Row) -> OpenWord:
        state: RowState = row.state
        assert state.open is not None
        return state.open

    def _decide(self, w: OpenWord, word: Word) -> Decision:
        token, key, text = base_top1(self.engine.driver.vocab, w.base_token)
        return self.strategy.decide(word, w.in_round, token, key, text)

    @staticmethod
    def _trace(row: _Row, w: OpenWord, decision: Decision) -> Step:
        return uncertain_step(len(row.steps), w.p_base, w.facts, decision)


class Lockstep:
    """The lockstep word loop (a served guide's): decode the guide greedily, batched
    over the rows still inside their word, every uncertain row's word inside the step.

    A row outside a round starts one from its (re-encoded) context; a row inside
    one starts from its plan, the guide's own greedy ids after its text. Each word
    carries the guide ids that write exactly it (None when the word ends inside a
    token: the guide then re-encodes), and takes at most ``max_tokens`` ids after
    the plan's first.

    Run-ahead: while some rows still build their words, a row whose word is done
    rides along in those passes (they cost rows x width, so a rider adds little)
    and extends its plan on the guide's greedy path, which its round follows.
    Its next word then often comes from the plan with no pass at all. A plan is
    dropped when the round ends (the base writes), so it is only ever used for
    exactly the context it was computed after.
    """

    def __init__(self, at: Uncertain, max_tokens: int) -> None:
        view: Any = at  # the engine's view (engine._Uncertain)
        self.view, self.engine, self.rows = view, view.engine, view.batch
        self.guide = self.engine.guide
        assert self.guide is not None and self.guide.stream is not None
        self.max_tokens = max_tokens
        self.words: dict[int, Word] = {}
        self.toks: dict[int, list[int]] = {}  # each building word's ids so far
        self.left: dict[int, int] = {}  # the ids each building word may still take

    def run(self) -> dict[int, Word]:
        """The guide's next word at each uncertain row."""
        wanted = list(self.view.rows)
        building = self._start(wanted)
        riding = self.rides_along()
        first = True
        while building:
            riders = [b for b in wanted if b not in building and self._rides(b)] if riding else []
            building = self._pass(building, riders, first)
            first = False
        return {b: self.words[b] for b in wanted}

    def rides_along(self) -> bool:
        """Whether rows whose word is done ride along in the passes: only where a pass
        covers every row anyway (a local guide)."""
        return self.guide.stream.sync_all_rows

    def _start(self, wanted: list[int]) -> list[int]:
        """Start each row's word (from its plan inside a round: the guide's distribution
        at this position chose it). Returns the rows whose word still needs passes."""
        rows = self.rows
        for b in wanted:
            if not rows[b].state.in_round:
                rows[b].state.plan, rows[b].state.plan_logps = [], []
        planned = [b for b in wanted if rows[b].state.plan]
        if planned:
            logps = torch.stack([rows[b].state.plan_logps[0] for b in planned])
            self.view.note_all(planned, logps)
        return [b for b in wanted if not self._from_plan(b)]

    def _from_plan(self, b: int) -> bool:
        """Row b's word from its plan; True when the plan already holds the whole word
        (the rest of the plan then stays the guide's path)."""
        state = self.rows[b].state
        plan, logps = state.plan, state.plan_logps
        self.toks[b], self.left[b] = plan[:1], self.max_tokens
        state.plan, state.plan_logps = [], []
        for i in range(1, len(plan)):
            if self._take(b, plan[i], logps[i]):
                if state.plan:
                    state.plan, state.plan_logps = plan[i:], logps[i:]
                return True
        return False

    def _take(self, b: int, token: int, logp: torch.Tensor) -> bool:
        """Row b's next greedy id (chosen by ``logp``); True once its word is settled."""
        word, plans = extend_word(self.guide.vocab, self.toks[b], token, self.left[b])
        self.left[b] -= 1
        if word is None:
            return False
        self.words[b] = word
        if plans:  # the id that starts the next word waits as the round's plan
            self.rows[b].state.plan, self.rows[b].state.plan_logps = [token], [logp]
        return True

    def _rides(self, b: int) -> bool:
        plan = self.rows[b].state.plan
        return 0 < len(plan) <= self.max_tokens and not self.guide.vocab.is_special(plan[-1])

    def _pass(self, building: list[int], riders: list[int], first: bool) -> list[int]:
        """One guide pass: each building word takes its next greedy id, each rider's plan
        its next id. Returns the rows whose word still goes on."""
        rows, engine = self.rows, self.engine
        feed = {b: self.toks[b] for b in building}
        for b in riders:
            own = self.words[b].ids
            assert own is not None  # a plan follows only a word of the guide's own ids
            feed[b] = list(own) + rows[b].state.plan
        named = building + riders
        if first:
            glogp = engine.guide_sync(rows, named, feed)
        else:
            contexts = {b: engine.guide_context(rows[b]).ids + feed[b] for b in named}
            glogp = self.guide.stream.scores(contexts).logprobs()
        best = greedy(glogp)  # one host transfer per pass
        unnoted = [j for j, b in enumerate(building) if b not in self.view.facts]
        if unnoted:
            self.view.note_all([building[j] for j in unnoted], glogp[unnoted])
        for j, b in enumerate(riders, start=len(building)):
            rows[b].state.plan.append(best[j])
            rows[b].state.plan_logps.append(glogp[j])
        return [b for j, b in enumerate(building) if not self._take(b, best[j], glogp[j])]
