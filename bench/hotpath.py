"""Where one guided decoding run spends its time: the torch profiler's operator table and
the model passes per base step (issue: performance).

    python bench/hotpath.py [--stand-in] [--method nudging] [--batch 16] [--new-tokens 64]

Prints the operators with the most self CPU time (``--rows``), then, for each model, its
forward passes, the rows they computed and the passes per base step; the engine's steps;
and for NUDGING its guide words by length in guide tokens. The stand-ins
(``--stand-in``, bench/standin.py) are the cheap-forward regime, where the loop's own work
shows; without it, the embedded pair.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
from decode import prompts  # bench/ is the script's own directory
from standin import pair_arguments, use_stand_ins
from torch.profiler import ProfilerActivity, profile

from pairscope.decoding.engine import DecodeSettings, Engine, Request
from pairscope.methods import nudging_words as words_module
from pairscope.models import load_pair
from pairscope.runtime import stream as stream_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pair_arguments(parser)
    parser.add_argument("--method", default="nudging")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    scratch = use_stand_ins(args)
    pair = load_pair(args.base, args.guide)
    reqs = prompts(args.data_dir, args.batch, args.new_tokens)
    settings = DecodeSettings(method=args.method, batch_size=args.batch)
    Engine(pair, settings).run([Request(r.base_prompt, r.guide_user, (), 4) for r in reqs[:2]])

    # Count each model's passes (wrapping the one function every pass goes through).
    passes: Counter[str] = Counter()
    rows: Counter[str] = Counter()
    names = {id(pair.base.model): "base", id(pair.guide.model): "guide"}
    inner = stream_module.ModelStream._advance

    def counted(self: stream_module.ModelStream, targets: dict[int, list[int]], *args, **kwargs):  # type: ignore[no-untyped-def]
        name = names.get(id(self.model), "?")
        passes[name] += 1
        rows[name] += len(targets)
        return inner(self, targets, *args, **kwargs)

    stream_module.ModelStream._advance = counted  # type: ignore[method-assign]
    # NUDGING's words by their length in guide tokens: a word of k tokens holds its row
    # for k engine steps on the one-pass schedule (methods/nudging_words.py).
    word_tokens: Counter[int] = Counter()
    inner_word = words_module.extend_word

    def measured(vocab, toks, token, left):  # type: ignore[no-untyped-def]
        word, plans = inner_word(vocab, toks, token, left)
        if word is not None:
            word_tokens[len(word.ids) if word.ids else len(toks) + 1] += 1
        return word, plans

    words_module.extend_word = measured  # type: ignore[assignment]
    engine_steps = [0]
    inner_step = Engine._step

    def step(self: Engine, rows_: list) -> None:  # type: ignore[type-arg]
        engine_steps[0] += 1
        inner_step(self, rows_)

    Engine._step = step  # type: ignore[method-assign]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        results = Engine(pair, settings).run(reqs)
        seconds = time.perf_counter() - start
    stream_module.ModelStream._advance = inner  # type: ignore[method-assign]
    words_module.extend_word = inner_word  # type: ignore[assignment]
    Engine._step = inner_step  # type: ignore[method-assign]
    steps = sum(r.positions for r in results)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print(f"{args.method}, batch {args.batch}: {steps} base positions in {seconds:.2f} s")
    batch_steps = max(len(r.steps) for r in results)
    print(f"engine steps: {engine_steps[0]} for {batch_steps} positions a row")
    for name in ("base", "guide"):
        if passes[name]:
            print(
                f"{name}: {passes[name]} passes ({passes[name] / batch_steps:.2f} per step of "
                f"the batch), {rows[name] / passes[name]:.1f} rows a pass"
            )
    if word_tokens:
        words = sum(word_tokens.values())
        held = sum((k - 1) * n for k, n in word_tokens.items())
        print(
            f"guide words: {words}, by guide tokens {dict(sorted(word_tokens.items()))}; "
            f"steps a row spends on words past their first token: {held} "
            f"({held / len(results):.1f} a row)"
        )
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
