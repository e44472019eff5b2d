"""What the canonical tokenization policy costs `base`, against the own policy.

Decodes the same GSM8K probe prompts with ``base`` under both policies, round-robin
``--repeats`` times, and prints the median tokens/s of each, their ratio, and the
time spent re-encoding contexts (``ModelView.targets``, the only work canonical adds:
both policies feed the model the same ids on these prompts, which the script
checks), as a share of the run. Whole-run rates on a shared 2-core CPU move by
about 10 % from run to run; the re-encoding share is the steadier figure.

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
from pairscope.decoding.engine import DecodeSettings, Engine, Request
from pairscope.models import load_pair


class TargetsTimer:
    """Adds up the wall time of every ``ModelView.targets`` call while active."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original = ModelView.targets

    def __enter__(self) -> TargetsTimer:
        original, timer = self._original, self

        def timed(view: ModelView, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(view, *args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - start

        ModelView.targets = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        ModelView.targets = self._original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", default=os.environ.get("PAIRSCOPE_DATA_DIR"))
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()

    pair = load_pair()
    reqs = [
        Request(r.base_prompt, r.guide_user, (), args.new_tokens)
        for r in prompts(args.data_dir, args.batch)
    ]
    runs: dict[str, list[dict[str, float]]] = {"canonical": [], "own": []}
    texts: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for policy in runs:
            settings = DecodeSettings("base", batch_size=args.batch, tokenization=policy)
            with TargetsTimer() as timer:
                start = time.perf_counter()
                out = Engine(pair, settings).run(reqs)
                seconds = time.perf_counter() - start
            texts[policy] = [r.text for r in out]
            tokens = sum(r.positions for r in out)
            runs[policy].append(
                {"tok_s": tokens / seconds, "targets_share": timer.seconds / seconds}
            )
            if not args.json:
                print(
                    f"{policy:<10} {tokens / seconds:6.1f} tok/s  "
                    f"re-encoding {100 * timer.seconds / seconds:5.2f} % of {seconds:.1f} s",
                    flush=True,
                )
    rate = {p: statistics.median(r["tok_s"] for r in rs) for p, rs in runs.items()}
    share = {p: statistics.median(r["targets_share"] for r in rs) for p, rs in runs.items()}
    result = {
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "median_tok_s": {p: round(v, 2) for p, v in rate.items()},
        "canonical_vs_own": round(rate["canonical"] / rate["own"], 3),
        "median_reencoding_share": {p: round(v, 4) for p, v in share.items()},
        "same_texts": texts["canonical"] == texts["own"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"\nmedian of {args.repeats}: canonical {rate['canonical']:.1f}, own {rate['own']:.1f} "
            f"tok/s, ratio {result['canonical_vs_own']:.3f}; re-encoding "
            f"{100 * share['canonical']:.2f} % of a canonical run "
            f"(own {100 * share['own']:.2f} %); same texts: {result['same_texts']}"
        )


if __name__ == "__main__":
    main()
