"""`pairscope check`, `probe`, `evaluate`, `report` and `compare`: the gate and its reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

import pairscope.methods as registry
from pairscope.cli.app import (
    Base,
    BaseRevision,
    BatchSize,
    DataDir,
    Device,
    Dtype,
    Force,
    Guide,
    GuideRevision,
    Json,
    JsonOut,
    JudgeModel,
    Junit,
    Lam,
    Manifest,
    Markdown,
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
from pairscope.defaults import BATCH_SIZE, DEFAULT_PROTOCOL, LAMBDA, TAU, TOP_K
from pairscope.pipeline.config import from_cli, parse_csv


@guard
def check(
    base: Base = "embedded:gemma-3-270m",
    guide: Guide = "embedded:smollm2-135m-instruct",
    tasks: Tasks = "gsm8k,truthfulqa,xstest",
    device: Device = "auto",
    dtype: Dtype = "auto",
    trust_remote_code: TrustRemoteCode = False,
    base_revision: BaseRevision = None,
    guide_revision: GuideRevision = None,
    json_out: Json = False,
) -> None:
    """Pre-flight check of a pair in seconds: tokenizers and configs only, no weights.

    Reports PASS / WARN / FAIL, with the fix, for each model's tokenizer family and
    single-token spaces, chat template, special and end-of-sequence ids, vocabulary
    size, context and sliding windows, dtype on the device, a served model's server
    and top-logprobs cap, and the pair's vocabulary overlap.

    Exit codes: 0 no hard incompatibility (WARN items allowed), 2 a FAIL item or bad
    input, 3 runtime failure.

    Example: pairscope check --guide vllm:http://127.0.0.1:8000/v1 --json
    """
    from pairscope.check import check_pair
    from pairscope.report.console import VERDICT_STYLE, check_overall_line

    report = check_pair(
        base,
        guide,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        tasks=parse_csv(tasks),
        revisions={"base": base_revision, "guide": guide_revision},
    )
    if json_out:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        table = Table(title=escape(f"pairscope check: {base} + {guide}"), show_lines=True)
        for col in ("model", "check", "status", "found", "fix"):
            table.add_column(col, overflow="fold")
        for item in report.items:
            table.add_row(
                escape(item.model),
                escape(item.check),
                f"[{VERDICT_STYLE[item.status.value]}]{item.status.value}[/]",
                escape(item.found),
                escape(item.fix or ""),
            )
        out.print(table)
    for item in report.failures():
        err.print(
            f"[bold red]FAIL[/] {escape(item.model)} {escape(item.check)}: {escape(item.found)}",
            highlight=False,
            soft_wrap=True,
        )
    if not json_out:
        out.print(check_overall_line(report), highlight=False, soft_wrap=True)
    raise typer.Exit(int(report.exit_code))


def _run_command(
    opts: Any,
    as_json: bool,
    json_out: Path | None,
    markdown: Path | None,
    junit: Path | None,
    judge: str | None = None,
) -> None:
    from pairscope.paths import check_file_writable
    from pairscope.pipeline.steps import run
    from pairscope.report.ci import junit_xml, write_text
    from pairscope.report.console import RichProgress, markdown_summary, print_summary
    from pairscope.schema import dump

    try:
        # Output files are checked before the run, so a typo is exit 2, not a lost verdict.
        for option, path in (
            ("--json-out", json_out),
            ("--markdown", markdown),
            ("--junit", junit),
        ):
            check_file_writable(path, option)
        with RichProgress(err) as progress:
            summary, run_dir = run(opts, progress)
        if judge:
            from pairscope.judge.runs import judge_finished_run

            err.print(f"judging XSTest responses with {judge} ...", highlight=False, markup=False)
            summary = judge_finished_run(run_dir, judge, opts)
    except BaseException as exc:
        _report_failure(opts, exc, junit)
        raise
    # With --json stdout carries only the JSON, so the table goes to stderr.
    print_summary(summary, run_dir, err if as_json else out)
    text = json.dumps(dump(summary), indent=2, sort_keys=True) + "\n"
    if as_json:
        sys.stdout.write(text)
    if json_out:
        write_text(json_out, text)
    if junit:
        write_text(junit, junit_xml(summary))
    table = markdown_summary(summary, run_dir)
    if markdown:
        write_text(markdown, table)
    _step_summary(table)
    raise typer.Exit(summary.overall.exit_code)


def _step_summary(text: str) -> None:
    """Append to the GitHub job summary; a summary that cannot be written costs a
    warning, never the verdict's exit code."""
    from pairscope.report.ci import append_step_summary

    try:
        append_step_summary(text)
    except OSError as exc:
        err.print(f"[yellow]warning:[/] job summary not written: {escape(str(exc))}")


def _report_failure(opts: Any, exc: BaseException, junit: Path | None) -> None:
    """A run that could not finish still leaves its JUnit errors and job-summary line."""
    from pairscope.errors import PairscopeError
    from pairscope.report.ci import junit_error_xml, write_text

    if isinstance(exc, (typer.Exit, SystemExit)):
        return
    if isinstance(exc, KeyboardInterrupt):
        message = "interrupted"
    elif isinstance(exc, PairscopeError):
        message = exc.message
    else:
        message = f"{type(exc).__name__}: {exc}"
    _step_summary(f"### pairscope {opts.command}: could not finish\n\n{message}\n")
    if junit:
        try:
            write_text(junit, junit_error_xml(opts.command, opts.tasks, opts.methods, message))
        except OSError as write_error:
            err.print(f"[yellow]warning:[/] JUnit report not written: {escape(str(write_error))}")


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
            metavar="METHOD",
            help="Guided method whose interventions are measured: "
            f"{' or '.join(registry.gated())}.",
            rich_help_panel="Decoding",
        ),
    ] = registry.gated()[0],
    threshold: Threshold = None,
    strict: Strict = False,
    data_dir: DataDir = None,
    manifest: Manifest = None,
    out_dir: OutDir = None,
    force: Force = False,
    resume: Resume = None,
    as_json: Json = False,
    json_out: JsonOut = None,
    markdown: Markdown = None,
    junit: Junit = None,
    fixed: Annotated[
        bool,
        typer.Option(
            "--fixed",
            help="Decode all --limit samples of every task and gate on the bootstrap interval "
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
    batch_size: BatchSize = BATCH_SIZE,
    max_new_tokens: MaxNew = None,
    k: TopK = TOP_K,
    lam: Lam = LAMBDA,
    trust_remote_code: TrustRemoteCode = False,
    base_revision: BaseRevision = None,
    guide_revision: GuideRevision = None,
    judge: JudgeModel = None,
) -> None:
    """Probe a base/guide pair and gate on its intervention rate.

    Each task decodes its samples in a fixed, seeded, stratum-interleaved order and
    stops as soon as an anytime-valid test (95 %, valid although it looks after every
    sample) declares the pooled intervention rate above the threshold (FAIL) or below
    it (PASS); --limit is the budget, and a task still undecided when it is spent is WARN.
    A task the budget cannot settle stops early as WARN: from 30 samples on, once a
    decision within the budget is estimated under 2 % likely. --fixed always spends the
    budget and gates on the bootstrap interval instead.

    Exit codes: 0 pass, 1 the pair fails the gate, 2 bad input, 3 runtime failure,
    130 interrupted (resume with --resume RUN_DIR).

    Example: pairscope probe --base ./my-base --guide ./my-guide --out reports/my-pair
    """
    opts = from_cli("probe", ctx.params, given_fields(ctx))
    _run_command(opts, as_json, json_out, markdown, junit, judge)


@guard
def evaluate(
    ctx: typer.Context,
    base: Base = "embedded:gemma-3-270m",
    guide: Guide = "embedded:smollm2-135m-instruct",
    tasks: Tasks = "gsm8k,truthfulqa,xstest",
    methods: Annotated[
        str,
        typer.Option(
            "--method",
            metavar="METHODS",
            help=f"Comma-separated methods: {registry.choices_text(', ')}.",
            rich_help_panel="Decoding",
        ),
    ] = ",".join(registry.defaults()),
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
    as_json: Json = False,
    json_out: JsonOut = None,
    markdown: Markdown = None,
    junit: Junit = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
    batch_size: BatchSize = BATCH_SIZE,
    max_new_tokens: MaxNew = None,
    k: TopK = TOP_K,
    lam: Lam = LAMBDA,
    trust_remote_code: TrustRemoteCode = False,
    base_revision: BaseRevision = None,
    guide_revision: GuideRevision = None,
    judge: JudgeModel = None,
) -> None:
    """Compare methods on identical samples with paired statistics and an HTML report.

    Exit codes: 0 pass, 1 the pair fails the gate, 2 bad input, 3 runtime failure,
    130 interrupted (resume with --resume RUN_DIR).

    Example: pairscope evaluate --data-dir DATA_DIR --tasks gsm8k -n 200
    """
    opts = from_cli("evaluate", ctx.params, given_fields(ctx))
    _run_command(opts, as_json, json_out, markdown, junit, judge)


@guard
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by probe or evaluate.")],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", metavar="FILE", help="HTML file (default RUN_DIR/report.html)."
        ),
    ] = None,
    max_samples: Annotated[
        str,
        typer.Option(
            "-n",
            "--limit",
            metavar="N",
            help="Transcripts shown per task, or 'all' (large runs make large pages).",
        ),
    ] = "100",
) -> None:
    """Render a self-contained report.html from a run directory (never re-runs a model).

    Exit codes: 0 written, 2 bad input (not a run directory), 3 runtime failure.
    """
    from pairscope.paths import check_file_writable
    from pairscope.pipeline.config import parse_n
    from pairscope.report.html import render_report

    check_file_writable(out_file, "--output")
    limit = parse_n(max_samples)
    shown = limit if isinstance(limit, int) and limit > 0 else None  # 0: all, as before
    path = render_report(run_dir, out_file, max_samples=shown)
    out.print(f"report: {escape(str(path))}")


@guard
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories of several pairs.")],
    out_file: Annotated[
        Path, typer.Option("-o", "--output", metavar="FILE", help="HTML file to write.")
    ] = Path("reports/compare.html"),
) -> None:
    """Rank pairs by verdict and intervention rate; plot the intervention paradox.

    Exit codes: 0 written, 2 bad input (not a run directory), 3 runtime failure.
    """
    from pairscope.paths import check_file_writable
    from pairscope.report.html import compare_rows, render_compare

    check_file_writable(out_file, "--output")
    rows = compare_rows(run_dirs)
    table = Table(title="Pairs, best first")
    for col in ("run", "base", "guide", "verdict", "mean IR"):
        # Long paths and model ids fold onto more lines; the verdict is never cut.
        table.add_column(col, overflow="fold", no_wrap=col == "verdict")
    for row in rows:
        table.add_row(
            *(escape(str(row.get(c, ""))) for c in ("run", "base", "guide", "verdict", "mean_ir"))
        )
    out.print(table)
    path = render_compare(run_dirs, out_file)
    out.print(f"compare report: {escape(str(path))}")
