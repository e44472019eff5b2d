"""Oracle and invariance checks shared by the tiny-model and real-pair test tiers."""

from __future__ import annotations

import dataclasses
import random

import torch

from pairscope.decoding.engine import DecodeSettings, Request, generate
from pairscope.models import Backend, Pair
from pairscope.runtime.stream import ModelStream


def hf_greedy(lm: Backend, prompt_ids: list[int], max_new: int) -> list[int]:
    """transformers' own greedy generate(), new ids only, cut after end-of-sequence."""
    ids = torch.tensor([prompt_ids])
    out = lm.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=sorted(lm.eos_ids),
        pad_token_id=lm.tokenizer.pad_token_id or 0,
    )
    new = out[0, len(prompt_ids) :].tolist()
    for i, t in enumerate(new):
        if t in lm.eos_ids:
            return new[:i]
    return new


def gsm8k_requests(n: int, max_new: int) -> list[Request]:
    """The default GSM8K probe's first ``n`` seeded samples as requests (skips without data)."""
    import pytest

    from pairscope.probes import build_samples, load_dataset_records, load_probe, select
    from tests.conftest import data_dir

    root = data_dir()
    if root is None:
        pytest.skip("no benchmark data directory")
    spec = load_probe("gsm8k")
    samples = select(build_samples(spec, load_dataset_records(spec, root)), n, 0)
    return [Request(s.base_prompt, s.guide_user, tuple(spec.stop), max_new) for s in samples]


def texts(pair: Pair, reqs: list[Request], method: str, **kw) -> list[str]:
    return [r.text for r in generate(pair, reqs, DecodeSettings(method=method, **kw))]


def check_base_matches_generate(pair: Pair, reqs: list[Request]) -> None:
    """Own-policy base decoding feeds the base exactly generate()'s ids, and its text is
    what those ids add after the prompt."""
    from pairscope.decoding.engine import Engine

    reqs = [dataclasses.replace(r, stop=()) for r in reqs]  # generate() has no stop strings here
    held: dict[int, list[int]] = {}
    result = Engine._result

    def spy(self, row):  # the ids the base holds when its row finishes
        held[row.index] = list(row.driver.ids)
        return result(self, row)

    Engine._result = spy  # type: ignore[method-assign]
    try:
        ours = generate(pair, reqs, DecodeSettings(method="base", batch_size=1, tokenization="own"))
    finally:
        Engine._result = result  # type: ignore[method-assign]
    tok = pair.base.tokenizer
    for i, (req, res) in enumerate(zip(reqs, ours)):
        prompt = pair.base.encode_completion_prompt(req.base_prompt)
        ids = hf_greedy(pair.base, prompt, req.max_new_tokens)
        assert held[i][len(prompt) :] == ids
        # The text generate()'s ids add after the prompt (decoding the new ids alone would
        # drop a leading space under Llama-2-style decoders).
        head = tok.decode(prompt, skip_special_tokens=True)
        full = tok.decode(prompt + ids, skip_special_tokens=True)
        assert full.startswith(head)
        expected = full[len(head) :]
        if "\ufffd" in expected:
            # A run of invalid bytes: byte-fallback decoders blank the whole run, ASCII
            # pieces included, while pairscope releases each whole character as it comes.
            continue
        assert res.text == expected, (res.text, ids)


def check_neutral_settings(pair: Pair, reqs: list[Request]) -> None:
    base = texts(pair, reqs, "base", batch_size=4)
    assert texts(pair, reqs, "nudging", tau=0.0, batch_size=4) == base
    assert texts(pair, reqs, "blend:0", batch_size=4) == base
    assert texts(pair, reqs, "blend:0", tau=2.0, batch_size=4) == base


def check_full_guide(pair: Pair, reqs: list[Request]) -> None:
    guide = generate(pair, reqs, DecodeSettings(method="guide", batch_size=4))
    blend = generate(pair, reqs, DecodeSettings(method="blend:1", tau=2.0, batch_size=4))
    for g, b in zip(guide, blend):
        assert b.text == g.text
        assert b.intervention_rate == 1.0


def check_batch_invariance(pair: Pair, reqs: list[Request], method: str) -> None:
    one = texts(pair, reqs, method, batch_size=1)
    many = texts(pair, reqs, method, batch_size=8)
    assert one == many


def check_cache_invariance(
    lm: Backend,
    prompts: list[list[int]],
    seed: int = 0,
    stream: ModelStream | None = None,
    read_some: bool = False,
) -> float:
    """Drive a stream through random appends and rollbacks on every row at once and compare
    each row's next-token logprobs with a fresh uncached pass. Returns the worst difference.

    ``stream`` may start with content (a forked shared prefix of the prompts). With
    ``read_some`` each pass reads a random subset of the rows it brings up to date, in a
    random order (the others' logits are never computed)."""
    rng = random.Random(seed)
    vocab = len(lm.tokenizer)
    stream = stream or ModelStream(lm.model, len(prompts))
    targets = {r: list(p) for r, p in enumerate(prompts)}
    worst = 0.0
    for step in range(12):
        for r in list(targets):
            ids = targets[r]
            action = rng.choice(["own", "own", "foreign", "rollback", "skip"])
            if action == "own":
                ids = ids + [rng.randrange(3, vocab)]
            elif action == "foreign":
                cut = max(len(prompts[r]), len(ids) - rng.randint(0, 3))
                ids = ids[:cut] + [rng.randrange(3, vocab) for _ in range(rng.randint(1, 4))]
            elif action == "rollback":
                ids = ids[: max(len(prompts[r]), len(ids) - rng.randint(1, 3))] + [
                    rng.randrange(3, vocab)
                ]
            targets[r] = ids
        rows = [r for r in targets if step % 3 == 0 or rng.random() < 0.7]
        fed = {r: targets[r] for r in rows}
        if read_some:
            rows = rng.sample(rows, rng.randint(1, len(rows)))
            got = stream.scores(fed, read=rows).logprobs()
        else:
            got = stream.forward(fed)
        for j, r in enumerate(rows):
            with torch.inference_mode():
                fresh = lm.model(torch.tensor([targets[r]]), logits_to_keep=1).logits[0, -1]
                fresh = fresh.float()
            ref = torch.log_softmax(fresh, dim=-1)
            worst = max(worst, float((got[j].exp() - ref.exp()).abs().max()))
    return worst


def reference_runs(pair: Pair, reqs: list[Request], **kw) -> list[tuple[str, tuple, str]]:
    """NUDGING under the reference protocol: each request's text, counts and stop reason."""
    settings = DecodeSettings(method="nudging", protocol="reference", **kw)
    return [(r.text, r.ir_counts, r.stop_reason) for r in generate(pair, reqs, settings)]


def check_reference_invariance(
    pair: Pair, reqs: list[Request], monkeypatch, refill_batch: int = 3
) -> None:
    """The reference protocol's texts and counts do not depend on the batch (its size,
    refilled places, a shared prompt prefix) nor on what a stream's cache held: the same
    as with every completion computed in a fresh one-row stream of its own."""
    from pairscope.decoding import completions

    one = reference_runs(pair, reqs, batch_size=1, share_prefix=False)
    many = reference_runs(pair, reqs, batch_size=refill_batch)  # refills: fewer rows than requests
    assert refill_batch < len(reqs)
    assert one == many
    cached = completions.complete

    def fresh(view, asks):  # every completion from nothing, alone
        out, saved = {}, view.stream
        try:
            for b, ask in asks.items():
                view.stream = view.lm.new_stream(1)
                out[b] = cached(view, {0: ask})[0]
        finally:
            view.stream = saved
        return out

    monkeypatch.setattr(completions, "complete", fresh)
    assert reference_runs(pair, reqs, batch_size=4) == one
    assert sum(counts[0] for _, counts, _ in one) > 0, "no round happened"
