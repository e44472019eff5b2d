"""What the canonical tokenization policy costs `base`, against the own policy.

Decodes the same GSM8K probe prompts with ``base`` under both policies, round-robin
``--repeats`` times, and prints the median tokens/s of each, their ratio, and the
time spent re-encoding contexts (``ModelView.targets``), as a share of the run. That
is the only work canonical adds when both policies feed the model the same ids,
which the script counts (``fed``: ids the model computed, over all forward calls).
Whole-run rates on a shared 2-core CPU drift by tens of percent over minutes, so
the ratio is the median of the back-to-back pairs; the re-encoding share and the
fed-id counts are the steadier figures.

    python bench/tokenization.py [--batch 16] [--new-tokens 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

from decode import prompts

from pairscope.decoding.contexts import ModelView
from pairscope.decoding.engine import DecodeSettings, Engine
from pairscope.models import load_pair
from pairscope.runtime.stream import ModelStream, common_prefix


class Instruments:
    """While active: the wall time of every ``ModelView.targets`` call, and the ids
    every ``ModelStream.forward`` call computes (beyond each row's common prefix)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.fed = 0
        self._targets = ModelView.targets
        self._forward = ModelStream.forward

    def __enter__(self) -> Instruments:
        targets, forward, inst = self._targets, self._forward, self

        def timed(view: ModelView, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return targets(view, *args, **kwargs)
            finally:
                inst.seconds += time.perf_counter() - start

        def counted(stream: ModelStream, want: dict[int, list[int]]) -> Any:
            for r, ids in want.items():
                keep = min(common_prefix(stream.rows[r].ids, ids), len(ids) - 1)
                inst.fed += len(ids) - keep
            return forward(stream, want)

        ModelView.targets = timed  # type: ignore[method-assign]
        ModelStream.forward = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        ModelView.targets = self._targets  # type: ignore[method-assign]
        ModelStream.forward = self._forward  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", default=os.environ.get("PAIRSCOPE_DATA_DIR"))
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()

    pair = load_pair()
    reqs = prompts(args.data_dir, args.batch, args.new_tokens)
    runs: dict[str, list[dict[str, float]]] = {"canonical": [], "own": []}
    texts: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for policy in runs:
            settings = DecodeSettings("base", batch_size=args.batch, tokenization=policy)
            with Instruments() as inst:
                start = time.perf_counter()
                out = Engine(pair, settings).run(reqs)
                seconds = time.perf_counter() - start
            texts[policy] = [r.text for r in out]
            tokens = sum(r.positions for r in out)
            runs[policy].append(
                {
                    "tok_s": tokens / seconds,
                    "targets_share": inst.seconds / seconds,
                    "fed": inst.fed,
                }
            )
            if not args.json:
                print(
                    f"{policy:<10} {tokens / seconds:6.1f} tok/s  "
                    f"re-encoding {100 * inst.seconds / seconds:5.2f} % of {seconds:.1f} s, "
                    f"{inst.fed} ids fed",
                    flush=True,
                )
    rate = {p: statistics.median(r["tok_s"] for r in rs) for p, rs in runs.items()}
    share = {p: statistics.median(r["targets_share"] for r in rs) for p, rs in runs.items()}
    paired = [c["tok_s"] / o["tok_s"] for c, o in zip(runs["canonical"], runs["own"])]
    result = {
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "median_tok_s": {p: round(v, 2) for p, v in rate.items()},
        "canonical_vs_own": round(statistics.median(paired), 3),
        "paired_ratios": [round(x, 3) for x in paired],
        "fed_ids": {p: sorted({r["fed"] for r in rs}) for p, rs in runs.items()},
        "median_reencoding_share": {p: round(v, 4) for p, v in share.items()},
        "same_texts": texts["canonical"] == texts["own"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"\nmedian of {args.repeats}: canonical {rate['canonical']:.1f}, own {rate['own']:.1f} "
            f"tok/s; canonical / own, median of the back-to-back pairs "
            f"{result['canonical_vs_own']:.3f} (pairs {min(paired):.3f} to {max(paired):.3f}); "
            f"re-encoding {100 * share['canonical']:.2f} % of a canonical run "
            f"(own {100 * share['own']:.2f} %); ids fed: canonical "
            f"{result['fed_ids']['canonical']}, own {result['fed_ids']['own']}; "
            f"same texts: {result['same_texts']}"
        )


if __name__ == "__main__":
    main()
