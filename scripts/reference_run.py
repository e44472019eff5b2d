"""Run the methods' reference code on the embedded pair and record its outputs.

The recorded outputs (``tests/fixtures/reference/``) are the oracle that
``tests/real/test_reference_outputs.py`` compares pairscope against: NUDGING under
``--protocol reference`` and BlendIn. Regenerating them is this script, not CI.

What it runs: ``completion_with_nudging`` from the BlendIn authors' ``utils.py``
(github.com/DecayingSeart/BlendIn, commit bd383cd), with blending off (NUDGING) and on
with the adaptive weight (BlendIn), τ = 0.4, 16-token completions, 128 tokens in all,
greedy, exactly as that code calls an OpenAI-compatible completions API. The servers
are two real vLLM CPU servers (``vllm serve``, ``--dtype float32 --max-logprobs 100``)
serving the embedded base and guide from the converted-model cache. The reference
source is read from a checkout given at run time; nothing of it is copied here.

Two things are put in place around the reference code, and only these:

* its length counter (tiktoken's gpt-3.5 encoding, which cannot be downloaded here) is
  the base tokenizer (``encode(text)`` without special tokens);
* its prompt builder (``apply_instruct_template``) returns pairscope's prompt strings for
  the sample (the base's completion prompt, the guide's chat prompt), so pairscope can
  be fed the very same strings. The requests go through a small HTTP client with the
  attributes the code reads (``choices[0].text``, ``.finish_reason``,
  ``.logprobs.tokens``, ``.logprobs.top_logprobs``).

Prompts: the probes' own seeded selection (``gsm8k``, ``truthfulqa``, ``xstest``), the
first ``--n`` of each, leaving out GSM8K's first 12 test questions. Each record holds
the two prompt strings, the text, the rounds (NUDGING) or uncertain positions
(BlendIn), the base tokens the code counts, and its intervention rate.

    git clone https://github.com/DecayingSeart/BlendIn BLENDIN
    git -C BLENDIN checkout bd383cd
    PAIRSCOPE_VLLM_VENV=.venv-vllm nice python scripts/reference_run.py \\
        --reference BLENDIN --data-dir DATA --n 24 [--workers 12]

A rerun keeps what is recorded (``METHOD.jsonl`` and a cut-short run's
``METHOD.partial.jsonl``) and runs only the prompts missing from it, so ``--n`` can be
raised later. Requests run ``--workers`` at a time (the server batches them); vLLM on a CPU is not
guaranteed to give bit-identical logprobs across batch compositions, so a rerun may
differ where a probability sits within float error of τ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import types
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "tests" / "fixtures" / "reference"
REFERENCE_COMMIT = "bd383cd"
TAU, COMPLETION_TOKENS, MAX_TOKENS = 0.4, 16, 128
GSM8K_SKIPPED = 12  # GSM8K's first test questions (measured elsewhere) are left out
TASKS = ("gsm8k", "truthfulqa", "xstest")


class _Client:
    """The slice of the OpenAI client the reference code calls: ``completions.create``.

    A model name ``"base::KEY"`` is sent as ``"base"``; the key only selects the
    prompt strings (so concurrent samples do not share state)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.completions = self

    def create(self, *, model: str, prompt: str, **kwargs: Any) -> Any:
        body = {"model": model.split("::")[0], "prompt": prompt, **kwargs}
        req = urllib.request.Request(
            self.url + "/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=600) as resp:
            answer = json.loads(resp.read())
        choice = answer["choices"][0]
        lp = choice.get("logprobs")
        logprobs = None
        if lp is not None:
            logprobs = types.SimpleNamespace(tokens=lp["tokens"], top_logprobs=lp["top_logprobs"])
        return types.SimpleNamespace(
            choices=[
                types.SimpleNamespace(
                    text=choice["text"], finish_reason=choice["finish_reason"], logprobs=logprobs
                )
            ]
        )


class _Counter:
    """The reference's tiktoken encoding, replaced by the base tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.lock = threading.Lock()

    def encode(self, text: str, disallowed_special: Any = ()) -> list[int]:
        with self.lock:
            return list(self.tokenizer.encode(text, add_special_tokens=False))


def load_reference(checkout: Path, counter: _Counter, prompts: dict[str, str]) -> Any:
    """The reference ``utils`` module, with its length counter and prompt builder set."""
    fake = types.ModuleType("tiktoken")
    fake.encoding_for_model = lambda name: counter  # type: ignore[attr-defined]
    sys.modules["tiktoken"] = fake
    sys.path.insert(0, str(checkout))
    import utils  # the reference code, from the checkout

    utils.apply_instruct_template = lambda model_name, *a, **k: prompts[model_name]
    return utils


def selected(data_dir: str | None, n: int) -> list[tuple[str, int, Any]]:
    """(task, order, sample): the first ``n`` samples of each probe's own selection."""
    from pairscope.probes.data import load_dataset_records
    from pairscope.probes.schema import load_probe
    from pairscope.probes.selection import build_samples, choose

    out = []
    for task in TASKS:
        spec = load_probe(task)
        samples = build_samples(spec, load_dataset_records(spec, data_dir))
        skipped = {s.id for s in samples[:GSM8K_SKIPPED]} if task == "gsm8k" else set()
        chosen, _ = choose(spec, samples, min(len(samples), n + len(skipped)))
        chosen = [s for s in chosen if s.id not in skipped][:n]
        out += [(task, order, s) for order, s in enumerate(chosen)]
    return out


def prompt_fields(task: str, order: int, s: Any) -> dict[str, Any]:
    return {
        "task": task,
        "order": order,
        "sample_id": s.id,
        "base_prompt": s.base_prompt,
        "guide_user": s.guide_user,
        "guide_system": s.guide_system,
        "guide_prefix": s.guide_prefix,
    }


def requests_of(data_dir: str | None, n: int) -> list[dict[str, Any]]:
    """The selected samples' prompt strings (the guide's: its chat template's text)."""
    from pairscope.models import load_pair

    pair = load_pair(device="cpu", dtype="float32")
    out = []
    for task, order, s in selected(data_dir, n):
        item = prompt_fields(task, order, s)
        guide = pair.guide.chat_prompt_text(s.guide_user, s.guide_system)
        out.append({**item, "guide_prompt": guide + s.guide_prefix})
    return out


def run_one(utils: Any, clients: tuple[Any, Any], item: dict[str, Any], method: str) -> dict:
    key = f"{item['task']}/{item['sample_id']}"
    base, guide = clients
    started = time.perf_counter()
    info = utils.completion_with_nudging(
        base_model=f"base::{key}",
        nudging_model=f"guide::{key}",
        question=key,
        completion_token_num=COMPLETION_TOKENS,
        completion_token_num_nudging=COMPLETION_TOKENS,
        max_token_total=MAX_TOKENS,
        client_base=base,
        client_nudging=guide,
        top_prob_thres=TAU,
        enable_distribution_blending=method == "blendin",
        blend_alpha="auto",
    )
    if method == "nudging":
        numerator, denominator = info["intervention_count"], info["total_tokens_generated"]
    else:
        numerator, denominator = info["intervention_count"], info["total_tokens"]
    return {
        "task": item["task"],
        "order": item["order"],
        "sample_id": item["sample_id"],
        "method": method,
        "base_prompt": item["base_prompt"],
        "guide_prompt": item["guide_prompt"],
        "guide_user": item["guide_user"],
        "guide_system": item["guide_system"],
        "guide_prefix": item["guide_prefix"],
        "text": info["raw_answer"],
        "rounds" if method == "nudging" else "uncertain": numerator,
        "base_tokens": denominator,
        "ir": info["intervention_rate"],
        "stop_reason": info["stop_reason"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, type=Path, help="BlendIn checkout")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n", type=int, default=24, help="prompts per task")
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--methods", default="nudging,blendin")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--finish",
        action="store_true",
        help="only write the records of a run cut short (METHOD.partial.jsonl) as fixtures",
    )
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    if args.finish:
        items = [prompt_fields(*x) for x in selected(args.data_dir, args.n)]
        finish(args.out, methods, items)
        return 0

    from pairscope.backends.vllm_server import serve, vllm_venv
    from pairscope.models import _converted_dir, load_pair

    pair = load_pair(device="cpu", dtype="float32")
    items = requests_of(args.data_dir, args.n)
    prompts: dict[str, str] = {}
    for it in items:
        key = f"{it['task']}/{it['sample_id']}"
        prompts[f"base::{key}"], prompts[f"guide::{key}"] = it["base_prompt"], it["guide_prompt"]
    utils = load_reference(args.reference, _Counter(pair.base.tokenizer), prompts)
    args.out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="pairscope-reference-"))
    print(f"server logs: {logs}", flush=True)
    with ExitStack() as stack:
        servers = []
        for n, (name, model) in enumerate((("base", pair.base), ("guide", pair.guide))):
            # One core each where there are two or more (vLLM's CPU backend binds its
            # threads; left to itself, each server takes the same first core).
            cores = os.cpu_count() or 1
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(n % cores) if cores > 1 else "0"
            servers.append(
                stack.enter_context(
                    serve(
                        _converted_dir(model.source.sha256),
                        venv=vllm_venv(),
                        log=logs / f"{name}.log",
                        extra=("--served-model-name", name),
                        startup_timeout=1800,
                    )
                )
            )
        print(f"servers ready: {[s.url for s in servers]}", flush=True)
        clients = (_Client(servers[0].url), _Client(servers[1].url))
        # The first half of each task's prompts for each method (NUDGING first), then the
        # rest: a run cut short has a balanced part of every task.
        half = (args.n + 1) // 2
        done_keys = {(r["method"], r["task"], r["sample_id"]) for r in recorded(args.out, methods)}
        jobs = sorted(
            (
                (it, m)
                for it in items
                for m in methods
                if (m, it["task"], it["sample_id"]) not in done_keys
            ),
            key=lambda j: (
                j[0]["order"] >= half,
                methods.index(j[1]),
                j[0]["order"],
                TASKS.index(j[0]["task"]),
            ),
        )
        print(f"{len(jobs)} runs to make, {len(done_keys)} recorded", flush=True)
        sinks = {m: (args.out / f"{m}.partial.jsonl").open("a") for m in methods}
        with ThreadPoolExecutor(args.workers) as pool:
            futures = [pool.submit(run_one, utils, clients, it, m) for it, m in jobs]
            for done, fut in enumerate(as_completed(futures), 1):
                rec = fut.result()
                sinks[rec["method"]].write(json.dumps(rec, ensure_ascii=False) + "\n")
                sinks[rec["method"]].flush()
                print(
                    f"[{done}/{len(jobs)}] {rec['method']} {rec['task']} #{rec['order']} "
                    f"IR {rec['ir']:.3f} ({rec['seconds']} s)",
                    flush=True,
                )
        for sink in sinks.values():
            sink.close()
    finish(args.out, methods, items)
    return 0


def recorded(out: Path, methods: list[str]) -> list[dict[str, Any]]:
    """Every record kept so far: ``METHOD.jsonl`` and ``METHOD.partial.jsonl``, the first
    of each (method, task, sample) only."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for m in methods:
        for name in (f"{m}.jsonl", f"{m}.partial.jsonl"):
            path = out / name
            lines = path.read_text().splitlines() if path.exists() else []
            for line in filter(None, lines):
                rec = json.loads(line)
                seen.setdefault((rec["method"], rec["task"], rec["sample_id"]), rec)
    return list(seen.values())


def finish(out: Path, methods: list[str], items: list[dict[str, Any]]) -> None:
    """Sort each method's records into ``METHOD.jsonl`` (task, then selection order),
    each with its sample's prompt fields (``items``)."""
    fields = {(it["task"], it["sample_id"]): it for it in items}
    kept = recorded(out, methods)
    for m in methods:
        part = out / f"{m}.partial.jsonl"
        recs = [r for r in kept if r["method"] == m]
        recs.sort(key=lambda r: (TASKS.index(r["task"]), r["order"]))
        for r in recs:
            it = fields.get((r["task"], r["sample_id"]))
            if it is None:  # recorded under a larger --n: kept as it is
                continue
            assert it["base_prompt"] == r["base_prompt"]
            for key in ("guide_user", "guide_system", "guide_prefix"):
                r[key] = it[key]
        with (out / f"{m}.jsonl").open("w") as f:
            for r in recs:
                r.pop("seconds", None)
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        part.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
