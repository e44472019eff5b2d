"""`pairscope check`, `probe`, `evaluate`, `report` and `compare`: the gate and its reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pairscope.cli.app import (
    Base,
    BatchSize,
    DataDir,
    Device,
    Dtype,
    Force,
    Guide,
    JsonOut,
    Lam,
    Manifest,
    MaxNew,
    N,
    OutDir,
    Protocol,
    Resume,
    Seed,
    Strict,
    Tasks,
    Tau,
    Threshold,
    Tokenization,
    TopK,
    TrustRemoteCode,
    err,
    given_fields,
    guard,
    out,
)
from pairscope.config import RunOptions, parse_csv
from pairscope.defaults import DEFAULT_PROTOCOL, LAMBDA, TAU, TOP_K


@guard
def check(
    base: Base = "embedded:gemma-3-270m",
    guide: Guide = "embedded:smollm2-135m-instruct",
    tasks: Tasks = "gsm8k,truthfulqa,xstest",
    device: Device = "auto",
    dtype: Dtype = "auto",
    trust_remote_code: TrustRemoteCode = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Pre-flight check of a pair in seconds: tokenizers and configs only, no weights.

    Reports PASS / WARN / FAIL, with the fix, for each model's tokenizer family and
    single-token spaces, chat template, special and end-of-sequence ids, vocabulary
    size, context and sliding windows, dtype on the device, a served model's server
    and top-logprobs cap, and the pair's vocabulary overlap.

    Exit codes: 0 no hard incompatibility (WARN items allowed), 2 a FAIL item.

    Example: pairscope check --guide vllm:http://127.0.0.1:8000/v1 --json
    """
    from pairscope.check import check_pair
    from pairscope.report.console import VERDICT_STYLE

    report = check_pair(
        base,
        guide,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        tasks=parse_csv(tasks),
    )
    if json_out:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        table = Table(title=f"pairscope check: {base} + {guide}", show_lines=True)
        for col in ("model", "check", "status", "found", "fix"):
            table.add_column(col, overflow="fold")
        for item in report.items:
            table.add_row(
                item.model,
                item.check,
                f"[{VERDICT_STYLE[item.status.value]}]{item.status.value}[/]",
                escape(item.found),
                escape(item.fix or ""),
            )
        out.print(table)
        out.print(f"[dim]{len(report.items)} items in {report.seconds:.1f} s[/]")
    for item in report.failures():
        err.print(
            f"[bold red]FAIL[/] {item.model} {item.check}: {escape(item.found)}",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(int(report.exit_code))


def _run_command(opts: Any, json_path: str | None, markdown: str | None) -> None:
    from pairscope.pipeline import run
    from pairscope.report.console import RichProgress, markdown_summary, print_summary
    from pairscope.schema import dump

    with RichProgress(err) as progress:
        summary, run_dir = run(opts, progress)
    # With --json - stdout carries only the JSON, so the table goes to stderr.
    print_summary(summary, run_dir, err if json_path == "-" else out)
    if json_path:
        text = json.dumps(dump(summary), indent=2, sort_keys=True)
        if json_path == "-":
            sys.stdout.write(text + "\n")
        else:
            Path(json_path).write_text(text + "\n", encoding="utf-8")
    if markdown:
        Path(markdown).write_text(markdown_summary(summary, run_dir), encoding="utf-8")
    raise typer.Exit(summary.overall.exit_code)


@guard
def probe(
    ctx: typer.Context,
    base: Base = "embedded:gemma-3-270m",
    guide: Guide = "embedded:smollm2-135m-instruct",
    tasks: Tasks = "gsm8k,truthfulqa,xstest",
    n: N = "",
    seed: Seed = None,
    tau: Tau = TAU,
    tokenization: Tokenization = "canonical",
    protocol: Protocol = DEFAULT_PROTOCOL,
    method: Annotated[
        str,
        typer.Option(
            help="Guided method whose interventions are measured: nudging or blendin.",
            rich_help_panel="Decoding",
        ),
    ] = "nudging",
    threshold: Threshold = None,
    strict: Strict = False,
    data_dir: DataDir = None,
    manifest: Manifest = None,
    out_dir: OutDir = None,
    force: Force = False,
    resume: Resume = None,
    json_path: JsonOut = None,
    markdown: Annotated[
        str | None,
        typer.Option(
            help="Write a Markdown summary table (for a CI job summary).", rich_help_panel="Output"
        ),
    ] = None,
    fixed: Annotated[
        bool,
        typer.Option(
            "--fixed",
            help="Decode all --n samples of every task and gate on the bootstrap interval "
            "(default: stop a task as soon as the anytime-valid test decides).",
            rich_help_panel="Gate",
        ),
    ] = False,
    min_calibration_samples: Annotated[
        int,
        typer.Option(
            help="A task that decides early still decodes this many samples, for calibration.",
            rich_help_panel="Gate",
        ),
    ] = 30,
    no_calibration: Annotated[
        bool, typer.Option("--no-calibration", help="Skip teacher-forced calibration.")
    ] = False,
    device: Device = "auto",
    dtype: Dtype = "auto",
    batch_size: BatchSize = 16,
    max_new_tokens: MaxNew = None,
    k: TopK = TOP_K,
    lam: Lam = LAMBDA,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Probe a base/guide pair and gate on its intervention rate.

    Each task decodes its samples in a fixed, seeded, stratum-interleaved order and
    stops as soon as an anytime-valid test (95 %, valid although it looks after every
    sample) declares the pooled intervention rate above the threshold (FAIL) or below
    it (PASS); --n is the budget, and a task still undecided when it is spent is WARN.
    A task the budget cannot settle stops early as WARN: from 30 samples on, once a
    decision within the budget is estimated under 2 % likely. --fixed always spends the
    budget and gates on the bootstrap interval instead.

    Exit codes: 0 pass, 1 the pair fails the gate, 2 bad input, 3 runtime failure,
    130 interrupted (resume with --resume RUN_DIR).

    Example: pairscope probe --data-dir ../shared/data --n 100 --out reports/my-pair
    """
    opts = RunOptions.from_cli("probe", ctx.params, given_fields(ctx))
    _run_command(opts, json_path, markdown)


@guard
def evaluate(
    ctx: typer.Context,
    base: Base = "embedded:gemma-3-270m",
    guide: Guide = "embedded:smollm2-135m-instruct",
    tasks: Tasks = "gsm8k,truthfulqa,xstest",
    methods: Annotated[
        str,
        typer.Option(
            help=(
                "Comma-separated methods: base, guide, nudging, blendin, "
                "blend:ALPHA (a fixed weight, e.g. blend:0.3)."
            ),
            rich_help_panel="Decoding",
        ),
    ] = "base,guide,nudging,blendin",
    n: N = "",
    seed: Seed = None,
    tau: Tau = TAU,
    tokenization: Tokenization = "canonical",
    protocol: Protocol = DEFAULT_PROTOCOL,
    alpha: Annotated[
        str,
        typer.Option(
            help="BlendIn weight: 'auto' (adaptive) or a number in [0, 1].",
            rich_help_panel="Decoding",
        ),
    ] = "auto",
    threshold: Threshold = None,
    strict: Strict = False,
    data_dir: DataDir = None,
    manifest: Manifest = None,
    out_dir: OutDir = None,
    force: Force = False,
    resume: Resume = None,
    json_path: JsonOut = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
    batch_size: BatchSize = 16,
    max_new_tokens: MaxNew = None,
    k: TopK = TOP_K,
    lam: Lam = LAMBDA,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Compare methods on identical samples with paired statistics and an HTML report.

    Example: pairscope evaluate --data-dir ../shared/data --tasks gsm8k --n 200
    """
    opts = RunOptions.from_cli("evaluate", ctx.params, given_fields(ctx))
    _run_command(opts, json_path, None)


@guard
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by probe or evaluate.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="HTML file (default RUN_DIR/report.html).")
    ] = None,
    max_samples: Annotated[
        int, typer.Option(help="Transcripts shown per task (0 = all; large runs make large pages).")
    ] = 100,
) -> None:
    """Render a self-contained report.html from a run directory (never re-runs a model)."""
    from pairscope.report.html import render_report

    path = render_report(run_dir, out_file, max_samples=max_samples or None)
    out.print(f"report: {path}")


@guard
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories of several pairs.")],
    out_file: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path(
        "reports/compare.html"
    ),
) -> None:
    """Rank pairs by verdict and intervention rate; plot the intervention paradox."""
    from pairscope.report.html import compare_rows, render_compare

    rows = compare_rows(run_dirs)
    table = Table(title="Pairs, best first")
    for col in ("run", "base", "guide", "verdict", "mean IR"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            *(str(row.get(c, "")) for c in ("run", "base", "guide", "verdict", "mean_ir"))
        )
    out.print(table)
    path = render_compare(run_dirs, out_file)
    out.print(f"compare report: {path}")
