"""What computing the output head only at the rows read saves a guide pass, side by side.

    python bench/head.py [--stand-in] [--batch 16] [--read 5] [--passes 40]

A guide pass brings every row of a batch up to date, but BlendIn and NUDGING read the
guide only at the rows that consult it (``ModelStream.scores(targets, read=...)``,
``runtime/stream.py``'s ``head_rows``). This builds the guide's stream over the batch's
GSM8K prompts, then appends one token a row per pass, alternating a pass that reads
every row with one that reads ``--read`` rows, and prints the median time of each and
their ratio (one process, interleaved, so both meet the same machine).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from decode import prompts  # bench/ is the script's own directory
from standin import pair_arguments, use_stand_ins

from pairscope.models import load_pair
from pairscope.runtime.stream import ModelStream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pair_arguments(parser)
    parser.add_argument("--read", type=int, default=5, help="Rows read in the narrow pass.")
    parser.add_argument("--passes", type=int, default=40, help="Passes of each kind.")
    args = parser.parse_args()
    scratch = use_stand_ins(args)
    guide = load_pair(args.base, args.guide).guide
    ids = [guide.encode_completion_prompt(r.guide_user) for r in prompts(args.data_dir, args.batch)]
    stream = ModelStream(guide.model, len(ids))
    stream.scores(dict(enumerate(ids)))  # the prompts' prefill
    every = list(range(len(ids)))
    some = every[:: max(1, len(ids) // args.read)][: args.read]
    times: dict[str, list[float]] = {"all rows": [], f"{len(some)} rows": []}
    token = guide.tokenizer.encode(" the", add_special_tokens=False)[-1]
    for n in range(2 * args.passes + 2):
        read, label = (every, "all rows") if n % 2 == 0 else (some, f"{len(some)} rows")
        for row in ids:
            row.append(token)
        start = time.perf_counter()
        scores = stream.scores(dict(enumerate(ids)), read=read)
        float(scores.logits[0, 0])  # the pass is done (a device would be synchronised)
        if n >= 2:  # the first pass of each kind warms up
            times[label].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    width = len(ids)
    for label, ms in medians.items():
        print(f"guide pass, {width} rows fed, logits of {label:<9} {ms:8.2f} ms (median)")
    all_ms, some_ms = medians.values()
    print(f"narrow / full: {some_ms / all_ms:.3f}")
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
