"""`pairscope rank`: race candidate guides for a base and pick the best pair."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

import pairscope.methods as registry
from pairscope.cli.app import (
    Base,
    DataDir,
    Device,
    Dtype,
    Json,
    JsonOut,
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
from pairscope.defaults import TAU
from pairscope.errors import Interrupted
from pairscope.pipeline.config import parse_csv


@guard
def rank(
    guides: Annotated[
        str | None,
        typer.Option(
            "--guides",
            metavar="MODELS",
            help="Comma-separated candidate guides, each a Hub id, local directory, .gguf "
            "file, served URL or embedded name: embedded:smollm2-135m-instruct, "
            "embedded:qwen2.5-coder-0.5b-instruct (optional extra qwen).",
            rich_help_panel="Models",
        ),
    ] = None,
    base: Base = "embedded:gemma-3-270m",
    bases: Annotated[
        str | None,
        typer.Option(
            "--bases",
            metavar="MODELS",
            help="Several bases, comma-separated (instead of --base).",
            rich_help_panel="Models",
        ),
    ] = None,
    tasks: Tasks = "gsm8k,truthfulqa,xstest",
    method: Annotated[
        str, typer.Option(help=f"{' or '.join(registry.gated())}.", rich_help_panel="Decoding")
    ] = registry.gated()[0],
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
            "-n",
            "--limit",
            metavar="N",
            help="Budget: samples per task at most. A larger --limit later continues the race.",
            rich_help_panel="Race",
        ),
    ] = 100,
    race_batch: Annotated[
        int,
        typer.Option(
            "--race-batch",
            metavar="N",
            help="Samples every guide in the race decodes between two decisions (they are "
            "also decoded together: rank has no separate --batch-size).",
            rich_help_panel="Race",
        ),
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
            metavar="DIR",
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
    as_json: Json = False,
    json_out: JsonOut = None,
) -> None:
    """Race candidate guides for a base on the same samples and pick the best pair.

    Each pair is checked first (a pair failing a hard check is pruned, never decoded).
    Surviving guides decode the same seeded samples batch by batch; after each batch a
    guide leaves the race when its intervention rate is shown above the threshold, or
    when a guide shown feasible beats its score by more than epsilon, with anytime-valid
    confidence sequences (every elimination right with probability at least 1 - alpha).

    The result is rank.json in --out; --json prints it on stdout, --json-out copies it.

    Exit codes: 0 a feasible winner or a tie in every race, 1 a race has no feasible
    pair, 4 a race is unresolved at the budget, 2 bad input, 3 runtime failure, 130
    interrupted (running the same command again continues).

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
        merged = merge_into([d for m in merge for d in parse_csv(m)], out_dir, fail)
        _show(merged, as_json, json_out)
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
        batch=race_batch,
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
    try:
        with RichProgress(err) as progress:
            result = run_rank(opts, progress)
    except KeyboardInterrupt:
        raise Interrupted(
            f"finished samples are saved in the cells under {opts.out}; run the same "
            "command again to continue the rank."
        ) from None
    _show(result, as_json, json_out)


def _show(result: Any, as_json: bool, json_out: Path | None) -> None:
    """The leaderboard (to stderr when stdout carries the JSON), the JSON, the exit code."""
    from pairscope.rank.leaderboard import print_leaderboard
    from pairscope.report.ci import write_text
    from pairscope.schema import dump

    print_leaderboard(result, err if as_json else out)
    text = json.dumps(dump(result), indent=2) + "\n"
    if as_json:
        sys.stdout.write(text)
    if json_out:
        write_text(json_out, text)
    raise typer.Exit(result.exit_code)
