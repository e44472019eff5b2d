"""What giving a finished row's place to the next request saves, side by side in one
process (``DecodeSettings.refill``).

    python bench/refill.py [--stand-in] [--samples 48] [--batch 16] [--methods M,N] [--repeats 1]

A probe decodes its samples in batches; rows stop at different positions (a GSM8K
answer ends at its first blank line, NUDGING's rows also spend steps on guide words),
and a static batch runs until its slowest row ends, with fewer and fewer rows in each
pass. With refill a finished row's place goes to the next waiting request at once
(its prompt computed in a pass of its own, from the shared prefix's copy), so passes
stay full. This decodes the first ``--samples`` GSM8K probe samples as a probe does
(its stop strings; ``--new-tokens``, default the probe's budget), for each method
static and refilled (a short warm run first, then ``--repeats`` runs of each side,
alternating), and prints each side's fastest wall time, engine steps, mean rows a
step, tokens a second, the ratios, and whether every run's texts are the same.
"""

from __future__ import annotations

import argparse
import time

import torch
from standin import pair_arguments, use_stand_ins  # bench/ is the script's own directory

from pairscope.decoding.engine import DecodeSettings, Engine, Request
from pairscope.models import load_pair
from pairscope.probes import build_samples, load_dataset_records, load_probe, select


def probe_requests(data_dir: str | None, n: int, new_tokens: int | None) -> list[Request]:
    """The GSM8K probe's first ``n`` samples as the probe decodes them (its stop strings
    and, unless ``new_tokens`` is given, its budget of new tokens)."""
    spec = load_probe("gsm8k")
    samples = select(build_samples(spec, load_dataset_records(spec, data_dir)), n, 0)
    budget = new_tokens or spec.max_new_tokens
    return [Request(s.base_prompt, s.guide_user, tuple(spec.stop), budget) for s in samples]


def decode(pair, reqs: list[Request], method: str, batch: int, refill: bool) -> dict:  # type: ignore[no-untyped-def]
    engine = Engine(pair, DecodeSettings(method=method, batch_size=batch, refill=refill))
    counts = [0, 0]  # engine steps, rows over all steps
    step = engine._step

    def counted(rows: list) -> None:  # type: ignore[type-arg]
        counts[0] += 1
        counts[1] += len(rows)
        step(rows)

    engine._step = counted  # type: ignore[method-assign]
    start = time.perf_counter()
    results = engine.run(reqs)
    seconds = time.perf_counter() - start
    positions = sum(r.positions for r in results)
    return {
        "seconds": seconds,
        "steps": counts[0],
        "rows": counts[1] / max(counts[0], 1),
        "positions": positions,
        "texts": [r.text for r in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pair_arguments(parser)
    parser.set_defaults(new_tokens=None)
    parser.add_argument("--samples", type=int, default=48, help="GSM8K probe samples decoded.")
    parser.add_argument("--methods", default="nudging,blendin")
    parser.add_argument("--repeats", type=int, default=1, help="Timed runs of each side.")
    args = parser.parse_args()
    scratch = use_stand_ins(args)
    pair = load_pair(args.base, args.guide)
    reqs = probe_requests(args.data_dir, args.samples, args.new_tokens)
    print(
        f"{len(reqs)} GSM8K probe samples, batch {args.batch}, "
        f"{reqs[0].max_new_tokens} new tokens at most, stop strings {reqs[0].stop!r}"
    )
    for method in args.methods.split(","):
        decode(pair, reqs[:2], method, args.batch, True)  # warm
        runs: dict[str, list[dict]] = {"static": [], "refill": []}  # type: ignore[type-arg]
        for _ in range(args.repeats):  # the sides alternate
            for name, got in runs.items():
                got.append(decode(pair, reqs, method, args.batch, name == "refill"))
        sides = {name: min(got, key=lambda g: g["seconds"]) for name, got in runs.items()}
        for name, got in sides.items():
            print(
                f"{method:8} {name:7} {got['seconds']:8.2f} s  {got['steps']:5d} steps  "
                f"{got['rows']:5.1f} rows a step  {got['positions'] / got['seconds']:6.1f} tok/s"
            )
        static, refill = sides["static"], sides["refill"]
        same = all(g["texts"] == static["texts"] for got in runs.values() for g in got)
        print(
            f"{method:8} refill vs static: wall {refill['seconds'] / static['seconds']:.3f}, "
            f"steps {refill['steps'] / static['steps']:.3f}, texts identical: {same}"
        )
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
