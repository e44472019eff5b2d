"""`pairscope score` and `pairscope probes`: score completions made elsewhere; list and
show the probe sets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pairscope.cli.app import (
    DataDir,
    Json,
    JudgeModel,
    N,
    Seed,
    err,
    guard,
    out,
)
from pairscope.errors import InputError
from pairscope.pipeline.config import parse_n


@guard
def score(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSONL or CSV, one row per response: a 'completion' (or 'response', "
            "'output', ...) and a sample id, the prompt, or the row's own label."
        ),
    ],
    task: Annotated[str, typer.Option(metavar="TASK", help="gsm8k, truthfulqa or xstest.")],
    data_dir: DataDir = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON label per line on stdout.")
    ] = False,
    skip_unmatched: Annotated[
        bool,
        typer.Option(
            "--skip-unmatched",
            help="Score the rows that match a sample and leave out the rest (counted and "
            "listed) instead of refusing the file.",
        ),
    ] = False,
    report_path: Annotated[
        Path | None,
        typer.Option(
            "--json-out",
            metavar="PATH",
            help="Write the whole result as JSON to PATH: accuracy, interval, XSTest "
            "rates, skipped line numbers, one label per row.",
        ),
    ] = None,
    judge: JudgeModel = None,
) -> None:
    """Score responses produced elsewhere with pairscope's judge-free scorers (and, with
    --judge, a model judge beside them on XSTest).

    Exit codes: 0 scored, 2 bad input (unreadable file, unknown task, unmatched rows),
    3 runtime failure.
    """
    from pairscope.paths import check_file_writable
    from pairscope.probes import load_probe
    from pairscope.scoring import score_file
    from pairscope.tasks import get_task

    check_file_writable(report_path, "--report")
    result = score_file(task, file, data_dir, skip_unmatched=skip_unmatched)
    judged = None
    if judge:
        from pairscope.judge.runs import judge_file

        judged = judge_file(judge, task, file, data_dir, result)
    if report_path is not None:
        whole = {**result.to_dict(), **({"judge": judged} if judged else {})}
        try:
            report_path.write_text(json.dumps(whole, indent=2) + "\n")
        except OSError as exc:
            raise InputError(f"Cannot write {report_path}: {exc}") from None
    console = err if json_out else out
    if result.n_skipped:
        shown = ", ".join(map(str, result.skipped[:10]))
        more = ", ..." if result.n_skipped > 10 else ""
        rows = "row" if result.n_skipped == 1 else "rows"
        console.print(
            f"skipped {result.n_skipped} {rows} matching no sample (lines {shown}{more})",
            highlight=False,
            soft_wrap=True,
        )
    if json_out:
        for line in result.lines:
            sys.stdout.write(json.dumps(line.to_dict()) + "\n")
        return
    low, high = result.interval
    out.print(
        f"{task}: accuracy {result.accuracy:.3f} [{low:.3f}, {high:.3f}] "
        f"(Wilson 95 %), {result.correct}/{result.n} correct"
    )
    if result.rates is not None:
        # The task's own line: only it knows what its rates are called.
        describe = get_task(load_probe(task).scorer).describe_rates
        if describe is not None:
            out.print(f"  {describe(result.rates)}", highlight=False, soft_wrap=True)
    if judged:
        from pairscope.judge.runs import describe as describe_judge

        for text in describe_judge(judged):
            out.print(text, highlight=False, soft_wrap=True)


@guard
def probes_list() -> None:
    """List the built-in probes.

    Exit codes: 0 listed, 3 runtime failure.
    """
    from pairscope.probes import list_probes, load_probe

    table = Table()
    for col in ("name", "version", "n", "scorer", "threshold", "description"):
        table.add_column(col)
    for name in list_probes():
        spec = load_probe(name)
        table.add_row(
            name,
            str(spec.version),
            str(spec.n),
            spec.scorer,
            f"{spec.threshold:.2f}",
            spec.description.strip(),
        )
    out.print(table)


@guard
def probes_show(
    name: Annotated[str, typer.Argument(help="Probe name or YAML file.")],
    data_dir: DataDir = None,
    n: N = "",
    seed: Seed = None,
    json_out: Json = False,
) -> None:
    """Show a probe: its definition, dataset size, strata and the sample its seed selects.

    Exit codes: 0 shown, 2 bad input (unknown probe, missing data), 3 runtime failure.
    """
    from pairscope.probes import load_probe, probe_info

    info = probe_info(load_probe(name), data_dir, n=parse_n(n), seed=seed)
    if json_out:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    out.print(f"[bold]{info['name']}[/]  ({info['path']})")
    out.print(
        f"dataset size: {info['dataset_size']}; selected: {info['selected']['n']} "
        f"(seed {info['selected']['seed']})"
    )
    table = Table("stratum", "in dataset", "selected")
    for stratum, count in info["strata"].items():
        table.add_row(stratum, str(count), str(info["selected"]["strata"].get(stratum, 0)))
    out.print(table)
    out.print(
        "selected ids: "
        + ", ".join(info["selected"]["ids"][:10])
        + (" ..." if len(info["selected"]["ids"]) > 10 else "")
    )
