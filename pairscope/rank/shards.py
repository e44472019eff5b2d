"""Sharding a rank across machines that share its directory, and merging the shards.

The unit of work a shard takes is a race (every cell of one base and one task): the
guides of a race go in lockstep, batch by batch, so splitting a race would leave one
machine waiting on another. ``--shard i/N`` takes races ``i, i + N, i + 2N, ...`` of
the (base, task) list and writes ``rank-shard-i-of-N.json``; ``--merge`` reads the
shard files of one or more directories and writes the rank.json an unsharded run
would have written (the races are independent, each replayed from its cells).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from pairscope.errors import InputError
from pairscope.rank.schema import Race, RankResult

T = TypeVar("T")
RANK_FILE = "rank.json"
# The settings every shard of one rank must share.
SHARED = ("bases", "guides", "tasks", "method", "objective", "alpha", "epsilon", "budget", "batch")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (1 <= i <= N) as ``(i, N)``; None for no sharding."""
    if not text:
        return None
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like i/N, e.g. 1/4 (got '{text}').") from None
    if not 1 <= i <= n:
        raise InputError(f"--shard {text}: need 1 <= i <= N.")
    return i, n


def my_races(races: list[T], shard: tuple[int, int] | None) -> list[T]:
    """The races this shard runs (all of them without sharding)."""
    if shard is None:
        return list(races)
    i, n = shard
    return races[i - 1 :: n]


def result_file(shard: tuple[int, int] | None) -> str:
    return RANK_FILE if shard is None else f"rank-shard-{shard[0]}-of-{shard[1]}.json"


def read_shards(dirs: list[Path]) -> list[tuple[Path, RankResult]]:
    """Every shard file in ``dirs`` with its directory, checked to be the complete shards
    of one rank."""
    files = sorted({f for d in dirs for f in Path(d).glob("rank-shard-*-of-*.json")})
    if not files:
        raise InputError(
            f"No shard files (rank-shard-i-of-N.json) in {', '.join(map(str, dirs))}.",
            hint="Run each shard with --shard i/N first.",
        )
    found = [(f.parent, RankResult.model_validate_json(f.read_text())) for f in files]
    shards = [s for _, s in found]
    first = shards[0]
    for other in shards[1:]:
        differ = [k for k in SHARED if getattr(other, k) != getattr(first, k)]
        if differ:
            raise InputError(f"The shards are of different ranks (they differ in {differ}).")
    counts = {int(str(s.shard).split("/")[1]) for s in shards}
    got = sorted(int(str(s.shard).split("/")[0]) for s in shards)
    if len(counts) != 1 or got != list(range(1, counts.pop() + 1)):
        names = ", ".join(s.shard or "" for s in shards)
        raise InputError(f"Missing or repeated shards: found {names}.")
    return found


def merge(dirs: list[Path], out: Path, fail_on: tuple[str, ...]) -> RankResult:
    """The rank.json the unsharded run would have written, from the shards' files (cell
    paths made relative to ``out``)."""
    from pairscope.rank.core import RankOptions, rank_result

    found = read_shards(dirs)
    shards = [s for _, s in found]
    first = shards[0]
    races = sorted(
        (_moved(race, where, out) for where, s in found for race in s.races),
        key=lambda r: (first.bases.index(r.base), first.tasks.index(r.task)),
    )
    opts = RankOptions(
        bases=tuple(first.bases), guides=tuple(first.guides), out=str(out),
        tasks=tuple(first.tasks), method=first.method, objective=first.objective,
        epsilon=first.epsilon, alpha=first.alpha, n=first.budget, batch=first.batch,
        seed=first.seed, fail_on=fail_on,
    )  # fmt: skip
    decoded = sum(s.samples_decoded for s in shards)
    return rank_result(opts, races, list(first.tasks), decoded, max(s.seconds for s in shards))


def _moved(race: Race, where: Path, out: Path) -> Race:
    """``race`` with its cells' paths relative to ``out`` instead of ``where``."""
    guides = [
        g
        if g.cell is None
        else g.model_copy(update={"cell": Path(os.path.relpath(where / g.cell, out)).as_posix()})
        for g in race.guides
    ]
    return race.model_copy(update={"guides": guides})


def merge_into(dirs: list[str], out: str | None, fail_on: tuple[str, ...]) -> RankResult:
    """``--merge``: merge the shards of ``dirs`` and write rank.json into ``out``."""
    from pairscope.rank.core import FAIL_ON
    from pairscope.rank.html import render_rank
    from pairscope.runs import write_json_atomic
    from pairscope.schema import dump

    for item in fail_on:
        if item not in FAIL_ON:
            raise InputError(f"Unknown --fail-on condition '{item}'; choose from {FAIL_ON}.")
    paths = [Path(d) for d in dirs]
    target = Path(out) if out else paths[0]
    result = merge(paths, target, fail_on)
    target.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target / RANK_FILE, dump(result))
    render_rank(target, result)
    return result
