"""`pairscope rank`: race candidate guides for a base and pick the best pair."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from pairscope.cli.app import (
    DataDir,
    Device,
    Dtype,
    MaxNew,
    Seed,
    Tasks,
    Tau,
    Threshold,
    TrustRemoteCode,
    err,
    guard,
    out,
)
from pairscope.config import parse_csv
from pairscope.defaults import TAU


@guard
def rank(
    guides: Annotated[
        str | None,
        typer.Option(
            "--guides",
            help="Comma-separated candidate guides (any model spec probe takes).",
            rich_help_panel="Models",
        ),
    ] = None,
    base: Annotated[
        str, typer.Option("--base", help="The base model.", rich_help_panel="Models")
    ] = "embedded:gemma-3-270m",
    bases: Annotated[
        str | None,
        typer.Option(
            "--bases",
            help="Several bases, comma-separated (instead of --base).",
            rich_help_panel="Models",
        ),
    ] = None,
    tasks: Tasks = "gsm8k,truthfulqa,xstest",
    method: Annotated[
        str, typer.Option(help="nudging or blendin.", rich_help_panel="Decoding")
    ] = "nudging",
    objective: Annotated[
        str,
        typer.Option(
            help="score: the best task score among guides whose IR is below the threshold; "
            "ir: the lowest intervention rate.",
            rich_help_panel="Race",
        ),
    ] = "score",
    epsilon: Annotated[
        float, typer.Option(help="Differences up to epsilon are a tie.", rich_help_panel="Race")
    ] = 0.02,
    alpha: Annotated[
        float,
        typer.Option(
            help="Chance of any wrong elimination in a race (split over its sequences).",
            rich_help_panel="Race",
        ),
    ] = 0.05,
    n: Annotated[
        int,
        typer.Option(
            "--n",
            help="Budget: samples per task at most. A larger --n later continues the race.",
            rich_help_panel="Race",
        ),
    ] = 100,
    batch: Annotated[
        int, typer.Option(help="Samples between two decisions.", rich_help_panel="Race")
    ] = 10,
    fail_on: Annotated[
        str,
        typer.Option(
            help="What fails: 'infeasible' (exit 1: a race has no feasible pair), "
            "'unresolved' (exit 4), both comma-separated, or 'none'.",
            rich_help_panel="Race",
        ),
    ] = "infeasible,unresolved",
    threshold: Threshold = None,
    tau: Tau = TAU,
    max_new_tokens: MaxNew = None,
    seed: Seed = None,
    data_dir: DataDir = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
    trust_remote_code: TrustRemoteCode = False,
    out_dir: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Rank directory: rank.json and one run directory per cell "
            "(default reports/rank-TIME). Running again continues it.",
            rich_help_panel="Output",
        ),
    ] = None,
    base_arm: Annotated[
        bool,
        typer.Option(
            "--base-arm",
            help="Also decode the base alone on the samples each race used (once for all "
            "guides), for each guide's gain over it.",
            rich_help_panel="Race",
        ),
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(
            help="i/N: run this machine's share of the races (every N-th (base, task) from "
            "the i-th) into a shared --out; combine the shards with --merge.",
            rich_help_panel="Output",
        ),
    ] = None,
    merge: Annotated[
        list[str] | None,
        typer.Option(
            help="Combine the shard files of these rank directories (repeatable) into "
            "rank.json in --out (default: the first); decodes nothing.",
            rich_help_panel="Output",
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print rank.json to stdout.", rich_help_panel="Output")
    ] = False,
) -> None:
    """Race candidate guides for a base on the same samples and pick the best pair.

    Each pair is checked first (a pair failing a hard check is pruned, never decoded).
    Surviving guides decode the same seeded samples batch by batch; after each batch a
    guide leaves the race when its intervention rate is shown above the threshold, or
    when a guide shown feasible beats its score by more than epsilon, with anytime-valid
    confidence sequences (every elimination right with probability at least 1 - alpha).

    Exit codes: 0 a feasible winner or a tie in every race, 1 a race has no feasible
    pair, 4 a race is unresolved at the budget, 2 bad input, 3 runtime failure.

    Example: pairscope rank --guides
    embedded:smollm2-135m-instruct,embedded:qwen2.5-coder-0.5b-instruct
    """
    from pairscope.rank.core import RankOptions, default_out
    from pairscope.rank.core import rank as run_rank
    from pairscope.rank.merge import merge_into
    from pairscope.rank.shards import parse_shard
    from pairscope.report.console import RichProgress

    fail = () if fail_on == "none" else parse_csv(fail_on)
    if merge:
        _show(merge_into([d for m in merge for d in parse_csv(m)], out_dir, fail), json_out)
    opts = RankOptions(
        bases=parse_csv(bases) if bases else (base,),
        guides=parse_csv(guides or ""),
        out=out_dir or default_out(),
        tasks=parse_csv(tasks),
        method=method,
        objective=objective,
        epsilon=epsilon,
        alpha=alpha,
        n=n,
        batch=batch,
        seed=seed,
        threshold=threshold,
        max_new_tokens=max_new_tokens,
        data_dir=data_dir,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        fail_on=fail,
        shard=parse_shard(shard),
        base_arm=base_arm,
        probe={"tau": tau},
    )
    with RichProgress(err) as progress:
        result = run_rank(opts, progress)
    _show(result, json_out)


def _show(result: Any, json_out: bool) -> None:
    """The leaderboard (to stderr when stdout carries the JSON), then the exit code."""
    from pairscope.rank.leaderboard import print_leaderboard
    from pairscope.schema import dump

    print_leaderboard(result, err if json_out else out)
    if json_out:
        sys.stdout.write(json.dumps(dump(result), indent=2) + "\n")
    raise typer.Exit(result.exit_code)
