"""Guided decoding throughput, side by side in one run (issue: performance).

Measures new tokens per second and peak memory on the same GSM8K probe prompts for

1. transformers ``generate()`` of the base model alone (the reference ceiling),
2. pairscope ``base``, 3. pairscope ``nudging``, 4. pairscope ``blendin``,
   (pairscope computes the prompt prefix a batch shares, the few-shot block, once;
   ``base_unshared`` and ``nudging_unshared`` run without that, to show what it is
   worth: ``generate()`` has no such sharing),
5. a naive per-token loop that re-runs the whole prefix through both models at
   every step and blends their top-100 lists (the structure of the reference
   implementations, which send the whole prefix to a server for every token),

at batch sizes 1 and 16, and prints the table and the ratios. ``--json`` prints one
JSON object with a ``ratios`` field. ``--quick`` (batch 16, the main methods, 4 naive
tokens) takes a few minutes and reports the full run's batch-16 ratios.

    python bench/decode.py [--quick] [--json] [--stand-in] [--device cuda --dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from standin import use_stand_ins  # bench/ is the script's own directory

from pairscope.decoding.engine import DecodeSettings, Engine, Request
from pairscope.methods.blendin import Blend
from pairscope.models import Pair, load_pair
from pairscope.probes import build_samples, load_dataset_records, load_probe, select
from pairscope.runtime.scores import Scores, merge_topk
from pairscope.runtime.vocab import END, TokenText


class PeakMemory:
    """Peak resident memory (CPU) or peak allocated memory (CUDA) during a block, in MiB."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak = 0.0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.01)

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self.peak = self._rss()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())


def left_pad(rows: list[list[int]], pad: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def hf_generate(pair: Pair, reqs: list[Request], new_tokens: int) -> int:
    """transformers' own batched greedy decoding of the base alone."""
    lm = pair.base
    pad = lm.tokenizer.pad_token_id or 0
    ids, mask = left_pad([lm.encode_completion_prompt(r.base_prompt) for r in reqs], pad, lm.device)
    with torch.inference_mode():
        out = lm.model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )
    return int((out.shape[1] - ids.shape[1]) * len(reqs))


def pairscope_method(
    method: str, share_prefix: bool = True, tokenization: str = "canonical", one_pass: bool = True
) -> Callable[[Pair, list[Request], int], int]:
    def run(pair: Pair, reqs: list[Request], new_tokens: int) -> int:
        settings = DecodeSettings(
            method=method,
            batch_size=len(reqs),
            share_prefix=share_prefix,
            tokenization=tokenization,
        )
        engine = Engine(pair, settings)
        if not one_pass:  # NUDGING's lockstep word loop instead of the one-pass schedule
            engine.strategy.schedule = lambda engine: None  # type: ignore[method-assign]
        return sum(r.positions for r in engine.run(reqs))

    return run


def floor_ids(
    pair: Pair, reqs: list[Request], new_tokens: int, guide: bool, normalise: bool
) -> list[list[int]]:
    """A floor, not a decoder: the base's passes (and, with ``guide``, one guide pass per
    step) on pairscope's own streams and prompts, each model feeding back its own argmax,
    with no decision, no text and no bookkeeping. ``normalise`` adds the base's exact
    log-normaliser, which every step needs for the top-1 probability it records. A loop
    that reads the guide at every step cannot beat the matching floor. Returns the ids
    the base appended to each row (its greedy path)."""
    engine = Engine(pair, DecodeSettings(method="blendin", batch_size=len(reqs)))
    rows = [engine._new_row(i, r) for i, r in enumerate(reqs)]
    views = [(engine.driver, [list(r.driver.ids) for r in rows])]
    if guide:
        assert engine.guide is not None
        views.append((engine.guide, [list(engine.guide_context(r).ids) for r in rows]))
    lengths = [len(ids) for ids in views[0][1]]
    for view, ids in views:
        view.open(ids, 1, True)
    with torch.inference_mode():
        for _ in range(new_tokens):
            for n, (view, ids) in enumerate(views):
                assert view.stream is not None
                logits = view.stream._advance(dict(enumerate(ids)), 1)[:, -1]
                if normalise and n == 0:
                    best = Scores.of_logits(logits).top1()[1]
                else:
                    best = [int(t) for t in logits.argmax(-1).tolist()]
                for row, token in zip(ids, best):
                    row.append(token)
    return [ids[n:] for ids, n in zip(views[0][1], lengths)]


def passes_only(guide: bool, normalise: bool) -> Callable[[Pair, list[Request], int], int]:
    """:func:`floor_ids` as a benchmark method (its count of base positions)."""

    def run(pair: Pair, reqs: list[Request], new_tokens: int) -> int:
        return sum(len(ids) for ids in floor_ids(pair, reqs, new_tokens, guide, normalise))

    return run


def last_logprobs(lm: Any, rows: list[list[int]]) -> torch.Tensor:
    """Next-token logprobs [rows, vocab] from one uncached pass over left-padded rows."""
    ids, mask = left_pad(rows, lm.tokenizer.pad_token_id or 0, lm.device)
    with torch.inference_mode():
        out = lm.model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
    return torch.log_softmax(out.logits[:, -1].float(), -1)


def naive_blend(pair: Pair, reqs: list[Request], new_tokens: int) -> int:
    """Per token: the whole prefix through both models, top-100 lists, BlendIn's pick."""
    base, guide = pair.base, pair.guide
    bvocab = TokenText(base.tokenizer, base.eos_ids, 0)
    gvocab = TokenText(guide.tokenizer, guide.eos_ids, 1)
    blend = Blend(tau=0.4)
    texts = ["" for _ in reqs]
    done = [False for _ in reqs]
    steps = 0
    for _ in range(new_tokens):
        live = [i for i, d in enumerate(done) if not d]
        if not live:
            break
        brows = [
            base.encode_completion_prompt(reqs[i].base_prompt)
            + base.tokenizer.encode(texts[i], add_special_tokens=False)
            for i in live
        ]
        grows = [
            guide.encode_chat_prompt(reqs[i].guide_user)
            + guide.tokenizer.encode(texts[i], add_special_tokens=False)
            for i in live
        ]
        blog = last_logprobs(base, brows)
        glog = last_logprobs(guide, grows)
        for j, i in enumerate(live):
            bv, bi = torch.topk(blog[j], 100)
            gv, gi = torch.topk(glog[j], 100)
            btop = merge_topk(bi.tolist(), bv.exp().tolist(), [bvocab.key(t) for t in bi.tolist()])
            gtop = merge_topk(gi.tolist(), gv.exp().tolist(), [gvocab.key(t) for t in gi.tolist()])
            if btop.top_prob >= blend.tau:
                key = btop.top_key
            else:
                key = blend.decide(btop, gtop, {}).key
            steps += 1
            if key == END:
                done[i] = True
            elif isinstance(key, str):
                texts[i] += key
    return steps


METHODS: dict[str, Callable[[Pair, list[Request], int], int]] = {
    "generate": hf_generate,
    "base": pairscope_method("base"),
    "base_own": pairscope_method("base", tokenization="own"),
    "base_unshared": pairscope_method("base", share_prefix=False),
    "nudging": pairscope_method("nudging"),
    "nudging_own": pairscope_method("nudging", tokenization="own"),
    "nudging_unshared": pairscope_method("nudging", share_prefix=False),
    "nudging_lockstep": pairscope_method("nudging", one_pass=False),
    "blendin": pairscope_method("blendin"),
    "blendin_own": pairscope_method("blendin", tokenization="own"),
    "naive": naive_blend,
    # Floors (see passes_only): the passes alone, and with the normaliser the trace needs.
    "floor_base": passes_only(guide=False, normalise=False),
    "floor_base_norm": passes_only(guide=False, normalise=True),
    "floor_both_norm": passes_only(guide=True, normalise=True),
}


def prompts(data_dir: str | None, n: int, new_tokens: int = 0) -> list[Request]:
    """The benchmark's first ``n`` GSM8K probe prompts, each to decode ``new_tokens``."""
    spec = load_probe("gsm8k")
    samples = select(build_samples(spec, load_dataset_records(spec, data_dir)), n, 0)
    # No stop strings: every method decodes the same budget of new tokens.
    return [Request(s.base_prompt, s.guide_user, (), new_tokens) for s in samples]


def measure(
    pair: Pair, method: str, reqs: list[Request], new_tokens: int, device: str
) -> dict[str, Any]:
    reqs = [Request(r.base_prompt, r.guide_user, (), new_tokens) for r in reqs]
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        tokens = METHODS[method](pair, reqs, new_tokens)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {
        "method": method,
        "batch": len(reqs),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens / seconds, 2),
        "peak_memory_mib": round(mem.peak, 1),
    }


QUICK_METHODS = "generate,base,nudging,blendin,naive,floor_both_norm"

# (numerator, denominator) method pairs whose rate ratio the benchmark reports.
RATIOS = [
    ("base", "generate"),
    ("base_unshared", "generate"),
    ("nudging", "generate"),
    ("nudging_unshared", "generate"),
    ("nudging_lockstep", "generate"),
    # NUDGING's one-pass schedule against its lockstep word loop.
    ("nudging", "nudging_lockstep"),
    ("blendin", "generate"),
    # What the canonical tokenization policy costs against the own policy.
    ("base", "base_own"),
    ("nudging", "nudging_own"),
    ("blendin", "blendin_own"),
    ("blendin", "naive"),
    # Floors against generate(): the best any loop of that shape could reach.
    ("floor_base", "generate"),
    ("floor_base_norm", "generate"),
    ("floor_both_norm", "generate"),
    # How close each method comes to its floor.
    ("base", "floor_base_norm"),
    ("blendin", "floor_both_norm"),
    ("nudging", "floor_both_norm"),
]


def median_rates(rows: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    """Median tokens/s per (method, batch) over the repeats."""
    runs: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        runs.setdefault((r["method"], r["batch"]), []).append(r["tokens_per_second"])
    return {key: statistics.median(values) for key, values in runs.items()}


def ratio_label(num: str, den: str) -> str:
    if den == f"{num}_own":
        return f"{num}_canonical_vs_own"
    return f"{num}_vs_{den}"


def ratio_table(rows: list[dict[str, Any]], batches: list[int]) -> dict[str, float]:
    """Every ratio of :data:`RATIOS` whose two methods were measured: the median over
    repeats of the ratio within one repeat (the two measured back to back, so a machine
    that drifts between repeats moves both)."""
    rate = {(r["method"], r["batch"], r["repeat"]): r["tokens_per_second"] for r in rows}
    repeats = sorted({r["repeat"] for r in rows})
    ratios = {}
    for batch in batches:
        for num, den in RATIOS:
            pairs = [
                rate[(num, batch, i)] / rate[(den, batch, i)]
                for i in repeats
                if (num, batch, i) in rate and (den, batch, i) in rate
            ]
            if pairs:
                ratios[f"{ratio_label(num, den)}@{batch}"] = round(statistics.median(pairs), 3)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Batch 16, the main methods, 4 naive tokens: a few minutes. The ratios are the "
        "full run's at batch 16 (the same 64 tokens for every method; the naive loop's "
        "rate does not depend on its length, since it recomputes everything per token).",
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument(
        "--stand-in",
        action="store_true",
        help="Decode with 2-layer, width-64 random stand-ins of the embedded pair (its own "
        "tokenizers and vocabularies; bench/standin.py): the cheap-forward regime of a GPU.",
    )
    parser.add_argument("--base", default="embedded:gemma-3-270m")
    parser.add_argument("--guide", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batches", default=None, help="Comma-separated (default 1,16).")
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--naive-tokens", type=int, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("PAIRSCOPE_DATA_DIR"))
    parser.add_argument("--out", default=None, help="Also write the JSON result to this file.")
    parser.add_argument(
        "--methods",
        default=None,
        help="Comma-separated subset of: " + ", ".join(METHODS) + " (default: all; with "
        "--quick: " + QUICK_METHODS + ").",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="Measure each method this many times, round-robin, and report the median "
        "rate (run-to-run noise on a shared CPU is about 10 %%).",
    )
    args = parser.parse_args()
    chosen = args.methods or (QUICK_METHODS if args.quick else ",".join(METHODS))
    methods = [m.strip() for m in chosen.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or args.repeats < 1:
        parser.error(f"unknown method(s) {bad}" if bad else "--repeats must be >= 1")

    new_tokens = args.new_tokens or 64
    naive_tokens = args.naive_tokens or (4 if args.quick else 16)
    batches = [int(b) for b in (args.batches or ("16" if args.quick else "1,16")).split(",")]
    scratch = use_stand_ins(args)
    t0 = time.perf_counter()
    pair = load_pair(args.base, args.guide, device=args.device, dtype=args.dtype)
    load_seconds = time.perf_counter() - t0
    all_reqs = prompts(args.data_dir, max(batches))
    # Warm-up: first calls pay one-off costs (allocator, kernels) that are not throughput.
    measure(pair, "base", all_reqs[:2], 4, args.device)
    rows = []
    for batch in batches:
        for repeat in range(args.repeats):
            for method in methods:
                budget = naive_tokens if method == "naive" else new_tokens
                row = measure(pair, method, all_reqs[:batch], budget, args.device)
                rows.append({**row, "repeat": repeat})
                if not args.json:
                    print(
                        f"batch {batch:>2}  {method:<16} {row['tokens_per_second']:>8.1f} tok/s  "
                        f"peak {row['peak_memory_mib']:>8.0f} MiB  "
                        f"({row['tokens']} tokens, {row['seconds']} s)",
                        flush=True,
                    )
    ratios = ratio_table(rows, batches)
    result = {
        "device": args.device,
        "dtype": args.dtype,
        "base": "stand-in of embedded:gemma-3-270m" if args.stand_in else args.base,
        "guide": "stand-in of embedded:smollm2-135m-instruct" if args.stand_in else args.guide,
        "new_tokens": new_tokens,
        "naive_tokens": naive_tokens,
        "load_seconds": round(load_seconds, 2),
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "rows": rows,
        "median_tokens_per_second": {
            f"{m}@{b}": round(v, 2) for (m, b), v in median_rates(rows).items()
        },
        "ratios": ratios,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"\nload {load_seconds:.1f} s (both models)")
        for key, value in result["median_tokens_per_second"].items():
            print(f"median {key:<30} {value:>8.1f} tok/s")
        for key, value in ratios.items():
            print(f"{key:<37} {value:.3f}")
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    main()
