"""Command line: parse -> options -> one core call -> Rich output -> exit code.

Heavy imports (torch, transformers) happen inside command bodies so `--help` is
instant. Errors are caught in one place (:func:`_guard`): a PairscopeError prints
one line and its next step and exits with its code; anything else is a runtime
failure (exit 3) with the traceback shown only when PAIRSCOPE_DEBUG=1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pairscope import __version__
from pairscope.config import CLI_FIELDS, RunOptions, parse_csv, parse_n
from pairscope.defaults import LAMBDA, TAU, TOP_K
from pairscope.errors import ExitCode, InputError, PairscopeError

app = typer.Typer(
    name="pairscope",
    help=(
        "Will this guide model steer this base model well at inference time, and how sure "
        "are we? Probes intervention rate, vocabulary overlap and calibration on small "
        "seeded benchmark samples and gates CI on the answer."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
probes_app = typer.Typer(help="List and inspect the probe sets.", no_args_is_help=True)
app.add_typer(probes_app, name="probes")

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

# -- shared options, declared once ---------------------------------------------------------

Base = Annotated[
    str,
    typer.Option(
        "--base",
        help="Base model: Hub id, local directory, .gguf file, or embedded:gemma-3-270m.",
        rich_help_panel="Models",
    ),
]
Guide = Annotated[
    str,
    typer.Option(
        "--guide",
        help="Guide model: Hub id, local directory, .gguf file, or embedded:smollm2-135m-instruct.",
        rich_help_panel="Models",
    ),
]
Device = Annotated[str, typer.Option(help="cpu, cuda, mps or auto.", rich_help_panel="Models")]
Dtype = Annotated[
    str,
    typer.Option(
        help="float32, bfloat16, float16 or auto (float32 on CPU, bfloat16 on CUDA).",
        rich_help_panel="Models",
    ),
]
TrustRemoteCode = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="Allow a Hub model's own Python code to run (off unless you ask).",
        rich_help_panel="Models",
    ),
]
Tau = Annotated[
    float,
    typer.Option(
        help="Uncertainty threshold: a base position is uncertain when its top-1 "
        "probability is below tau. 0 never intervenes; above 1 always does.",
        rich_help_panel="Decoding",
    ),
]
Tokenization = Annotated[
    str,
    typer.Option(
        help="How each model sees its context. canonical: the canonical tokenization of "
        "prompt + response text at every step, as the methods' reference code sends it; "
        "own: a model's own tokens stay its ids, as transformers generate() does.",
        rich_help_panel="Decoding",
    ),
]
TopK = Annotated[
    int, typer.Option("--k", help="Top-k tokens blended per model.", rich_help_panel="Decoding")
]
Lam = Annotated[
    float,
    typer.Option(
        "--lambda", help="BlendIn's lambda in the adaptive weight.", rich_help_panel="Decoding"
    ),
]
BatchSize = Annotated[
    int, typer.Option(help="Samples decoded together.", rich_help_panel="Decoding")
]
MaxNew = Annotated[
    int | None,
    typer.Option(
        help="Cap on new tokens per response (default: the probe's own).",
        rich_help_panel="Decoding",
    ),
]
Tasks = Annotated[
    str,
    typer.Option(help="Comma-separated probes (names or YAML files).", rich_help_panel="Data"),
]
N = Annotated[
    str,
    typer.Option(
        "--n",
        help="Samples per task, or 'all'. Default: the probe's own (100). Larger than the "
        "dataset is clamped with a warning.",
        rich_help_panel="Data",
    ),
]
Seed = Annotated[
    int | None,
    typer.Option(
        help="Sampling seed (default: each probe's own seed:, 0 for the built-in probes).",
        rich_help_panel="Data",
    ),
]
DataDir = Annotated[
    str | None,
    typer.Option(
        help="Directory with the benchmark files (or set PAIRSCOPE_DATA_DIR); without it "
        "data comes from the Hub.",
        rich_help_panel="Data",
    ),
]
Manifest = Annotated[
    str | None,
    typer.Option(
        help="Reuse the exact samples of an earlier run (its manifest.json or run directory).",
        rich_help_panel="Data",
    ),
]
OutDir = Annotated[
    str | None,
    typer.Option(
        "--out",
        help="Run directory to create (default reports/<command>-<time>).",
        rich_help_panel="Output",
    ),
]
Force = Annotated[
    bool,
    typer.Option("--force", help="Replace an earlier run in --out.", rich_help_panel="Output"),
]
Resume = Annotated[
    str | None,
    typer.Option(
        help="Continue an interrupted run directory. Settings not given again are the "
        "run's own; a setting given with another value is refused.",
        rich_help_panel="Output",
    ),
]
JsonOut = Annotated[
    str | None,
    typer.Option(
        "--json", help="Write the summary JSON to PATH ('-' for stdout).", rich_help_panel="Output"
    ),
]


def _guard(func: F) -> F:
    """Run a command body; turn every failure into one line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _route_warnings()
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except PairscopeError as exc:
            if os.environ.get("PAIRSCOPE_DEBUG"):
                err.print_exception()
            err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
            if exc.hint:
                err.print(f"  {escape(exc.hint)}", highlight=False, soft_wrap=True)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt as exc:
            run_dir = getattr(exc, "run_dir", None)
            if run_dir is None:
                err.print("[yellow]interrupted[/] before decoding started; nothing new was saved.")
            else:
                where = escape(str(run_dir))
                command = getattr(exc, "command", "probe")
                err.print(
                    f"[yellow]interrupted:[/] finished samples are saved in {where}. "
                    f"Continue with: pairscope {command} --resume {where}",
                    highlight=False,
                    soft_wrap=True,
                )
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except MemoryError:
            err.print(
                "[bold red]error:[/] out of memory. Try a smaller --batch-size; the run "
                "is resumable with --resume.",
                soft_wrap=True,
            )
            raise typer.Exit(int(ExitCode.RUNTIME)) from None
        except Exception as exc:  # noqa: BLE001 - the one place unexpected errors are caught
            if os.environ.get("PAIRSCOPE_DEBUG"):
                err.print_exception()
            err.print(
                f"[bold red]runtime failure:[/] {type(exc).__name__}: {escape(str(exc))}",
                highlight=False,
                soft_wrap=True,
            )
            err.print(
                "  Set PAIRSCOPE_DEBUG=1 for the traceback. A run directory stays "
                "resumable with --resume.",
                soft_wrap=True,
            )
            raise typer.Exit(int(ExitCode.RUNTIME)) from None

    return wrapper  # type: ignore[return-value]


# Warnings raised from pairscope's own files are shown (one line each); others are not.
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def _route_warnings() -> None:
    def show(message: Any, category: Any, filename: str, lineno: int, *a: Any, **k: Any) -> None:
        if category.__module__.startswith("pairscope") or filename.startswith(_PACKAGE_DIR):
            err.print(
                f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True
            )

    warnings.showwarning = show


def _given(ctx: typer.Context) -> frozenset[str]:
    """The RunOptions fields set on the command line; on --resume the rest come from the run."""
    given = set()
    for param in ctx.command.params:
        if param.name is None:
            continue
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            given.add(CLI_FIELDS.get(param.name, param.name))
    return frozenset(given)


# -- commands ----------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        out.print(f"pairscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """pairscope: pre-deployment diagnostics for inference-time alignment pairs."""


@app.command()
@_guard
def generate(
    prompt: Annotated[
        str | None, typer.Option(help="The question or prompt (or use --input).")
    ] = None,
    base: Base = "embedded:gemma-3-270m",
    guide: Guide = "embedded:smollm2-135m-instruct",
    method: Annotated[
        str, typer.Option(help="base, guide, nudging, blendin or blend:<alpha>.")
    ] = "nudging",
    tau: Tau = TAU,
    k: TopK = TOP_K,
    lam: Lam = LAMBDA,
    tokenization: Tokenization = "canonical",
    max_new_tokens: Annotated[int, typer.Option(help="New tokens at most.")] = 128,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    plain: Annotated[
        bool,
        typer.Option(
            help="Use PROMPT as the base's completion prompt as is "
            "(default: 'Question: PROMPT\\nAnswer:')."
        ),
    ] = False,
    guide_prompt: Annotated[
        str | None, typer.Option(help="The guide's user turn (default: PROMPT).")
    ] = None,
    system: Annotated[str | None, typer.Option(help="The guide's system message.")] = None,
    guide_prefix: Annotated[
        str, typer.Option(help="Start of the guide's answer, written into its open turn.")
    ] = "",
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="JSONL file, one request a line: base_prompt (used as is), optional "
            "guide_prompt, system, guide_prefix, max_new_tokens, stop.",
        ),
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option("--output", help="With --input: write one JSON result a line here."),
    ] = None,
    batch_size: BatchSize = 8,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: Device = "auto",
    dtype: Dtype = "auto",
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Decode one prompt (or a JSONL file of them) with a pair and show which model wrote
    each piece.

    Example: pairscope generate --prompt "What is 12 * 7?" --method blendin
    """
    from pairscope.decoding.engine import DecodeSettings, Request
    from pairscope.decoding.engine import generate as run_generate
    from pairscope.models import load_pair

    if (prompt is None) == (input_file is None):
        raise InputError("Give exactly one of --prompt and --input.")
    size = batch_size if input_file is not None else 1
    settings = DecodeSettings(
        method=method, tau=tau, top_k=k, lam=lam, batch_size=size, tokenization=tokenization
    )
    settings.strategy()  # validate before loading models
    if max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be >= 1 (got {max_new_tokens}).")
    if input_file is not None:
        requests = read_requests(
            input_file, max_new_tokens, tuple(stop or ()), system, guide_prefix
        )
    else:
        assert prompt is not None
        base_prompt = prompt if plain else f"Question: {prompt}\nAnswer:"
        stops = tuple(stop) if stop else (() if plain else ("\nQuestion:",))
        requests = [
            Request(
                base_prompt, guide_prompt or prompt, stops, max_new_tokens, system, guide_prefix
            )
        ]
    with load_pair(
        base, guide, device=device, dtype=dtype, trust_remote_code=trust_remote_code
    ) as pair:
        results = run_generate(pair, requests, settings)
    if input_file is not None:
        lines = [json.dumps(r.to_dict(with_steps=False), ensure_ascii=False) for r in results]
        if output_file is not None:
            output_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            out.print(f"{len(results)} results written to {output_file}")
        else:
            for line in lines:
                typer.echo(line)
        return
    result = results[0]
    if json_out:
        out.print_json(json.dumps(result.to_dict()))
        return
    colours = {"base": "cyan", "guide": "magenta", "blend": "yellow"}
    from rich.text import Text

    text = Text()
    for step in result.steps:
        text.append(step.text, style=colours.get(step.source, ""))
    out.print(text)
    rate = result.intervention_rate
    out.print(
        f"\n[dim]{result.positions} positions, {result.uncertain} uncertain, "
        f"{result.overridden} overridden; intervention rate "
        f"{'n/a' if rate is None else f'{rate:.3f}'} ({result.ir_kind or 'none'}); "
        f"stop: {result.stop_reason}. "
        "Colours: [cyan]base[/] [magenta]guide[/] [yellow]blend[/][/]"
    )


_REQUEST_KEYS = {"base_prompt", "guide_prompt", "system", "guide_prefix", "max_new_tokens", "stop"}


def read_requests(
    path: Path, max_new: int, stop: tuple[str, ...], system: str | None, prefix: str
) -> list[Any]:
    """Requests from a JSONL file (one object a line); command-line values are defaults."""
    from pairscope.decoding.engine import Request

    if not path.is_file():
        raise InputError(f"No such input file: {path}.")
    requests = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: not JSON ({exc.msg}).") from None
        if not isinstance(row, dict) or not isinstance(row.get("base_prompt"), str):
            raise InputError(f"{path}:{n}: each line needs a string 'base_prompt'.")
        extra = set(row) - _REQUEST_KEYS
        if extra:
            raise InputError(
                f"{path}:{n}: unknown key(s) {', '.join(sorted(extra))}; "
                f"allowed: {', '.join(sorted(_REQUEST_KEYS))}."
            )
        stops = row.get("stop", list(stop))
        stops = [stops] if isinstance(stops, str) else stops
        requests.append(
            Request(
                row["base_prompt"],
                str(row.get("guide_prompt", row["base_prompt"])),
                tuple(str(x) for x in stops),
                int(row.get("max_new_tokens", max_new)),
                row.get("system", system),
                str(row.get("guide_prefix", prefix)),
            )
        )
    if not requests:
        raise InputError(f"{path} holds no requests.")
    return requests


@app.command()
@_guard
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


@app.command()
@_guard
def probe(
    ctx: typer.Context,
    base: Base = "embedded:gemma-3-270m",
    guide: Guide = "embedded:smollm2-135m-instruct",
    tasks: Tasks = "gsm8k,truthfulqa,xstest",
    n: N = "",
    seed: Seed = None,
    tau: Tau = TAU,
    tokenization: Tokenization = "canonical",
    method: Annotated[
        str,
        typer.Option(
            help="Guided method whose interventions are measured: nudging or blendin.",
            rich_help_panel="Decoding",
        ),
    ] = "nudging",
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Intervention-rate threshold for every task (default: each probe's own, 0.20).",
            rich_help_panel="Gate",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="WARN fails the gate too.", rich_help_panel="Gate")
    ] = False,
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
    --fixed always spends the budget and gates on the bootstrap interval instead.

    Exit codes: 0 pass, 1 the pair fails the gate, 2 bad input, 3 runtime failure,
    130 interrupted (resume with --resume RUN_DIR).

    Example: pairscope probe --data-dir ../shared/data --n 100 --out reports/my-pair
    """
    opts = RunOptions.from_cli("probe", ctx.params, _given(ctx))
    _run_command(opts, json_path, markdown)


@app.command()
@_guard
def evaluate(
    ctx: typer.Context,
    base: Base = "embedded:gemma-3-270m",
    guide: Guide = "embedded:smollm2-135m-instruct",
    tasks: Tasks = "gsm8k,truthfulqa,xstest",
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated methods: base, guide, nudging, blendin, blend:<alpha>.",
            rich_help_panel="Decoding",
        ),
    ] = "base,guide,nudging,blendin",
    n: N = "",
    seed: Seed = None,
    tau: Tau = TAU,
    tokenization: Tokenization = "canonical",
    alpha: Annotated[
        str,
        typer.Option(
            help="BlendIn weight: 'auto' (adaptive) or a number in [0, 1].",
            rich_help_panel="Decoding",
        ),
    ] = "auto",
    threshold: Annotated[
        float | None, typer.Option(help="Intervention-rate threshold.", rich_help_panel="Gate")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="WARN fails the gate too.", rich_help_panel="Gate")
    ] = False,
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
    opts = RunOptions.from_cli("evaluate", ctx.params, _given(ctx))
    _run_command(opts, json_path, None)


@app.command()
@_guard
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


@app.command()
@_guard
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


@app.command()
@_guard
def score(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSONL or CSV, one row per response: a 'completion' (or 'response', "
            "'output', ...) and a sample id, the prompt, or the row's own label."
        ),
    ],
    task: Annotated[str, typer.Option(help="gsm8k, truthfulqa or xstest.")],
    data_dir: DataDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON label per line.")] = False,
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
            "--report",
            help="Write the whole result as JSON to PATH: accuracy, interval, XSTest "
            "rates, skipped line numbers, one label per row.",
        ),
    ] = None,
) -> None:
    """Score responses produced elsewhere with pairscope's judge-free scorers."""
    from pairscope.probes import load_probe
    from pairscope.scoring import score_file
    from pairscope.tasks import get_task

    result = score_file(task, file, data_dir, skip_unmatched=skip_unmatched)
    if report_path is not None:
        try:
            report_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
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


@probes_app.command("list")
@_guard
def probes_list() -> None:
    """List the built-in probes."""
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


@probes_app.command("show")
@_guard
def probes_show(
    name: Annotated[str, typer.Argument(help="Probe name or YAML file.")],
    data_dir: DataDir = None,
    n: N = "",
    seed: Seed = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a probe: its definition, dataset size, strata and the sample its seed selects."""
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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
