"""How many responses two run directories wrote differently, on the samples both decoded.

For each (task, sample, method) with a generation record in both runs, compares the
response texts and prints the counts per task and where the first few differences
start. Used to say how many texts a decoding change altered.

    python scripts/compare_texts.py RUN_BEFORE RUN_AFTER [--show 5]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from pairscope.runs import iter_generations


def texts(run: Path) -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for record in iter_generations(run):
        out[(str(record["task"]), str(record["sample_id"]), str(record["method"]))] = str(
            record["text"]
        )
    return out


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--show", type=int, default=5, help="differences to print")
    args = parser.parse_args(argv)
    a, b = texts(args.before), texts(args.after)
    common = sorted(k for k in a if k in b)
    changed = [k for k in common if a[k] != b[k]]
    both: Counter[str] = Counter(k[0] for k in common)
    diff: Counter[str] = Counter(k[0] for k in changed)
    for task in sorted(both):
        print(f"{task}: {diff[task]} of {both[task]} responses differ")
    shown: list[Any] = changed[: args.show]
    for task, sample, method in shown:
        x, y = a[(task, sample, method)], b[(task, sample, method)]
        i = first_difference(x, y)
        print(f"  {task} {sample} {method} @ {i}: {x[max(0, i - 25) : i + 25]!r}")
        pad = " " * (len(task) + len(sample) + len(method) + 6)
        print(f"  {pad}-> {y[max(0, i - 25) : i + 25]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
