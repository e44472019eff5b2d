"""What racing saves: `pairscope rank` against probing every pair at the fixed budget.

Both designs run here, one after the other, on the same base, guides, tasks, budget
and seed, each as its own command (so each pays its own model loading, as a user's
would):

- **rank**: ``pairscope rank --limit N`` (pre-flight checks, then the race);
- **fixed**: ``pairscope probe --fixed --no-calibration --limit N`` for every guide, the
  design that decodes the whole budget of every pair (under the protocol rank's cells
  use, so both designs decode the same way).

Printed: the samples each design decoded (generations on disk) and its wall time,
and the ratios rank / fixed. ``--json`` prints one JSON object.

``--shared`` also measures the work the guides of one base share or could share:

- **the base-only arm** (``rank --base-arm``, run again on the same directory: every
  cell resumes, only the arm decodes): decoded once per base and task, on the longest
  prefix any guide used, instead of once per guide on that guide's own samples. Printed:
  the arm's samples and decode seconds, and the samples (and, at the arm's measured
  seconds per sample, the seconds) a per-guide arm would have decoded on top;
- **the base's prompt prefill**, which rank does not share (each guide's cell prefills
  the base's prompts itself): timed here as a cell computes it, in batches of
  ``--race-batch`` (the prefix every prompt shares once, each row from a copy of it),
  and what sharing it across a race's guides would save: the prefix for every guide but
  one, and the rows of every sample a second or later guide decoded. By default the base
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


def _args(opts: argparse.Namespace, rank_dir: Path) -> tuple[list[str], list[str]]:
    """The rank command's own arguments and those every design shares."""
    common = ["--tasks", opts.tasks, "--limit", str(opts.limit), "--tau", str(opts.tau)]
    common += ["--data-dir", opts.data_dir] if opts.data_dir else []
    common += ["--max-new-tokens", str(opts.max_new_tokens)] if opts.max_new_tokens else []
    rank_args = ["rank", "--base", opts.base, "--guides", opts.guides]
    rank_args += ["--race-batch", str(opts.race_batch), "--epsilon", str(opts.epsilon)]
    rank_args += ["--method", opts.method, "--out", str(rank_dir)]
    return rank_args, common


def bench(opts: argparse.Namespace, out: Path) -> dict[str, Any]:
    rank_args, common = _args(opts, out / "rank")
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
    result = {
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
    if opts.shared:
        result["shared"] = shared(opts, out / "rank")
    return result


def shared(opts: argparse.Namespace, rank_dir: Path) -> dict[str, Any]:
    """The base arm and the base's prefill, measured on a finished rank in ``rank_dir``."""
    rank_args, common = _args(opts, rank_dir)
    ranked = json.loads((rank_dir / "rank.json").read_text())
    return {"base_arm": base_arm(rank_dir, rank_args + common), "prefill": prefill(opts, ranked)}


def base_arm(rank_dir: Path, rank_args: list[str]) -> dict[str, Any]:
    """Run the rank again with ``--base-arm`` (only the arm decodes); what sharing it saves."""
    from pairscope.rank.cells import cell_path, cell_records
    from pairscope.rank.core import BASE_ALONE

    code, seconds = _run([*rank_args, "--base-arm"])
    ranked = json.loads((rank_dir / "rank.json").read_text())
    shared = per_guide = 0
    decode = 0.0
    for race in ranked["races"]:
        path = cell_path(rank_dir, race["base"], BASE_ALONE, race["task"], "base")
        records = cell_records(path, race["task"], "base")
        shared += len(records)
        decode += sum(r.seconds for r in records.values())
        per_guide += sum(g["n"] for g in race["guides"])
    each = decode / shared if shared else 0.0
    return {
        "wall_seconds": round(seconds, 2),
        "exit": code,
        "samples": shared,
        "decode_seconds": round(decode, 2),
        "per_guide_samples": per_guide,
        "saved_samples": per_guide - shared,
        "saved_seconds": round((per_guide - shared) * each, 2),
    }


def prefill(opts: argparse.Namespace, ranked: dict[str, Any]) -> dict[str, Any]:
    """The base's prompt prefill on every race's samples, computed as a cell's decoding
    computes it (the prompts' shared prefix once, then each row from a copy of it), and
    what sharing it across the guides of a race would save."""
    from pairscope.models import load_model
    from pairscope.rank.cells import plan_task
    from pairscope.runtime.stream import MIN_SHARED_PREFIX, shared_prefix

    model = load_model(opts.base)
    tasks = {}
    saved = 0.0
    for race in ranked["races"]:
        n = [g["n"] for g in race["guides"] if g["n"] > 0]
        if not n:
            continue
        plan = plan_task(race["task"], opts.data_dir, None, max(n), None, opts.max_new_tokens)
        prompts = [model.encode_completion_prompt(s.base_prompt) for s in plan.order]
        prefix = shared_prefix(prompts) if len(prompts) > 1 else []
        started = time.perf_counter()
        one = model.new_stream(1)
        if not one.can_fork or len(prefix) < MIN_SHARED_PREFIX:
            one, prefix = None, []
        else:
            one.forward({0: prefix})
        prefix_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(0, len(prompts), opts.race_batch):
            chunk = prompts[i : i + opts.race_batch]
            stream = one.fork(len(chunk)) if one is not None else model.new_stream(len(chunk))
            stream.forward(dict(enumerate(chunk)))
        each = (time.perf_counter() - started) / len(prompts)
        repeated = sum(n) - max(n)  # rows a shared prefill would have spared
        tasks[race["task"]] = {
            "samples": len(prompts),
            "prompt_tokens": round(sum(map(len, prompts)) / len(prompts), 1),
            "shared_prefix_tokens": len(prefix),
            "prefix_seconds": round(prefix_seconds, 4),
            "seconds_per_sample": round(each, 4),
            "repeated": repeated,
        }
        saved += repeated * each + (len(n) - 1) * prefix_seconds
    model.close()
    return {"tasks": tasks, "saved_seconds": round(saved, 2)}


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
    parser.add_argument(
        "--shared", action="store_true", help="Also measure the base arm and the base's prefill."
    )
    parser.add_argument(
        "--rank-dir",
        default=None,
        help="Only measure the shared work, on this finished rank's directory (run with the "
        "same models, tasks and budget as given here).",
    )
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    if opts.rank_dir:
        result = {"shared": shared(opts, Path(opts.rank_dir))}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = bench(opts, Path(opts.out or tmp))
    if opts.json:
        print(json.dumps(result, indent=2))
        return
    if "shared" in result:
        _print_shared(result["shared"])
    if "rank" not in result:
        return
    r, f, ratio = result["rank"], result["fixed"], result["ratios"]
    print(f"rank : {r['samples']:6d} samples  {r['seconds']:9.1f} s  (exit {r['exit']})")
    print(f"fixed: {f['samples']:6d} samples  {f['seconds']:9.1f} s")
    print(f"rank / fixed: samples {ratio['samples']}, wall time {ratio['seconds']}")
    for race in r["races"]:
        print(f"  {race['task']}: {race['status']} after {race['n']} samples {race['winners']}")


def _print_shared(shared: dict[str, Any]) -> None:
    arm, pre = shared["base_arm"], shared["prefill"]
    print(
        f"base arm, shared: {arm['samples']} samples, {arm['decode_seconds']:.1f} s decoding "
        f"(rerun {arm['wall_seconds']:.1f} s); one arm per guide: {arm['per_guide_samples']} "
        f"samples, {arm['saved_samples']} more (about {arm['saved_seconds']:.1f} s)"
    )
    for task, t in pre["tasks"].items():
        print(
            f"base prefill, {task}: shared prefix of {t['shared_prefix_tokens']} tokens "
            f"{t['prefix_seconds'] * 1000:.0f} ms, then {t['seconds_per_sample'] * 1000:.1f} ms "
            f"a sample, repeated for {t['repeated']} samples"
        )
    print(f"sharing the prefill across guides would save {pre['saved_seconds']:.1f} s")


if __name__ == "__main__":
    main()
