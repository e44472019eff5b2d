"""Operating characteristics of the anytime-valid IR gate (pairscope/metrics/sequential.py).

The simulation itself is ``pairscope/metrics/operating.py``.

For synthetic pools of per-sample ``(u, d)`` whose pooled IR is set exactly (lengths
20-256 like real responses, 30 % cut at ``max_new_tokens``), many streams resample the
pool and are checked after every sample up to the budget. Each scenario runs for both
kinds of intervention rate: an uncertain rate (BlendIn's, ``u <= d``) and NUDGING's
rounds / base-written tokens (``u <= d + 1`` and ``u + d <= max_new_tokens``, which
lets the PASS side bet about twice as much). Printed per scenario: the
share of streams declared FAIL and PASS (Wilson 95 % intervals), the samples to a
decision (median and quartiles; undecided streams count as budget + 1), the share still
undecided, and a floor for the median that no valid test of this kind can beat
(the best constant bet, chosen knowing the pool). Then the same streams again, each
stopped for futility as the probe stops it: the decisions that costs, the share
stopped undecided, and the mean samples decoded without and with it.
``--json`` prints one JSON object.

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

from pairscope.metrics.operating import (
    best_constant_bet_samples,
    simulate,
    synthetic_pool,
)
from pairscope.metrics.sequential import DEFAULT_ALPHA, FAIL, FUTILITY_STREAMS, PASS, Support
from pairscope.metrics.stats import wilson

D_MAX = 256


def pool_row(
    name: str,
    u: np.ndarray,
    d: np.ndarray,
    theta: float,
    support: Support,
    *,
    streams: int,
    budget: int,
    seed: int,
    futility_streams: int,
) -> dict[str, Any]:
    """Simulate the test on one pool of per-sample ``(u, d)`` and summarise it."""
    sim = simulate(u, d, theta, support, streams=streams, budget=budget, seed=seed)
    early = simulate(
        u, d, theta, support, streams=streams, budget=budget, seed=seed, futility=True,
        futility_streams=futility_streams,
    )  # fmt: skip
    row: dict[str, Any] = {"scenario": name, "true_ir": sim.true_ir, "mean_d": float(d.mean())}
    assert sim.spent is not None and early.spent is not None and early.futile is not None
    row["futility"] = {
        "decided": float(np.mean(early.decision != 0)),
        "lost": float(np.mean((sim.decision != 0) & (early.decision == 0))),
        "stopped": float(early.futile.mean()),
        "mean_samples": float(early.spent.mean()),
        "mean_samples_without": float(sim.spent.mean()),
    }
    for label, code in (("fail", FAIL), ("pass", PASS)):
        count, share = sim.rate(code)
        row[label] = {"share": share, "wilson": list(wilson(count, streams))}
    q1, median, q3 = np.percentile(sim.decided_at, [25, 50, 75])
    exact = abs(sim.true_ir - theta) < 1e-12
    row |= {
        "d_max": support.d_max,
        "support": "rounds" if support.disjoint else "uncertain",
        "median_samples": float(median),
        "quartiles": [float(q1), float(q3)],
        "undecided": float(np.mean(sim.decided_at > budget)),
        "floor": None
        if exact
        else best_constant_bet_samples(u, d, theta, support, alpha_side=DEFAULT_ALPHA / 2),
    }
    return row


def scenario(
    name: str,
    target: float,
    theta: float,
    streams: int,
    budget: int,
    seed: int,
    futility_streams: int,
    rounds: bool = False,
    **pool: Any,
) -> dict[str, Any]:
    """One synthetic pool: an uncertain rate's counts, or NUDGING's (``rounds``)."""
    u, d = synthetic_pool(target, rounds=rounds, d_max=D_MAX, seed=seed, **pool)
    support = Support(D_MAX, slack=1, disjoint=True) if rounds else Support(D_MAX)
    return pool_row(
        name, u, d, theta, support, streams=streams, budget=budget, seed=seed + 1,
        futility_streams=futility_streams,
    )  # fmt: skip


def run_pools(
    run_dir: str, streams: int, budget: int, seed: int, futility_streams: int
) -> list[dict[str, Any]]:
    """One row per task of a run: its own samples as the pool."""
    from pairscope.pipeline.runs import read_summary
    from pairscope.summary import ir_support

    summary = read_summary(Path(run_dir))
    rows = []
    for i, (task, info) in enumerate(summary.tasks.items()):
        method = info.methods[info.gate_method]
        counts = np.array(method.ir_counts, dtype=int).reshape(-1, 2)
        u, d = counts[:, 0], counts[:, 1]
        support = ir_support(counts.tolist(), summary.settings.max_new[task], method.ir_definition)
        theta = info.threshold
        name = f"{task} ({u.size} samples, IR {u.sum() / d.sum():.3f}, θ {theta:g})"
        rows.append(
            pool_row(
                name,
                u,
                d,
                theta,
                support,
                streams=streams,
                budget=budget,
                seed=seed + i,
                futility_streams=futility_streams,
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
    parser.add_argument(
        "--futility-streams",
        type=int,
        default=500,
        help=f"Continuations behind each futility check (default %(default)s; the probe "
        f"uses {FUTILITY_STREAMS}).",
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()
    theta, started = args.theta, time.perf_counter()
    if args.run:
        rows = run_pools(args.run, args.streams, args.budget, args.seed, args.futility_streams)
        _print(rows, args, time.perf_counter() - started, f"pools from {args.run}")
        return
    plans: list[tuple[str, float, dict[str, Any]]] = []
    for kind, rounds in (("uncertain rate", False), ("NUDGING rounds", True)):
        shifts = [(f"IR = θ − {delta:g}", -delta) for delta in (0.1, 0.05)]
        shifts += [("IR = θ", 0.0)] + [(f"IR = θ + {delta:g}", delta) for delta in (0.05, 0.1)]
        plans += [(f"{kind}, {name}", theta + shift, {"rounds": rounds}) for name, shift in shifts]
    plans.append(("uncertain rate, IR = θ − 0.1, 80 % at the cap", theta - 0.1, {"at_cap": 0.8}))
    rows = [
        scenario(
            name,
            target,
            theta,
            args.streams,
            args.budget,
            args.seed + 10 * i,
            args.futility_streams,
            **pool,
        )  # fmt: skip
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
    header = f"{'scenario':50} {'FAIL declared':>22} {'PASS declared':>22} {'median [IQR]':>14}"
    print(header + f" {'undecided':>9} {'floor':>6}  futility: {'lost':>5} {'stopped':>7} samples")
    for r in rows:
        cells = []
        for label in ("fail", "pass"):
            low, high = r[label]["wilson"]
            cells.append(f"{r[label]['share']:.4f} [{low:.4f}, {high:.4f}]")
        q1, q3 = r["quartiles"]
        spread = f"{r['median_samples']:.0f} [{q1:.0f}, {q3:.0f}]"
        floor = "-" if r["floor"] is None else f"{r['floor']:.0f}"
        f = r["futility"]
        saved = f"{f['mean_samples_without']:.1f} -> {f['mean_samples']:.1f}"
        print(
            f"{r['scenario']:50} {cells[0]:>22} {cells[1]:>22} {spread:>14} "
            f"{r['undecided']:>9.4f} {floor:>6}            {f['lost']:>5.3f} {f['stopped']:>7.3f} "
            f"{saved}"
        )
    print(
        "futility: the same streams stopped for futility (checked after 30 samples, then every 16, "
        "as a probe of batch 16 checks them): "
        "'lost', decisions they forfeit; 'stopped', the share stopped undecided; "
        "'samples', mean samples decoded without -> with"
    )
    print(f"({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
