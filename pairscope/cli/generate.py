"""`pairscope generate`: decode prompts with one method and show each step's source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

import pairscope.methods as registry
from pairscope.cli.app import (
    Base,
    BaseRevision,
    BatchSize,
    Device,
    Dtype,
    Guide,
    GuideRevision,
    Json,
    Lam,
    Protocol,
    Tau,
    Tokenization,
    TopK,
    TrustRemoteCode,
    guard,
    out,
)
from pairscope.defaults import BATCH_SIZE, DEFAULT_PROTOCOL, LAMBDA, TAU, TOP_K
from pairscope.errors import InputError, Interrupted
from pairscope.pipeline.requests_file import ResultsFile, read_requests, result_line


@guard
def generate(
    prompt: Annotated[
        str | None, typer.Option(help="The question or prompt (or use --input).")
    ] = None,
    base: Base = "embedded:gemma-3-270m",
    guide: Guide = "embedded:smollm2-135m-instruct",
    method: Annotated[
        str,
        typer.Option(
            metavar="METHOD",
            help=f"{registry.choices_text()}.",
        ),
    ] = registry.gated()[0],
    tau: Tau = TAU,
    k: TopK = TOP_K,
    lam: Lam = LAMBDA,
    tokenization: Tokenization = "canonical",
    protocol: Protocol = DEFAULT_PROTOCOL,
    max_new_tokens: Annotated[int, typer.Option(help="New tokens at most.")] = 128,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    plain: Annotated[
        bool,
        typer.Option(
            "--plain",
            help="Use PROMPT as the base's completion prompt as is "
            "(default: 'Question: PROMPT\\nAnswer:').",
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
            "guide_prompt, system, guide_prefix, max_new_tokens, stop. Other keys (an "
            "'id', say) are copied to the row's result unchanged. Every line is checked "
            "before the models load.",
        ),
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="With --input: write one JSON result a line here, each as soon as it "
            "finishes, with 'input_line' (its request's line number); the finished file is "
            "in input order. Run the same command again to continue an interrupted file: "
            "finished rows are kept.",
        ),
    ] = None,
    batch_size: BatchSize = BATCH_SIZE,
    json_out: Json = False,
    device: Device = "auto",
    dtype: Dtype = "auto",
    trust_remote_code: TrustRemoteCode = False,
    base_revision: BaseRevision = None,
    guide_revision: GuideRevision = None,
) -> None:
    """Decode one prompt (or a JSONL file of them) with a pair and show which model wrote
    each piece.

    Exit codes: 0 done, 2 bad input, 3 runtime failure, 130 interrupted.

    Example: pairscope generate --prompt "What is 12 * 7?" --method blendin
    """
    from pairscope.decoding.engine import DecodeSettings, Request
    from pairscope.decoding.engine import generate as run_generate
    from pairscope.models import load_pair
    from pairscope.pipeline.config import check_decoding

    if (prompt is None) == (input_file is None):
        raise InputError("Give exactly one of --prompt and --input.")
    size = batch_size if input_file is not None else 1
    check_decoding(tau, k, lam, None, max_new_tokens, batch_size)
    settings = DecodeSettings(
        method=method,
        tau=tau,
        top_k=k,
        lam=lam,
        batch_size=size,
        tokenization=tokenization,
        protocol=protocol,
    )
    settings.strategy()  # validate before loading models
    load: dict[str, Any] = {
        "device": device,
        "dtype": dtype,
        "trust_remote_code": trust_remote_code,
        "base_revision": base_revision,
        "guide_revision": guide_revision,
    }
    if input_file is not None:
        rows = read_requests(input_file, max_new_tokens, tuple(stop or ()), system, guide_prefix)
        _generate_rows(rows, output_file, settings, base, guide, load)
        return
    assert prompt is not None
    base_prompt = prompt if plain else f"Question: {prompt}\nAnswer:"
    stops = tuple(stop) if stop else (() if plain else ("\nQuestion:",))
    requests = [
        Request(base_prompt, guide_prompt or prompt, stops, max_new_tokens, system, guide_prefix)
    ]
    with load_pair(base, guide, **load) as pair:
        results = run_generate(pair, requests, settings)
    result = results[0]
    if json_out:
        out.print_json(json.dumps(result.to_dict()))
        return
    from pairscope.report.console import marked_text, source_legend

    # Colour is lost in a pipe, a file or a CI log: there the text itself marks the writers.
    plain = not out.is_terminal
    out.print(marked_text(result.steps, plain=plain))
    rate = result.intervention_rate
    out.print(
        f"\n[dim]{result.positions} positions, {result.uncertain} uncertain, "
        f"{result.overridden} overridden; intervention rate "
        f"{'n/a' if rate is None else f'{rate:.3f}'} ({result.ir_kind or 'none'}); "
        f"stop: {result.stop_reason}. {source_legend(plain=plain)}[/]"
    )


def _generate_rows(
    rows: list[Any],
    output_file: Path | None,
    settings: Any,
    base: str,
    guide: str,
    load: dict[str, Any],
) -> None:
    """Decode the rows not yet in ``output_file``, writing each result as it finishes
    (``load``: the keyword arguments of ``load_pair``)."""
    from pairscope.decoding.engine import generate as run_generate
    from pairscope.models import load_pair
    from pairscope.paths import check_file_writable, prepare

    check_file_writable(output_file, "--output")
    results = ResultsFile(prepare(output_file), rows, settings.method) if output_file else None
    todo = [row for row in rows if results is None or row.line not in results.done]
    printer = _InOrder()

    def on_result(index: int, result: Any) -> None:
        line = result_line(todo[index], result)
        if results is not None:
            results.append(line)
        else:
            printer.add(index, line)

    if todo:
        with load_pair(base, guide, **load) as pair:
            try:
                run_generate(pair, [row.request for row in todo], settings, on_result)
            except KeyboardInterrupt:
                if results is None:
                    raise
                raise Interrupted(
                    f"finished rows are saved in {output_file}; run the same command "
                    "again to decode the rest."
                ) from None
    if results is not None:
        results.finish()
        kept = len(rows) - len(todo)
        note = f" ({kept} kept from an earlier run)" if kept else ""
        where = escape(str(output_file))
        out.print(f"{len(rows)} results written to {where}{note}", soft_wrap=True, highlight=False)


class _InOrder:
    """Print results to stdout in input order, each as soon as the rows before it are out."""

    def __init__(self) -> None:
        self.pending: dict[int, dict[str, Any]] = {}
        self.next = 0

    def add(self, index: int, line: dict[str, Any]) -> None:
        self.pending[index] = line
        while self.next in self.pending:
            typer.echo(json.dumps(self.pending.pop(self.next), ensure_ascii=False))
            self.next += 1
