"""Where a guided run's time goes beyond its floor: wall time per part of the loop, for a
method and for ``floor_both_norm`` (bench/decode.py), side by side in one process.

    python bench/parts.py [--stand-in] [--method blendin] [--batch 16] [--repeats 2]

Each part is timed by wrapping the function that does it (no profiler, so Python costs
are not inflated): each model's forward passes (``ModelStream._advance``), the top-1
with the base's normaliser, the re-tokenisation of contexts (``ModelView.targets``; tag 0
is the base's), the top-k lists (``TopLists``, ``Scores.top_lists``, ``Scores.ranked``)
and the uncertain rows' log-probabilities (for the guide, with its normaliser of those
rows). What the parts leave of the method's wall time is the decisions' Python. Both
runs are warm (one run of each first), and the figures are the medians over the repeats.
The counts are of the last repeat: each model's forward passes and the positions decoded
(NUDGING writes a guide word of several tokens at one position).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from decode import floor_ids, prompts  # bench/ is the script's own directory
from standin import pair_arguments, use_stand_ins

from pairscope.decoding.contexts import ModelView
from pairscope.decoding.engine import DecodeSettings, Engine
from pairscope.models import load_pair
from pairscope.runtime import scores as scores_module
from pairscope.runtime import stream as stream_module

Spent = dict[str, float]


_DEPTH = [0]  # timed calls now running: a timed call inside another is not counted again


def timed(
    owner: Any, name: str, label: Callable[..., str], spent: Spent, calls: Spent | None = None
) -> None:
    """Wrap ``owner.name`` so each call adds its wall time to ``spent[label(*args)]`` (and
    one to ``calls[label(*args)]``)."""
    inner = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _DEPTH[0]:
            return inner(*args, **kwargs)
        _DEPTH[0] += 1
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            _DEPTH[0] -= 1
            key = label(*args)
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - start
            if calls is not None:
                calls[key] = calls.get(key, 0) + 1

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pair_arguments(parser)
    parser.add_argument("--method", default="blendin")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()
    scratch = use_stand_ins(args)
    pair = load_pair(args.base, args.guide)
    reqs = prompts(args.data_dir, args.batch, args.new_tokens)
    settings = DecodeSettings(method=args.method, batch_size=args.batch)

    def method() -> int:  # positions decoded
        return sum(r.positions for r in Engine(pair, settings).run(reqs))

    def floor() -> int:
        return sum(map(len, floor_ids(pair, reqs, args.new_tokens, guide=True, normalise=True)))

    spent: Spent = {}
    calls: Spent = {}  # forward passes per model
    model_of = {id(pair.base.model): "base", id(pair.guide.model): "guide"}
    stream = stream_module.ModelStream
    # A part called inside another counts once (the outer one), so the parts add up.
    timed(stream, "_advance", lambda s, *a: f"{model_of[id(s.model)]} passes", spent, calls)
    timed(scores_module.Scores, "top1", lambda *a: "top-1 and the base's normaliser", spent)
    timed(ModelView, "targets", lambda v, *a: f"re-tokenisation, tag {v.tag}", spent)
    for owner, name in (
        (scores_module.TopLists, "__init__"),
        (scores_module.TopLists, "rank"),
        (scores_module.TopLists, "read"),
        (scores_module.Scores, "top_lists"),
        (scores_module.Scores, "ranked"),
    ):
        timed(owner, name, lambda *a: "top-k lists", spent)
    rows_label = "rows' log-probabilities (guide: normaliser)"
    timed(scores_module.Scores, "logprobs", lambda *a: rows_label, spent)
    for run in (method, floor):
        run()  # warm: memos, kept buffers, allocator
    walls: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, dict[str, float]] = {}
    parts: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _ in range(args.repeats):
        for name, run in ((args.method, method), ("floor_both_norm", floor)):
            spent.clear()
            calls.clear()
            start = time.perf_counter()
            positions = run()
            walls[name].append(time.perf_counter() - start)
            counts[name] = {**calls, "positions": positions}
            for key, value in spent.items():
                parts[name][key].append(value)
    names = (args.method, "floor_both_norm")
    median = {n: {k: statistics.median(v) for k, v in parts[n].items()} for n in names}
    wall = {n: statistics.median(walls[n]) for n in names}
    rest = wall[names[0]] - sum(median[names[0]].values())
    if args.json:
        out = {"parts": median, "wall": wall, "rest": rest, "counts": counts}
        print(json.dumps(out, indent=2))
    else:
        print(f"{'seconds, median of ' + str(args.repeats):<44} {names[0]:>10} {names[1]:>16}")
        for key in sorted({k for n in names for k in median[n]}):
            cells = [median[n].get(key, 0.0) for n in names]
            print(f"{key:<44} {cells[0]:>10.3f} {cells[1]:>16.3f}")
        print(f"{'the rest (decisions, appends: Python)':<44} {rest:>10.3f}")
        print(f"{'wall':<44} {wall[names[0]]:>10.3f} {wall[names[1]]:>16.3f}")
        for key in sorted({k for n in names for k in counts[n]}):
            cells = [counts[n].get(key, 0) for n in names]
            print(f"{key + ' (count, one run)':<44} {cells[0]:>10.0f} {cells[1]:>16.0f}")
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
