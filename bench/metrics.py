"""Wall time of the statistics a probe runs after decoding, and of `pairscope check`.

These used to be timed assertions inside the tests; a timed test fails on a busy
machine and says nothing on an idle one, so the figures are printed here instead.
Each figure is the median of ``--repeat`` runs in this process (``check`` runs as its
own process, as a user runs it, from the model cache).

    python bench/metrics.py [--repeat 5] [--no-check] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pairscope.metrics.calibration import calibration_summary
from pairscope.metrics.stats import bootstrap_ratio, paired_bootstrap_diff


def _median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def calibration_case() -> Callable[[], Any]:
    """100 samples of up to 200 token confidences, 1000 bootstrap resamples."""
    rng = np.random.default_rng(3)
    conf = [rng.beta(3, 1, size=rng.integers(0, 200)) for _ in range(100)]
    correct = [rng.random(c.size) < c**2 for c in conf]
    return lambda: calibration_summary(conf, correct, n_boot=1000)


def bootstrap_case() -> Callable[[], Any]:
    """A paired difference and a ratio of sums over 500 samples, 10 000 resamples each."""
    rng = np.random.default_rng(0)
    a = rng.random(500) < 0.6
    b = rng.random(500) < 0.5
    den = rng.integers(50, 300, size=500)
    num = rng.binomial(den, 0.2)

    def run() -> None:
        paired_bootstrap_diff(a, b, n_boot=10000)
        bootstrap_ratio(num, den, n_boot=10000)

    return run


def check_case() -> Callable[[], Any]:
    """`pairscope check --json` on the embedded pair, a whole process."""
    cmd = [sys.executable, "-m", "pairscope", "check", "--json"]
    return lambda: subprocess.run(cmd, capture_output=True, check=True, timeout=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-check", action="store_true", help="skip `pairscope check`")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cases = {
        "calibration_summary (100 samples, 1000 resamples)": calibration_case(),
        "paired + ratio bootstrap (500 samples, 10000 resamples)": bootstrap_case(),
    }
    if not args.no_check:
        cases["pairscope check --json (embedded pair, cached)"] = check_case()
    rows = {name: _median_seconds(fn, args.repeat) for name, fn in cases.items()}
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"seconds": rows, "load": load, "cpus": os.cpu_count()}))
    else:
        print(f"median of {args.repeat} runs; load {load:.1f} on {os.cpu_count()} cores")
        for name, seconds in rows.items():
            print(f"{seconds:8.3f} s  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
