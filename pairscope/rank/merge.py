"""``pairscope rank --merge``: the shard files of a rank combined into the rank.json (and
rank.html) that one unsharded run would have written: the races are independent, each
replayed from its own cells, so merging is concatenation in the unsharded order."""

from __future__ import annotations

import os
from pathlib import Path

from pairscope.errors import InputError
from pairscope.rank.core import FAIL_ON, RankOptions, rank_result
from pairscope.rank.schema import Race, RankResult
from pairscope.rank.shards import RANK_FILE

# The settings every shard of one rank must share.
SHARED = ("bases", "guides", "tasks", "method", "objective", "alpha", "epsilon", "budget", "batch")


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
    from pairscope.pipeline.runs import write_json_atomic
    from pairscope.rank.html import render_rank
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
