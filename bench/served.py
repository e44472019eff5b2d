"""Served decoding throughput: pairscope's served stream vs a request-per-token loop.

On one vLLM server (started here for the embedded guide, or ``--url`` of a running
one) it measures new tokens per second of greedy decoding of the same prompts by

1. pairscope ``guide`` decoding through its served stream, all rows in flight at
   once (token-id prompts, concurrent keep-alive requests, top-100 logprobs), each
   request asking for 16 greedy tokens (``PAIRSCOPE_SERVED_LOOKAHEAD``'s default),
2. the same with one token per request (lookahead 1),
3. the same as (1) at batch 1,
4. the reference structure: one sample after another, one request per new token
   whose prompt is the whole text so far as a string (re-tokenised by the server),
   top-100 logprobs, append the top-1 string,
5. NUDGING with the served model as the base and the local embedded guide as the
   guide, with lookahead 16 and with lookahead 1 (paths are cut wherever the
   guide writes a word, so this is what lookahead is worth in guided decoding),

and prints the ratios to (4), and (5) with lookahead 16 to lookahead 1. ``--json``
prints one JSON object.

    .venv/bin/python bench/served.py [--quick] [--json] [--url http://127.0.0.1:8000/v1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pairscope.backends.served import ServedModel
from pairscope.backends.vllm_answers import ordered_choices
from pairscope.backends.vllm_http import Client
from pairscope.backends.vllm_server import serve
from pairscope.decoding.engine import DecodeSettings, Engine, Request
from pairscope.models import EMBEDDED_GUIDE, Pair, _converted_dir, load_model

FALLBACK_QUESTIONS = [
    "Tom has 3 apples and buys 5 more. How many apples does he have?",
    "A train travels 60 miles per hour for 2 hours. How far does it go?",
    "Sara reads 12 pages a day. How many pages does she read in a week?",
    "A shirt costs $20 and is 25% off. What is the sale price?",
    "There are 4 boxes with 6 pens each. How many pens are there?",
    "Ali had 50 dollars and spent 18. How much is left?",
    "A recipe needs 3 eggs per cake. How many eggs for 7 cakes?",
    "A car uses 8 litres per 100 km. How much fuel for 250 km?",
]


def questions(n: int, data_dir: str | None) -> list[str]:
    try:
        from pairscope.probes import build_samples, load_dataset_records, load_probe, select

        spec = load_probe("gsm8k")
        samples = select(build_samples(spec, load_dataset_records(spec, data_dir)), n, 0)
        return [s.guide_user for s in samples]
    except Exception:  # noqa: BLE001 - no offline data: the built-in questions do
        return (FALLBACK_QUESTIONS * (n // len(FALLBACK_QUESTIONS) + 1))[:n]


def pairscope_guide(
    lm: ServedModel, qs: list[str], new_tokens: int, batch: int, lookahead: int = 16
) -> int:
    lm.lookahead = lookahead
    engine = Engine(Pair(base=lm, guide=lm), DecodeSettings(method="guide", batch_size=batch))
    results = engine.run([Request(q, q, (), new_tokens) for q in qs])
    return sum(r.positions for r in results)


def served_nudging(
    lm: ServedModel, guide: Any, qs: list[str], new_tokens: int, batch: int, lookahead: int
) -> int:
    lm.lookahead = lookahead
    engine = Engine(Pair(base=lm, guide=guide), DecodeSettings(method="nudging", batch_size=batch))
    results = engine.run([Request(f"Question: {q}\nAnswer:", q, (), new_tokens) for q in qs])
    return sum(r.positions for r in results)


def request_per_token(lm: ServedModel, qs: list[str], new_tokens: int) -> int:
    """The reference structure: the whole text as the prompt of one request per token."""
    client = Client(lm.client.base_url, timeout=lm.client.timeout)
    eos = {lm.tokenizer.decode([i]) for i in lm.eos_ids}
    steps = 0
    for q in qs:
        text = lm.chat_prompt_text(q)
        for _ in range(new_tokens):
            body = {
                "model": lm.card.id,
                "prompt": text,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": 100,
                "skip_special_tokens": False,
            }
            [choice] = ordered_choices(client.post("/completions", body), 1)
            top = str(choice["logprobs"]["tokens"][0])
            steps += 1
            if top in eos:
                break
            text += top
    client.close()
    return steps


def timed(label: str, fn: Any, *args: Any) -> dict[str, Any]:
    start = time.perf_counter()
    tokens = fn(*args)
    seconds = time.perf_counter() - start
    return {
        "method": label,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="A running server (default: start one).")
    parser.add_argument("--quick", action="store_true", help="Fewer tokens: about a minute.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("PAIRSCOPE_DATA_DIR"))
    parser.add_argument("--out", default=None, help="Also write the JSON result to this file.")
    args = parser.parse_args()
    new_tokens = args.new_tokens or (12 if args.quick else 32)
    qs = questions(args.batch, args.data_dir)

    with ExitStack() as stack:
        start_seconds = None
        url = args.url
        local_guide = load_model(EMBEDDED_GUIDE, device="cpu")
        if url is None:
            guide_dir = _converted_dir(str(local_guide.source.sha256))
            log = Path(tempfile.mkdtemp(prefix="pairscope-vllm-")) / "server.log"
            server = stack.enter_context(serve(guide_dir, log=log))
            url, start_seconds = server.url, server.start_seconds
        lm = load_model(f"vllm:{url}")
        assert isinstance(lm, ServedModel)
        pairscope_guide(lm, qs[:2], 2, 2)  # warm-up: connections, prefix cache, tokenizer tables
        many = f"pairscope@{args.batch}"
        rows = [
            timed(many, pairscope_guide, lm, qs, new_tokens, args.batch),
            timed(f"{many}_lookahead1", pairscope_guide, lm, qs, new_tokens, args.batch, 1),
            timed("pairscope@1", pairscope_guide, lm, qs, new_tokens, 1),
            timed("request_per_token", request_per_token, lm, qs, new_tokens),
        ]
        nudging = [
            timed(
                f"nudging@{args.batch}_lookahead{ahead}",
                served_nudging,
                lm,
                local_guide,
                qs,
                new_tokens,
                args.batch,
                ahead,
            )
            for ahead in (16, 1)
        ]
        lm.close()
    rate = {r["method"]: r["tokens_per_second"] for r in rows}
    ratios = {
        f"{r['method']}_vs_request_per_token": round(
            r["tokens_per_second"] / rate["request_per_token"], 3
        )
        for r in rows
        if r["method"] != "request_per_token"
    }
    ratios["nudging_lookahead16_vs_lookahead1"] = round(
        nudging[0]["tokens_per_second"] / nudging[1]["tokens_per_second"], 3
    )
    rows += nudging
    result = {
        "url": url,
        "server_start_seconds": None if start_seconds is None else round(start_seconds, 1),
        "samples": len(qs),
        "new_tokens": new_tokens,
        "rows": rows,
        "ratios": ratios,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    if start_seconds is not None:
        print(f"vllm serve ready in {start_seconds:.1f} s")
    for r in rows:
        print(
            f"{r['method']:<24} {r['tokens_per_second']:>8.1f} tok/s  "
            f"({r['tokens']} tokens, {r['seconds']} s)"
        )
    for key, value in ratios.items():
        print(f"{key:<48} {value:.2f}x")


if __name__ == "__main__":
    main()
