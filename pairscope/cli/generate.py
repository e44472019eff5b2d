"""`pairscope generate`: decode prompts with one method and show each step's source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pairscope.cli.app import (
    Base,
    BatchSize,
    Device,
    Dtype,
    Guide,
    Lam,
    Protocol,
    Tau,
    Tokenization,
    TopK,
    TrustRemoteCode,
    guard,
    out,
)
from pairscope.defaults import DEFAULT_PROTOCOL, LAMBDA, TAU, TOP_K
from pairscope.errors import InputError


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
            help="base, guide, nudging, blendin or blend:ALPHA (a fixed weight, e.g. blend:0.3)."
        ),
    ] = "nudging",
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
        method=method,
        tau=tau,
        top_k=k,
        lam=lam,
        batch_size=size,
        tokenization=tokenization,
        protocol=protocol,
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
