"""Operating characteristics of the anytime-valid IR gate (pairscope/metrics/sequential.py).

For synthetic pools of per-sample ``(u, d)`` whose pooled IR is set exactly (lengths
20-256 like real responses, 30 % cut at ``max_new_tokens``), many streams resample the
pool and are checked after every sample up to the budget. Printed per scenario: the
share of streams declared FAIL and PASS (Wilson 95 % intervals), the samples to a
decision (median and quartiles; undecided streams count as budget + 1), the share still
undecided, and a floor for the median that no valid test of this kind can beat
(the best constant bet, chosen knowing the pool). ``--json`` prints one JSON object.

    python bench/sequential.py [--streams 2000] [--budget 100] [--theta 0.2] [--json]

With ``--run RUN_DIR`` (a probe run with ``--fixed``, so every sample was decoded) the
pools are that run's own samples instead: per task, the gate method's ``(u, d)``, its
threshold, ``max_new_tokens`` and IR bounds, so the table says how early the default
sequential probe stops on that pair, and how early any valid test of this kind could.

    python bench/sequential.py --run reports/demo-fixed
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pairscope.metrics.sequential import (
    DEFAULT_ALPHA,
    FAIL,
    PASS,
    best_constant_bet_samples,
    simulate,
    synthetic_pool,
)
from pairscope.metrics.stats import wilson

D_MAX = 256


def pool_row(
    name: str,
    u: np.ndarray,
    d: np.ndarray,
    theta: float,
    d_max: int,
    *,
    streams: int,
    budget: int,
    seed: int,
    slack: int = 0,
) -> dict[str, Any]:
    """Simulate the test on one pool of per-sample ``(u, d)`` and summarise it."""
    sim = simulate(u, d, theta, d_max, streams=streams, budget=budget, seed=seed,
                   numerator_slack=slack)  # fmt: skip
    row: dict[str, Any] = {"scenario": name, "true_ir": sim.true_ir, "mean_d": float(d.mean())}
    for label, code in (("fail", FAIL), ("pass", PASS)):
        count, share = sim.rate(code)
        row[label] = {"share": share, "wilson": list(wilson(count, streams))}
    q1, median, q3 = np.percentile(sim.decided_at, [25, 50, 75])
    exact = abs(sim.true_ir - theta) < 1e-12
    row |= {
        "d_max": d_max,
        "median_samples": float(median),
        "quartiles": [float(q1), float(q3)],
        "undecided": float(np.mean(sim.decided_at > budget)),
        "floor": None
        if exact
        else best_constant_bet_samples(
            u, d, theta, d_max, alpha_side=DEFAULT_ALPHA / 2, numerator_slack=slack
        ),
    }
    return row


def scenario(
    name: str, target: float, theta: float, streams: int, budget: int, seed: int, **pool: Any
) -> dict[str, Any]:
    u, d = synthetic_pool(target, d_max=D_MAX, seed=seed, **pool)
    return pool_row(name, u, d, theta, D_MAX, streams=streams, budget=budget, seed=seed + 1)


def run_pools(run_dir: str, streams: int, budget: int, seed: int) -> list[dict[str, Any]]:
    """One row per task of a run: its own samples as the pool."""
    from pairscope.decoding.types import IR_ROUNDS
    from pairscope.runs import read_summary

    summary = read_summary(Path(run_dir))
    rows = []
    for i, (task, info) in enumerate(summary.tasks.items()):
        method = info.methods[info.gate_method]
        counts = np.array(method.ir_counts, dtype=int).reshape(-1, 2)
        u, d = counts[:, 0], counts[:, 1]
        d_max = summary.settings.max_new_tokens[task]
        d_max = max(d_max, int(d.max()), int(u.max()))
        theta = info.threshold
        name = f"{task} ({u.size} samples, IR {u.sum() / d.sum():.3f}, θ {theta:g})"
        slack = 1 if method.ir_definition == IR_ROUNDS else 0
        rows.append(
            pool_row(
                name, u, d, theta, d_max, streams=streams, budget=budget, seed=seed + i, slack=slack
            )  # fmt: skip
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--theta", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", help="A --fixed probe run directory: use its samples.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()
    theta, started = args.theta, time.perf_counter()
    if args.run:
        rows = run_pools(args.run, args.streams, args.budget, args.seed)
        _print(rows, args, time.perf_counter() - started, f"pools from {args.run}")
        return
    plans: list[tuple[str, float, dict[str, Any]]] = [
        (f"IR = θ − {delta:g}", theta - delta, {}) for delta in (0.1, 0.05)
    ]
    plans.append(("IR = θ", theta, {}))
    plans += [(f"IR = θ + {delta:g}", theta + delta, {}) for delta in (0.05, 0.1)]
    plans.append(("IR = θ − 0.1, 80 % of responses at the cap", theta - 0.1, {"at_cap": 0.8}))
    rows = [
        scenario(name, target, theta, args.streams, args.budget, args.seed + 10 * i, **pool)
        for i, (name, target, pool) in enumerate(plans)
    ]
    _print(rows, args, time.perf_counter() - started, f"θ = {theta}, d_max = {D_MAX}")


def _print(rows: list[dict[str, Any]], args: argparse.Namespace, elapsed: float, what: str) -> None:
    if args.json:
        meta = {"theta": args.theta, "budget": args.budget, "streams": args.streams}
        meta |= {"run": args.run}
        print(json.dumps(meta | {"alpha": DEFAULT_ALPHA, "seconds": elapsed, "rows": rows}))
        return
    print(
        f"{what}; α = {DEFAULT_ALPHA} (half each side), budget {args.budget} samples, "
        f"{args.streams} resampled streams per row"
    )
    header = f"{'scenario':44} {'FAIL declared':>22} {'PASS declared':>22} {'median [IQR]':>14}"
    print(header + f" {'undecided':>9} {'floor':>6}")
    for r in rows:
        cells = []
        for label in ("fail", "pass"):
            low, high = r[label]["wilson"]
            cells.append(f"{r[label]['share']:.4f} [{low:.4f}, {high:.4f}]")
        q1, q3 = r["quartiles"]
        spread = f"{r['median_samples']:.0f} [{q1:.0f}, {q3:.0f}]"
        floor = "-" if r["floor"] is None else f"{r['floor']:.0f}"
        print(
            f"{r['scenario']:44} {cells[0]:>22} {cells[1]:>22} {spread:>14} "
            f"{r['undecided']:>9.4f} {floor:>6}"
        )
    print(f"({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
