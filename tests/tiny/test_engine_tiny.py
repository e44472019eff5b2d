"""Engine tier 2: tiny random models with their own (different) tokenizers."""

from __future__ import annotations

from dataclasses import replace

import pytest
from torch.overrides import TorchFunctionMode

from pairscope.decoding.engine import DecodeSettings, Request, generate
from pairscope.methods.nudging import split_word
from tests import engine_checks as checks

PROMPTS = [
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:",
    "The capital of France is",
    "I cannot help with that request",
    "Let's think step by step about the numbers",
    "The quick brown fox",
    "Answer: Tom has",
]


def reqs(n: int = 24, stop: tuple[str, ...] = ()) -> list[Request]:
    return [Request(p, p, stop, n) for p in PROMPTS]


def test_base_matches_transformers_generate(tiny_pair):
    checks.check_base_matches_generate(tiny_pair, reqs())


def test_neutral_settings_reproduce_base(tiny_pair):
    checks.check_neutral_settings(tiny_pair, reqs())


def test_full_blend_reproduces_guide(tiny_pair):
    checks.check_full_guide(tiny_pair, reqs())


@pytest.mark.parametrize("method", ["base", "nudging", "blendin", "blend:0.5"])
def test_batch_invariance(tiny_pair, method):
    checks.check_batch_invariance(tiny_pair, reqs(), method)


@pytest.mark.parametrize("role", ["base", "guide"])
def test_cache_invariance(tiny_pair, role):
    lm = getattr(tiny_pair, role)
    prompts = [lm.encode_completion_prompt(p) for p in PROMPTS]
    assert checks.check_cache_invariance(lm, prompts) <= 1e-4


@pytest.mark.parametrize("role", ["base", "guide"])
@pytest.mark.parametrize("head", ["narrowed", "absent"])
def test_a_pass_computes_logits_only_for_the_rows_read(tiny_pair, role, head, monkeypatch):
    """A guide read at a few rows brings every row's cache up to date but computes the
    head (vocab x hidden a row) at those rows alone, with the same scores as a fresh
    pass; a model whose head cannot be found gets the rows selected from its output."""
    from pairscope.runtime.stream import ModelStream

    lm = getattr(tiny_pair, role)
    prompts = [lm.encode_completion_prompt(p) for p in PROMPTS]
    module = lm.model.get_output_embeddings()
    widths: list[int] = []  # the rows each call of the head computed
    hook = module.register_forward_hook(lambda m, args, out: widths.append(args[0].shape[0]))
    if head == "absent":
        monkeypatch.setattr(type(lm.model), "get_output_embeddings", lambda self: None)
    try:
        stream = ModelStream(lm.model, len(prompts))
        worst = checks.check_cache_invariance(lm, prompts, seed=3, stream=stream, read_some=True)
        assert worst <= 1e-4
        every = {r: p + [5] for r, p in enumerate(prompts)}
        read = stream.scores(every, read=[2, 0])
    finally:
        hook.remove()
    assert read.logits.shape[0] == 2
    assert widths[-1] == (2 if head == "narrowed" else len(prompts))


FEWSHOT = "Question: What is 2 + 2?\nAnswer: 2 + 2 = 4. The answer is 4.\n\n" * 2


@pytest.mark.parametrize("role", ["base", "guide"])
def test_forked_shared_prefix_stream_is_cache_invariant(tiny_pair, role):
    from pairscope.runtime.stream import shared_prefix

    lm = getattr(tiny_pair, role)
    prompts = [lm.encode_completion_prompt(FEWSHOT + p) for p in PROMPTS]
    prefix = shared_prefix(prompts)
    assert len(prefix) > 20
    one = lm.new_stream(1)
    one.forward({0: prefix})
    stream = one.fork(len(prompts))
    assert all(row.ids == prefix for row in stream.rows)
    assert checks.check_cache_invariance(lm, prompts, stream=stream) <= 1e-4


@pytest.mark.parametrize("method", ["base", "nudging", "blendin"])
def test_shared_prefix_batches_decode_like_single_rows(tiny_pair, method):
    """Batches of 2 share the few-shot prefix (kept across batches); batch 1 never does."""
    from pairscope.decoding.engine import Engine

    shared = [Request(FEWSHOT + p, p, (), 16) for p in PROMPTS]
    engine = Engine(tiny_pair, DecodeSettings(method=method, batch_size=2))
    batched = [r.text for r in engine.run(shared)]
    kept = engine.driver._prefix
    assert kept is not None and len(kept.rows[0].ids) > 20  # the prefix was shared
    assert batched == checks.texts(tiny_pair, shared, method, batch_size=1)


def test_guided_methods_intervene_and_record_steps(tiny_pair):
    for method in ("nudging", "blendin"):
        out = generate(tiny_pair, reqs(), DecodeSettings(method=method, tau=0.9, batch_size=3))
        for res in out:
            assert res.positions == len(res.steps) > 0
            assert "".join(s.text for s in res.steps).startswith(res.text)
            if method == "blendin":
                assert res.intervention_rate == res.uncertain / res.positions
            else:  # NUDGING: rounds / base-written tokens
                rounds = sum(s.round_start for s in res.steps)
                written = sum(s.source == "base" for s in res.steps)
                assert res.ir_counts == (rounds, written)
                assert all(s.source == "guide" for s in res.steps if s.round_start)
            for s in res.steps:
                assert s.uncertain == (s.p_base < 0.9)
                if s.uncertain:
                    assert s.p_guide is not None and 0 <= s.overlap <= 1
                    if method == "blendin":
                        assert 0 <= s.alpha <= 1


def test_stop_strings_and_max_tokens(tiny_pair):
    out = generate(tiny_pair, reqs(30), DecodeSettings(method="base"))
    for res in out:
        assert res.positions <= 30
    # A stop string the response starts with ends it at once, cut before the stop string.
    first = out[0].text[:2]
    stopped = generate(
        tiny_pair, [Request(PROMPTS[0], PROMPTS[0], (first,), 30)], DecodeSettings(method="base")
    )[0]
    assert stopped.text == "" and stopped.stop_reason == "stop"


@pytest.mark.parametrize(
    "text,word,complete",
    [
        (" the", " the", False),
        (" the ", " the", True),
        ("\nThe cat", "\nThe", True),
        ("5.\n", "5.\n", False),  # a newline belongs to its word (the reference splits on " ")
        ("   ", "   ", False),
    ],
)
def test_split_word(text, word, complete):
    assert split_word(text) == (word, complete)


@pytest.fixture(scope="module")
def window8_pair(tiny_dirs, tiny_pair, tmp_path_factory):
    """The tiny base re-built with a sliding window of 8, beside the tiny guide."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM

    from pairscope.models import Pair, load_model
    from tests.conftest import tiny_gemma3_config

    tok = AutoTokenizer.from_pretrained(tiny_dirs["base"])
    torch.manual_seed(5)
    model = Gemma3ForCausalLM(tiny_gemma3_config(len(tok), sliding_window=8)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(12.0)
    model.generation_config.eos_token_id = tok.eos_token_id
    path = tmp_path_factory.mktemp("window8")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    base = load_model(str(path), device="cpu", dtype="float32")
    return Pair(base=base, guide=tiny_pair.guide)


def test_sliding_window_counts_live_tokens_after_rollbacks_and_padding(window8_pair):
    import random

    lm = window8_pair.base
    # Prompts of different lengths (left padding), all longer than the window.
    rng = random.Random(2)
    prompts = [[1] + [rng.randrange(5, len(lm.tokenizer)) for _ in range(n)] for n in (9, 14, 23)]
    assert checks.check_cache_invariance(lm, prompts, seed=11) <= 1e-4


@pytest.mark.parametrize("method", ["base", "nudging", "blendin"])
def test_sliding_window_results_do_not_depend_on_the_batch(window8_pair, method):
    one = checks.texts(window8_pair, reqs(), method, batch_size=1)
    assert checks.texts(window8_pair, reqs(), method, batch_size=4) == one
    assert checks.texts(window8_pair, reqs(), method, batch_size=6) == one


def test_a_new_method_is_one_strategy_class(tiny_pair, monkeypatch):
    """The engine knows no method: a strategy written here, that appends the guide's
    top-1 at every uncertain position, registers by name and decodes exactly as
    blend:1 does."""
    from pairscope import methods
    from pairscope.decoding.engine import Engine
    from pairscope.decoding.strategies import Decision, Strategy, Uncertain

    class GuideTop1(Strategy):
        name = "guide-top1"
        consults = True

        def intervene(self, at: Uncertain) -> dict[int, Decision]:
            out = {}
            for b in at.rows:
                base, guide = at.base_top(b, 100), at.guide_top(b, 100)
                key = guide.top_key
                guide_id = guide.id_of(key)
                out[b] = Decision(
                    key,
                    at.texts(base, guide).get(key, ""),
                    "blend",
                    override=key != base.top_key,
                    alpha=1.0,
                    base_id=base.id_of(key),
                    guide_ids=None if guide_id is None else (guide_id,),
                )
            return out

    monkeypatch.setattr(methods, "REGISTRY", dict(methods.REGISTRY))
    entry = methods.Method("guide-top1", "the guide's top-1", "both", lambda *_: GuideTop1())
    methods.register(entry)
    with pytest.raises(ValueError, match="taken"):
        methods.register(replace(entry, name="nudging"))
    requests = reqs(16)
    mine = Engine(tiny_pair, DecodeSettings(method="guide-top1", batch_size=3)).run(requests)
    assert {r.method for r in mine} == {"guide-top1"}
    blend = Engine(tiny_pair, DecodeSettings(method="blend:1", batch_size=3)).run(requests)
    assert [r.text for r in mine] == [r.text for r in blend]
    assert [r.overridden for r in mine] == [r.overridden for r in blend]
    assert sum(r.uncertain for r in mine) > 0  # the strategy was asked


@pytest.mark.parametrize("tau", [0.4, 0.9, 2.0])
def test_nudging_rounds_exceed_base_tokens_by_one_at_most(tiny_pair, tau):
    """The sequential gate bounds a NUDGING sample's rounds by its base-written tokens
    + 1 (every round but the first follows a base-written token): the engine keeps it."""
    results = generate(tiny_pair, reqs(24), DecodeSettings(method="nudging", tau=tau))
    for r in results:
        rounds, written = r.ir_counts
        assert rounds <= written + 1, (rounds, written, r.text)
    assert sum(r.ir_counts[0] for r in results) > 0


def _same_traces(a_results: list, b_results: list) -> None:
    """Texts equal and every step's trace equal (probabilities to float32 rounding: a row
    computed in another pass's company may differ in the last bits, as in any batch)."""
    assert [r.text for r in a_results] == [r.text for r in b_results]
    for a, b in zip(a_results, b_results):
        assert len(a.steps) == len(b.steps)
        for x, y in zip(a.steps, b.steps):
            assert x.p_base == pytest.approx(y.p_base, rel=1e-5, abs=1e-7), (x, y)
            assert x.p_guide == pytest.approx(y.p_guide, rel=1e-5, abs=1e-7), (x, y)
            assert replace(x, p_base=0.0, p_guide=None) == replace(y, p_base=0.0, p_guide=None)


@pytest.mark.parametrize("tau", [0.6, 0.9])
def test_nudging_schedules_change_nothing_but_the_passes(tiny_pair, monkeypatch, tau):
    """NUDGING's three schedules write the same texts and traces: the one-pass schedule
    (methods/nudging_words.py: one base and at most one guide pass a step, the base reading a
    word before it is known to have ended), and the lockstep word loop with and without
    run-ahead riders. The one-pass schedule makes the fewest guide passes, at most one
    per step."""
    from pairscope.decoding import engine as engine_module
    from pairscope.methods import nudging_words as words_module
    from tests import nudging_schedules as schedules

    steps = [0]
    inner = words_module.WordSteps.step

    def counted(self, rows):  # type: ignore[no-untyped-def]
        steps[0] += 1
        return inner(self, rows)

    monkeypatch.setattr(words_module.WordSteps, "step", counted)

    def decode(one_pass: bool, run_ahead: bool) -> tuple[list, int]:
        if not one_pass:  # the lockstep word loop (a served guide's) on local models
            schedules.use_lockstep(monkeypatch, riders=run_ahead)
        engine = engine_module.Engine(
            tiny_pair, DecodeSettings(method="nudging", tau=tau, batch_size=len(PROMPTS))
        )
        results = engine.run(reqs(32))
        assert engine.guide is not None
        return results, engine.guide.stream.passes

    one_pass, one_pass_passes = decode(True, True)
    one_pass_steps, steps[0] = steps[0], 0
    riding, riding_passes = decode(False, True)
    alone, alone_passes = decode(False, False)
    assert steps[0] == 0  # the lockstep runs never entered the one-pass schedule
    _same_traces(riding, alone)
    _same_traces(one_pass, alone)
    assert sum(r.ir_counts[0] for r in one_pass) > 0  # rounds happened
    assert riding_passes < alone_passes, (riding_passes, alone_passes)
    assert one_pass_passes < riding_passes, (one_pass_passes, riding_passes)
    assert one_pass_passes <= one_pass_steps, (one_pass_passes, one_pass_steps)


class _HostReads(TorchFunctionMode):
    """Counts the reads that bring a tensor's values to the host (each one waits for
    the device) outside the models' own forward calls."""

    READS = frozenset({"tolist", "item", "cpu", "numpy", "__bool__", "__int__", "__float__"})

    def __init__(self, models) -> None:
        super().__init__()
        self.count, self.depth = 0, 0
        for model in models:
            model.register_forward_pre_hook(lambda *_: self._enter())
            model.register_forward_hook(lambda *_: self._leave())

    def _enter(self) -> None:
        self.depth += 1

    def _leave(self) -> None:
        self.depth -= 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.depth == 0 and getattr(func, "__name__", "") in self.READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method", ["base", "blendin", "nudging"])
def test_one_host_read_per_step_and_per_guide_reading(tiny_pair, method, monkeypatch):
    """The device-agnostic loop reads the device once per step (the base's top-1
    probabilities and ids together); a guided step adds one read per batched top-k or
    guide pass, never one per row."""
    from pairscope.decoding.engine import Engine

    settings = DecodeSettings(method=method, tau=0.6, batch_size=len(PROMPTS))
    engine = Engine(tiny_pair, settings)
    engine.run(reqs(4))  # warm-up: shared-prefix streams, memoised token texts
    iterations = [0]
    inner = Engine._step

    def counted(self, rows):  # type: ignore[no-untyped-def]
        iterations[0] += 1
        return inner(self, rows)

    monkeypatch.setattr(Engine, "_step", counted)
    decided = [0]  # steps at which the strategy decided at some uncertain row
    inner_intervene = type(engine.strategy).intervene

    def intervene(self, at):  # type: ignore[no-untyped-def]
        decided[0] += 1
        return inner_intervene(self, at)

    monkeypatch.setattr(type(engine.strategy), "intervene", intervene)
    reads = _HostReads([tiny_pair.base.model, tiny_pair.guide.model])
    with reads:
        results = engine.run(reqs(16))
    steps = iterations[0]
    if method == "base":
        assert reads.count == steps
        return
    if method == "blendin":
        # + one read, of the base's and the guide's batched top-k lists together, at each
        # step with an uncertain row.
        assert decided[0] > 0
        assert reads.count == steps + decided[0], (reads.count, steps, decided[0])
        return
    # NUDGING, one base and one guide pass a step: the base's top-1 (which rows are
    # uncertain decides what the guide is fed), then one read after the guide pass of
    # the guide's greedy ids and every top-k list the step's notes need; a plan made by
    # an earlier pass and noted after a word went on would add one (rare: none here).
    assert sum(r.ir_counts[0] for r in results) > 0
    assert steps < reads.count <= 2 * steps, (reads.count, steps)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("role", ["base", "guide"])
def test_admitted_rows_are_cache_invariant(tiny_pair, role, shared):
    """Rows admitted into a running stream (a finished row's place), from the shared
    prefix's copy or from nothing, then driven with the others through appends and
    rollbacks, score as uncached passes over their ids."""
    import torch

    from pairscope.runtime.stream import shared_prefix

    lm = getattr(tiny_pair, role)
    prompts = [lm.encode_completion_prompt(FEWSHOT + p) for p in PROMPTS]
    running, later = prompts[:3], prompts[3:] + [lm.encode_completion_prompt("No prefix here")]
    one = lm.new_stream(1)
    one.forward({0: shared_prefix(prompts)})
    stream = one.fork(len(running))
    stream.forward({r: p + [7, 9] for r, p in enumerate(running)})
    stream.select([2, 0])
    slots = stream.slots
    stream.admit(later, one if shared else None)
    rows = stream.rows
    assert len(rows) == 2 + len(later)
    # An admitted row holds its prompt but its last id, in the slots the running rows
    # have already (computed on its own: no slots are added to the running rows).
    assert [r.ids for r in rows[2:]] == [p[:-1] for p in later]
    assert stream.slots == slots
    if shared:  # the rows sharing the prefix hold its copy, not a recomputation
        keys, prefix_keys = stream.cache.layers[0].keys, one.cache.layers[0].keys[0]
        held = [torch.tensor(rows[2 + n].slots[: one.slots]) for n in range(3)]
        copied = [bool(torch.equal(keys[2 + n][:, at], prefix_keys)) for n, at in enumerate(held)]
        assert copied == [True] * 3 and rows[-1].ids[: one.slots] != one.rows[0].ids
    kept = [running[2] + [7, 9], running[0] + [7, 9]]
    assert checks.check_cache_invariance(lm, kept + later, seed=5, stream=stream) <= 1e-4


def assert_same_results(got: list, want: list) -> None:  # type: ignore[type-arg]
    """Same texts, and traces alike but for the last bits of probabilities (passes of
    other widths round differently)."""
    assert [text for text, _ in got] == [text for text, _ in want]
    for (_, a), (_, b) in zip(got, want):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            near = ("p_base", "p_guide", "alpha")
            assert replace(x, **{f: None for f in near}) == replace(y, **{f: None for f in near})
            for f in near:
                assert (getattr(x, f) is None) == (getattr(y, f) is None)
                assert getattr(x, f) == pytest.approx(getattr(y, f), abs=1e-5)


def refill_requests() -> list[Request]:
    """Requests that finish at different steps (their lengths differ), sharing a prefix."""
    lengths = [5, 19, 8, 26, 11, 14, 3, 22]
    return [Request(FEWSHOT + p, p, (), n) for p, n in zip(PROMPTS + PROMPTS[:2], lengths)]


@pytest.mark.parametrize("method", ["base", "nudging", "blendin"])
def test_refilled_batches_decode_like_single_rows(tiny_pair, method, monkeypatch):
    """A finished row's place goes to the next request while the batch runs: the texts
    and traces are those of static batches and of batch 1, in fewer steps."""
    from pairscope.decoding.engine import Engine
    from pairscope.runtime import stream as stream_module

    admitted: list[int] = []
    admit = stream_module.ModelStream.admit

    def counted(self, prompts, prefix=None):  # type: ignore[no-untyped-def]
        admitted.append(len(prompts))
        return admit(self, prompts, prefix)

    monkeypatch.setattr(stream_module.ModelStream, "admit", counted)
    runs, steps = {}, {}
    for name, settings in {
        "refill": DecodeSettings(method=method, batch_size=3),
        "static": DecodeSettings(method=method, batch_size=3, refill=False),
        "single": DecodeSettings(method=method, batch_size=1),
    }.items():
        engine = Engine(tiny_pair, settings)
        passes = [0]
        step = engine._step

        def stepped(rows, step=step, passes=passes):  # type: ignore[no-untyped-def]
            passes[0] += 1
            step(rows)

        engine._step = stepped  # type: ignore[method-assign]
        admitted.clear()
        runs[name] = [(r.text, r.steps) for r in engine.run(refill_requests())]
        steps[name] = (passes[0], len(admitted))
    for name in ("static", "single"):
        assert_same_results(runs["refill"], runs[name])
    models = 2 if method != "base" else 1
    assert steps["static"][1] == 0 and steps["refill"][1] >= models
    assert steps["refill"][0] < steps["static"][0]


@pytest.mark.parametrize("method", ["base", "nudging", "blendin"])
def test_refilled_sliding_window_batches_decode_like_single_rows(window8_pair, method):
    """Admitted rows of a sliding-window model (explicit masks by live-token distance)."""
    reqs = refill_requests()
    one = checks.texts(window8_pair, reqs, method, batch_size=1)
    assert checks.texts(window8_pair, reqs, method, batch_size=3) == one


def test_slots_only_finished_rows_held_are_dropped(tiny_pair):
    """A stream that keeps taking rows does not grow by every step it ever ran: an admitted
    row's slots are the cache's last ones, and once the rows before it have finished,
    the leading slots only they held are dropped; the row still scores as an uncached
    pass over its ids."""
    from pairscope.runtime.stream import COMPACT_SLOTS, shared_prefix

    lm = tiny_pair.base
    prompts = [lm.encode_completion_prompt(FEWSHOT + p) for p in PROMPTS[:3]]
    one = lm.new_stream(1)
    one.forward({0: shared_prefix(prompts)})
    stream = one.fork(2)
    ids = {0: prompts[0], 1: prompts[1]}
    for t in range(COMPACT_SLOTS + 10):
        ids = {r: v + [5 + t % 50] for r, v in ids.items()}
        stream.forward(ids)
    stream.select([1])
    stream.admit([prompts[2]], one)
    grown = stream.slots
    assert stream.rows[1].slots[-1] == grown - 1  # the admitted row's slots are the last
    stream.forward({0: ids[1] + [9], 1: prompts[2]})
    stream.select([1])  # the running row finishes: only the admitted one is left
    assert stream.slots == len(prompts[2]) <= grown + 1 - COMPACT_SLOTS
    assert stream.rows[0].slots == list(range(stream.slots))
    assert checks.check_cache_invariance(lm, [prompts[2]], seed=2, stream=stream) <= 1e-4


@pytest.mark.parametrize("role", ["base", "guide"])
def test_a_longer_admitted_prompt_widens_the_stream(tiny_pair, role):
    """A prompt longer than the running rows' slots makes room: every row gets masked
    slots in front of the new ones, and every row still scores as an uncached pass."""
    lm = getattr(tiny_pair, role)
    running = [lm.encode_completion_prompt(p) for p in PROMPTS[1:3]]
    longer = lm.encode_completion_prompt(FEWSHOT + PROMPTS[0])
    stream = lm.new_stream(len(running))
    stream.forward({r: p + [7] for r, p in enumerate(running)})
    slots = stream.slots
    assert len(longer) - 1 > slots
    stream.admit([longer])
    assert stream.slots == len(longer) - 1
    assert stream.rows[-1].slots == list(range(stream.slots))
    assert [len(r.slots) for r in stream.rows[:2]] == [len(p) + 1 for p in running]
    kept = [p + [7] for p in running]
    assert checks.check_cache_invariance(lm, kept + [longer], seed=4, stream=stream) <= 1e-4
