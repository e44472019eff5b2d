"""How many responses two run directories wrote differently, on the samples both decoded.

For each (task, sample, method) with a generation record in both runs, compares the
response texts and prints the counts per task and where the first few differences
start. Used to say how many texts a decoding change altered.

With ``--all`` it also compares every record of every kind (steps, calibration
confidences, arbitration picks, option probabilities) field by field, and the two
summaries number by number, leaving out only what a rerun cannot repeat: timings,
package versions, the creation time, the session records and local paths. Used to
say that a change left a run's results untouched.

    python scripts/compare_texts.py RUN_BEFORE RUN_AFTER [--show 5] [--all]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from pairscope.pipeline.runs import iter_generations, iter_records, read_summary
from pairscope.schema import SessionRecord, dump

# What a rerun of the same work cannot repeat.
UNREPEATABLE = {"seconds", "load_seconds", "decode_seconds", "total_seconds", "tokens_per_second"}


def texts(run: Path) -> dict[tuple[str, str, str], str]:
    return {(r.task, r.sample_id, r.method): r.text for r in iter_generations(run)}


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def repeatable(value: Any) -> Any:
    """``value`` without the fields a rerun cannot repeat (at any depth)."""
    if isinstance(value, dict):
        return {k: repeatable(v) for k, v in value.items() if k not in UNREPEATABLE}
    if isinstance(value, list):
        return [repeatable(v) for v in value]
    return value


def records(run: Path) -> dict[tuple[str, str, str, str], Any]:
    return {
        (r.kind, r.task, r.sample_id, r.method): repeatable(dump(r))
        for r in iter_records(run)
        if not isinstance(r, SessionRecord)
    }


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ, as dotted paths."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for k in sorted(set(a) | set(b))
            for d in differences(a.get(k), b.get(k), f"{path}.{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path or "."]


def summary_numbers(run: Path) -> dict[str, Any]:
    summary = repeatable(dump(read_summary(run)))
    summary.pop("versions")
    summary["settings"].pop("data_dir")
    for identity in (summary.get("pair") or {}).values():
        identity.pop("path", None)
    return summary


def compare_all(before: Path, after: Path, show: int) -> None:
    a, b = records(before), records(after)
    common = [k for k in a if k in b]
    kinds: Counter[str] = Counter(k[0] for k in common)
    same: Counter[str] = Counter(k[0] for k in common if a[k] == b[k])
    print(f"records: {len(a)} before, {len(b)} after, {len(common)} in both")
    for kind in sorted(kinds):
        print(f"  {kind}: {same[kind]} of {kinds[kind]} identical in every field but timing")
    for key in [k for k in common if a[k] != b[k]][:show]:
        print(f"  {' '.join(key)} differs at {differences(a[key], b[key])[:3]}")
    found = differences(summary_numbers(before), summary_numbers(after))
    print(f"summary: {len(found)} values differ (timing, versions and paths left out)")
    for where in found[:show]:
        print(f"  {where}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--show", type=int, default=5, help="differences to print")
    parser.add_argument("--all", action="store_true", help="every record field and the summary")
    args = parser.parse_args(argv)
    a, b = texts(args.before), texts(args.after)
    common = sorted(k for k in a if k in b)
    changed = [k for k in common if a[k] != b[k]]
    both: Counter[str] = Counter(k[0] for k in common)
    diff: Counter[str] = Counter(k[0] for k in changed)
    for task in sorted(both):
        print(f"{task}: {diff[task]} of {both[task]} responses differ")
    for task, sample, method in changed[: args.show]:
        x, y = a[(task, sample, method)], b[(task, sample, method)]
        i = first_difference(x, y)
        print(f"  {task} {sample} {method} @ {i}: {x[max(0, i - 25) : i + 25]!r}")
        pad = " " * (len(task) + len(sample) + len(method) + 6)
        print(f"  {pad}-> {y[max(0, i - 25) : i + 25]!r}")
    if args.all:
        compare_all(args.before, args.after, args.show)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
