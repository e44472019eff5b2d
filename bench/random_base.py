"""A randomly initialised Llama base built from a config (no download), for the GPU bench.

It uses the embedded guide's tokenizer (SmolLM2, a Llama-family byte-level BPE of 49k
entries), so the pair shares a vocabulary, and random weights: its texts mean nothing,
but its forward pass costs what a real model of its size costs, which is what the
throughput benchmark measures. ``--size 1b`` is about 1.2 billion parameters.

    python bench/random_base.py OUT_DIR [--size 1b|tiny]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pairscope.models import EMBEDDED_GUIDE, load_model

SIZES = {
    # hidden, layers, heads, kv heads, intermediate
    "1b": (2048, 16, 32, 8, 8192),
    "tiny": (64, 2, 2, 1, 128),  # for trying the script on a CPU
}


def build(out: Path, size: str, seed: int = 0) -> dict[str, object]:
    from transformers import AutoModelForCausalLM, LlamaConfig

    guide = load_model(EMBEDDED_GUIDE, device="cpu", dtype="float32")
    hidden, layers, heads, kv, inter = SIZES[size]
    tok = guide.tokenizer
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        max_position_embeddings=8192,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    facts = {"size": size, "parameters": sum(p.numel() for p in model.parameters())}
    (out / "random-base.json").write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    args = parser.parse_args()
    print(json.dumps(build(args.out_dir, args.size)))


if __name__ == "__main__":
    main()
