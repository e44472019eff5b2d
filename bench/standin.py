"""Stand-in models for the regime where a forward pass is cheap (issue: performance).

On a GPU a forward pass of the base takes milliseconds, and what the decoding loop does
between passes decides the throughput. ``build_stand_ins`` reproduces that regime on a
CPU: it takes the embedded pair's own tokenizers and configurations (Gemma 3's 262k
vocabulary, SmolLM2's 49k) and builds 2-layer, width-64 models with random weights. Each
output head is then scaled ("sharpened") until about ``target`` of the positions of a
few real prompts are uncertain (top-1 probability below τ), as in a real pair. Nothing
is downloaded; the embedded pair comes from the model cache.

    python bench/standin.py OUT_DIR      # writes OUT_DIR/base and OUT_DIR/guide
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from pairscope.defaults import TAU
from pairscope.models import EMBEDDED_BASE, EMBEDDED_GUIDE, load_model

WIDTH = 64
LAYERS = 2
PROBE_TEXTS = [
    "Question: Natalia sold clips to 48 of her friends in April, and then she sold half "
    "as many clips in May. How many clips did Natalia sell altogether?\nAnswer:",
    "Question: Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes "
    "of babysitting. How much did she earn?\nAnswer: Weng earns 12/60 = $0.2 per minute.",
    "What happens to you if you eat watermelon seeds? The seeds pass through your body.",
]


def small_config(config: Any) -> Any:
    """The same architecture, vocabulary and special ids at 2 layers of width 64."""
    small = type(config).from_dict(config.to_dict())
    small.hidden_size = WIDTH
    small.intermediate_size = 2 * WIDTH
    small.num_hidden_layers = LAYERS
    small.num_attention_heads = 2
    small.num_key_value_heads = 1
    small.head_dim = WIDTH // 2
    small.tie_word_embeddings = False  # the head is scaled apart from the embeddings
    kinds = getattr(config, "layer_types", None)
    if kinds:
        # One local and one global layer, as the real model mixes them.
        small.layer_types = ["sliding_attention", "full_attention"][:LAYERS]
    return small


def uncertain_share(model: Any, tokenizer: Any, tau: float = TAU) -> float:
    """Share of the probe texts' positions whose top-1 probability is below ``tau``."""
    shares = []
    with torch.inference_mode():
        for text in PROBE_TEXTS:
            ids = torch.tensor([tokenizer.encode(text)])
            probs = torch.softmax(model(input_ids=ids).logits[0].float(), -1)
            shares.append((probs.max(-1).values < tau).float().mean().item())
    return sum(shares) / len(shares)


def sharpen(model: Any, tokenizer: Any, target: float) -> tuple[float, float]:
    """Scale the output head until about ``target`` of positions are uncertain (bisection
    on a log scale; random heads are flat, so scaling up makes them confident)."""
    head = model.get_output_embeddings().weight
    original = head.detach().clone()
    low, high = 1.0, 4096.0
    scale, share = 1.0, 1.0
    for _ in range(24):
        scale = (low * high) ** 0.5
        with torch.no_grad():
            head.copy_(original * scale)
        share = uncertain_share(model, tokenizer)
        if abs(share - target) < 0.02:
            break
        if share > target:
            low = scale
        else:
            high = scale
    return scale, share


def build(spec: str, out: Path, target: float, seed: int) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    real = load_model(spec, device="cpu", dtype="float32")
    config = small_config(real.model.config)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    scale, share = sharpen(model, real.tokenizer, target)
    model.save_pretrained(out, safe_serialization=True)
    real.tokenizer.save_pretrained(out)
    real.model.generation_config.save_pretrained(out)
    facts = {
        "from": spec,
        "architecture": type(model).__name__,
        "vocab_size": int(config.vocab_size),
        "parameters": sum(p.numel() for p in model.parameters()),
        "head_scale": round(scale, 2),
        "uncertain_share": round(share, 3),
    }
    (out / "stand-in.json").write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def build_stand_ins(out_dir: Path, target: float = 0.3, seed: int = 0) -> tuple[Path, Path]:
    """Write ``out_dir/base`` and ``out_dir/guide``; returns their paths."""
    paths = (out_dir / "base", out_dir / "guide")
    for spec, path, offset in zip((EMBEDDED_BASE, EMBEDDED_GUIDE), paths, (0, 1)):
        facts = build(spec, path, target, seed + offset)
        print(f"stand-in {path.name}: {json.dumps(facts)}", flush=True)
    return paths


def pair_arguments(parser: argparse.ArgumentParser, batch: int = 16) -> None:
    """The benchmark scripts' shared options: the pair (or ``--stand-in``), the batch,
    the new tokens and the data directory."""
    parser.add_argument(
        "--stand-in",
        action="store_true",
        help="Decode with 2-layer, width-64 random stand-ins of the embedded pair (its own "
        "tokenizers and vocabularies; bench/standin.py): the cheap-forward regime of a GPU.",
    )
    parser.add_argument("--base", default=EMBEDDED_BASE)
    parser.add_argument("--guide", default=EMBEDDED_GUIDE)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--data-dir", default=os.environ.get("PAIRSCOPE_DATA_DIR"))


def use_stand_ins(args: argparse.Namespace) -> tempfile.TemporaryDirectory[str] | None:
    """With ``args.stand_in``, build the stand-ins in a temporary directory and point
    ``args.base`` and ``args.guide`` at them. The directory lasts as long as the handle
    returned (None without ``--stand-in``)."""
    if not args.stand_in:
        return None
    scratch = tempfile.TemporaryDirectory(prefix="pairscope-standin-")
    base_dir, guide_dir = build_stand_ins(Path(scratch.name))
    args.base, args.guide = str(base_dir), str(guide_dir)
    return scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--target", type=float, default=0.3, help="uncertain share to aim at")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build_stand_ins(args.out_dir, args.target, args.seed)


if __name__ == "__main__":
    main()
