"""The command line's frame: the Typer app, the options shared by commands, and the one
place errors become a message and an exit code.

parse -> options -> one core call -> Rich output -> exit code. Heavy imports (torch,
transformers) happen inside command bodies so `--help` is instant. Errors are caught
in one place (:func:`guard`): a PairscopeError prints one line and its next step and
exits with its code; anything else is a runtime failure (exit 3) with the traceback
shown only when PAIRSCOPE_DEBUG=1. The commands live in the sibling modules.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from pairscope import __version__
from pairscope.cli.vocabulary import Group
from pairscope.defaults import BATCH_SIZE
from pairscope.errors import ExitCode, PairscopeError
from pairscope.pipeline.spec import CLI_FIELDS

app = typer.Typer(
    name="pairscope",
    help=(
        "Will this guide model steer this base model well at inference time, and how sure "
        "are we? Probes intervention rate, vocabulary overlap and calibration on small "
        "seeded benchmark samples and gates CI on the answer.\n\n"
        "Exit codes: 0 pass, 1 the pair fails the gate, 2 bad input, 3 runtime failure, "
        "4 rank: a race undecided at its budget, 130 interrupted."
    ),
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
probes_app = typer.Typer(
    help="List and inspect the probe sets.\n\nExit codes: 0 done, 2 bad input, 3 runtime failure.",
    cls=Group,
    no_args_is_help=True,
)
app.add_typer(probes_app, name="probes")

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

# -- shared options, declared once ---------------------------------------------------------

Base = Annotated[
    str,
    typer.Option(
        "--base",
        metavar="MODEL",
        help="Base model: Hub id, local directory, .gguf file, or embedded:gemma-3-270m.",
        rich_help_panel="Models",
    ),
]
Guide = Annotated[
    str,
    typer.Option(
        "--guide",
        metavar="MODEL",
        help="Guide model: Hub id, local directory, .gguf file, or an embedded guide: "
        "embedded:smollm2-135m-instruct, embedded:qwen2.5-coder-0.5b-instruct (optional "
        "extra qwen).",
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
JudgeModel = Annotated[
    str | None,
    typer.Option(
        "--judge",
        help="Also classify XSTest responses with this model judge (Hub id, local "
        "directory, .gguf file, vllm:URL or embedded:NAME) and show it beside the rules. "
        "Greedy; verdicts are cached on disk.",
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
Protocol = Annotated[
    str,
    typer.Option(
        help="NUDGING's protocol. position: a decision at each base position, the rate "
        "rounds / base-written tokens; reference: its authors' loop over 16-token "
        "completions, the rate rounds / re-encoded base completion tokens (the rate the "
        "~20 % threshold was stated in). See docs/methods.md.",
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
    int,
    typer.Option(
        help=f"Samples decoded together (default {BATCH_SIZE}).", rich_help_panel="Decoding"
    ),
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
    typer.Option(
        metavar="TASKS",
        help="Comma-separated probes (names or YAML files).",
        rich_help_panel="Data",
    ),
]
N = Annotated[
    str,
    typer.Option(
        "-n",
        "--limit",
        metavar="N",
        help="Samples per task, or 'all'. Default: the probe's own (100). Larger than the "
        "dataset is clamped with a warning.",
        rich_help_panel="Data",
    ),
]
Seed = Annotated[
    int | None,
    typer.Option(
        help="Sampling seed (default: the probe file's `seed:` entry; 0 for the built-in probes).",
        rich_help_panel="Data",
    ),
]
DataDir = Annotated[
    str | None,
    typer.Option(
        metavar="DIR",
        help="Directory with the benchmark files (or set PAIRSCOPE_DATA_DIR); without it "
        "data comes from the Hub.",
        rich_help_panel="Data",
    ),
]
Manifest = Annotated[
    str | None,
    typer.Option(
        metavar="PATH",
        help="Reuse the exact samples of an earlier run (its manifest.json or run directory).",
        rich_help_panel="Data",
    ),
]
OutDir = Annotated[
    str | None,
    typer.Option(
        "--out",
        metavar="DIR",
        help="Run directory to create (default reports/COMMAND-TIME).",
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
        metavar="DIR",
        help="Continue an interrupted run directory. Settings not given again are the "
        "run's own; a setting given with another value is refused.",
        rich_help_panel="Output",
    ),
]
Json = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the result as JSON on stdout, and nothing else there.",
        rich_help_panel="Output",
    ),
]
JsonOut = Annotated[
    Path | None,
    typer.Option(
        "--json-out",
        metavar="PATH",
        help="Write the result as JSON to PATH.",
        rich_help_panel="Output",
    ),
]
Junit = Annotated[
    Path | None,
    typer.Option(
        "--junit",
        metavar="PATH",
        help="Write a JUnit XML report to PATH: one test case per task and method; a FAIL "
        "verdict is a failure, WARN or no verdict is skipped, a run that could not finish "
        "is an error.",
        rich_help_panel="Output",
    ),
]
Markdown = Annotated[
    Path | None,
    typer.Option(
        metavar="PATH",
        help="Write a Markdown summary table to PATH. It is also appended to "
        "$GITHUB_STEP_SUMMARY when that is set (a GitHub Actions job summary).",
        rich_help_panel="Output",
    ),
]
BaseRevision = Annotated[
    str | None,
    typer.Option(
        metavar="REV",
        help="Hub revision of --base (branch, tag or commit); recorded in config.json. "
        "A local directory or file has none.",
        rich_help_panel="Models",
    ),
]
GuideRevision = Annotated[
    str | None,
    typer.Option(
        metavar="REV",
        help="Hub revision of --guide (branch, tag or commit); recorded in config.json.",
        rich_help_panel="Models",
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option(
        help="Intervention-rate threshold for every task (default: each probe's own, 0.20).",
        rich_help_panel="Gate",
    ),
]
Strict = Annotated[
    bool, typer.Option("--strict", help="WARN fails the gate too.", rich_help_panel="Gate")
]


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _sigterm_as_interrupt() -> Any:
    """Make SIGTERM (a scheduler's preemption, `kill`, a CI job's timeout) stop a command
    as Ctrl-C does: finished work saved, servers it started stopped, exit 130. Returns
    the handler it replaced (None where none can be set: not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _terminated)


def guard(func: F) -> F:
    """Run a command body; turn every failure into one line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _route_warnings()
        previous = _sigterm_as_interrupt()
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
            message = getattr(exc, "message", None)
            if message:
                err.print(f"[yellow]interrupted:[/] {escape(message)}", soft_wrap=True)
            elif run_dir is None:
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
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


# Warnings raised from pairscope's own files are shown (one line each); others are not.
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def _route_warnings() -> None:
    def show(message: Any, category: Any, filename: str, lineno: int, *a: Any, **k: Any) -> None:
        if category.__module__.startswith("pairscope") or filename.startswith(_PACKAGE_DIR):
            err.print(
                f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True
            )

    warnings.showwarning = show


def given_fields(ctx: typer.Context) -> frozenset[str]:
    """The RunSpec fields set on the command line; on --resume the rest come from the run."""
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
