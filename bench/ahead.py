"""What reading the guide's next id ahead saves NUDGING, side by side in one process.

    python bench/ahead.py [--stand-in] [--batch 16] [--new-tokens 64] [--repeats 3]

On the one-pass schedule (``methods/nudging_words.py``) a row the base writes for gets its
token before the step's guide pass, which then ends at the row's next position; the
guide's greedy id there is kept, and a round starting at that position starts from it,
a step sooner (``WordSteps._reads_ahead``). This decodes the batch's GSM8K prompts with
NUDGING, alternating runs with and without it after one warm run of each, and prints
the median wall time of each side, their ratio, each side's steps (per batch and per
row, summed; the fewest and most steps a row took; the tail: steps with fewer rows live
than the batch) and passes, and whether the texts are the same.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from typing import Any

import torch
from decode import prompts  # bench/ is the script's own directory
from standin import pair_arguments, use_stand_ins

from pairscope.decoding.engine import DecodeSettings, Engine
from pairscope.methods import nudging_words as words
from pairscope.methods.nudging import Nudging
from pairscope.models import load_pair


class ContextAlone(words.WordSteps):
    """The one-pass schedule in which a round starts from the row's context alone."""

    def _reads_ahead(self, row: Any) -> bool:
        return False


def stepper_of(stepper: type[words.WordSteps]) -> Any:
    """A ``Nudging.schedule`` that runs this one-pass schedule."""

    def schedule(self: Nudging, engine: Any) -> words.WordSteps:
        return stepper(engine, self)

    return schedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pair_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs of each side.")
    args = parser.parse_args()
    scratch = use_stand_ins(args)
    pair = load_pair(args.base, args.guide)
    reqs = prompts(args.data_dir, args.batch, args.new_tokens)
    settings = DecodeSettings(method="nudging", batch_size=args.batch)
    counts = [0, 0, 0]  # batch steps, row steps, steps with fewer rows than the batch
    per_row: Counter[int] = Counter()  # steps of each request
    inner = words.WordSteps.step

    def counted(self: words.WordSteps, rows: list) -> None:
        counts[0] += 1
        counts[1] += len(rows)
        counts[2] += len(rows) < min(args.batch, len(reqs))
        per_row.update(row.index for row in rows)
        inner(self, rows)

    words.WordSteps.step = counted  # type: ignore[method-assign]
    schedule = Nudging.schedule
    sides = {"read ahead": words.WordSteps, "context alone": ContextAlone}
    walls: dict[str, list[float]] = {name: [] for name in sides}
    seen: dict[str, tuple[list[str], list[int], int, int]] = {}
    for n in range(args.repeats + 1):
        for name, stepper in sides.items():
            Nudging.schedule = stepper_of(stepper)  # type: ignore[method-assign]
            counts[:] = [0, 0, 0]
            per_row.clear()
            engine = Engine(pair, settings)
            start = time.perf_counter()
            texts = [r.text for r in engine.run(reqs)]
            if n:  # the first run of each side warms up
                walls[name].append(time.perf_counter() - start)
            assert engine.guide is not None
            passes = (engine.driver.stream.passes, engine.guide.stream.passes)
            spread = [min(per_row.values()), max(per_row.values())]
            seen[name] = (texts, counts + spread, *passes)
    words.WordSteps.step = inner  # type: ignore[method-assign]
    Nudging.schedule = schedule  # type: ignore[method-assign]
    median = {name: statistics.median(v) for name, v in walls.items()}
    for name, (_, (steps, row_steps, tail, least, most), base, guide) in seen.items():
        print(
            f"{name:<14} {median[name]:8.3f} s (median of {args.repeats})  steps {steps:>4}  "
            f"row steps {row_steps:>5} (a row {least}-{most}, tail {tail})  "
            f"passes base {base:>4} guide {guide:>4}"
        )
    print(f"read ahead / context alone: {median['read ahead'] / median['context alone']:.3f}")
    print(f"same texts: {seen['read ahead'][0] == seen['context alone'][0]}")
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
