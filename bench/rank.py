"""What racing saves: `pairscope rank` against probing every pair at the fixed budget.

Both designs run here, one after the other, on the same base, guides, tasks, budget
and seed, each as its own command (so each pays its own model loading, as a user's
would):

- **rank**: ``pairscope rank --limit N`` (pre-flight checks, then the race);
- **fixed**: ``pairscope probe --fixed --no-calibration --limit N`` for every guide, the
  design that decodes the whole budget of every pair (under the protocol rank's cells
  use, so both designs decode the same way).

Printed: the samples each design decoded (generations on disk) and its wall time,
and the ratios rank / fixed. ``--json`` prints one JSON object. By default the base
is the embedded Gemma and the guides are the two embedded guides (SmolLM2 and
Qwen2.5-Coder, optional extra ``qwen``).

    python bench/rank.py --limit 100 --data-dir DIR

On a CPU the embedded pair takes long at the default budget; ``--limit``, ``--tasks`` and
``--max-new-tokens`` make it smaller, and ``--base``/``--guides`` take any models.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pairscope.defaults import TAU
from pairscope.pipeline.runs import iter_generations
from pairscope.rank.core import CELL_PROTOCOL


def _run(args: list[str]) -> tuple[int, float]:
    """Run one pairscope command; its exit code and wall time."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pairscope", *args], capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1, 4):
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-4000:])
        raise SystemExit(f"pairscope {args[0]} failed with exit {done.returncode}")
    return done.returncode, seconds


def _generations(root: Path) -> int:
    return sum(sum(1 for _ in iter_generations(cfg.parent)) for cfg in root.rglob("config.json"))


def bench(opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    common = ["--tasks", opts.tasks, "--limit", str(opts.limit), "--tau", str(opts.tau)]
    common += ["--data-dir", opts.data_dir] if opts.data_dir else []
    common += ["--max-new-tokens", str(opts.max_new_tokens)] if opts.max_new_tokens else []
    rank_args = ["rank", "--base", opts.base, "--guides", opts.guides]
    rank_args += [
        "--race-batch",
        str(opts.race_batch),
        "--epsilon",
        str(opts.epsilon),
        "--method",
        opts.method,
        "--out",
        str(out / "rank"),
    ]
    code, rank_seconds = _run(rank_args + common)
    ranked = json.loads((out / "rank" / "rank.json").read_text())
    fixed_seconds = 0.0
    for i, guide in enumerate(opts.guides.split(",")):
        probe = ["probe", "--base", opts.base, "--guide", guide, "--fixed", "--no-calibration"]
        probe += ["--method", opts.method, "--out", str(out / "fixed" / f"guide-{i}")]
        probe += ["--protocol", CELL_PROTOCOL]  # the protocol rank's cells decode with
        fixed_seconds += _run(probe + common)[1]
    fixed_samples = _generations(out / "fixed")
    rank_samples = int(ranked["samples_decoded"])
    return {
        "settings": {k: v for k, v in vars(opts).items() if k not in ("json", "out")},
        "rank": {
            "samples": rank_samples,
            "seconds": round(rank_seconds, 2),
            "exit": code,
            "races": [
                {"task": r["task"], "status": r["status"], "n": r["n"], "winners": r["winners"]}
                for r in ranked["races"]
            ],
        },
        "fixed": {"samples": fixed_samples, "seconds": round(fixed_seconds, 2)},
        "ratios": {
            "samples": round(rank_samples / fixed_samples, 4) if fixed_samples else None,
            "seconds": round(rank_seconds / fixed_seconds, 4) if fixed_seconds else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="embedded:gemma-3-270m")
    parser.add_argument(
        "--guides", default="embedded:smollm2-135m-instruct,embedded:qwen2.5-coder-0.5b-instruct"
    )
    parser.add_argument("--tasks", default="gsm8k,truthfulqa,xstest")
    parser.add_argument("--method", default="nudging")
    parser.add_argument("-n", "--limit", type=int, default=100)
    parser.add_argument("--race-batch", type=int, default=10)
    parser.add_argument("--epsilon", type=float, default=0.02)
    parser.add_argument("--tau", type=float, default=TAU)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="Keep the runs here (default: a temp dir).")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = bench(opts, Path(opts.out or tmp))
    if opts.json:
        print(json.dumps(result, indent=2))
        return
    r, f, ratio = result["rank"], result["fixed"], result["ratios"]
    print(f"rank : {r['samples']:6d} samples  {r['seconds']:9.1f} s  (exit {r['exit']})")
    print(f"fixed: {f['samples']:6d} samples  {f['seconds']:9.1f} s")
    print(f"rank / fixed: samples {ratio['samples']}, wall time {ratio['seconds']}")
    for race in r["races"]:
        print(f"  {race['task']}: {race['status']} after {race['n']} samples {race['winners']}")


if __name__ == "__main__":
    main()
