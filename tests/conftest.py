"""Shared fixtures: tiny random models with their own trained tokenizers, the real pair."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = (
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\n"
    "Answer: Tom has 3 + 5 = 8 apples. The answer is 8.\n\n"
    "The capital of France is Paris. The quick brown fox jumps over the lazy dog.\n"
    "I cannot help with that request, but I can tell you about safety. "
    "Let's think step by step about the numbers 12, 40 and 365 days in a year.\n"
) * 4


def data_dir() -> Path | None:
    """The offline benchmark copies: PAIRSCOPE_DATA_DIR or shared/data beside the repo."""
    env = os.environ.get("PAIRSCOPE_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "gsm8k" / "test.jsonl").is_file():
            return c
    return None


def _tokenizer(kind: str):
    """A small BPE tokenizer trained on CORPUS: byte-level (GPT-2 style) or metaspace (SP style)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(byte_fallback=kind == "metaspace"))
    if kind == "byte":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
        tok.decoder = decoders.Sequence(
            [
                decoders.Metaspace(replacement="▁", prepend_scheme="never"),
                decoders.ByteFallback(),
                decoders.Fuse(),
            ]
        )
        alphabet = []
        specials += [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=400 if kind == "byte" else 600,
        special_tokens=specials,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>"
    )
    return fast


# What the tiny Gemma 3 base and Llama guide share: two layers, width 32, one KV head.
TINY = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=2048,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)


def cli(*args: object):
    """Invoke the pairscope CLI in-process; fail on any exception but a clean exit."""
    from typer.testing import CliRunner

    from pairscope.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    return result


def tiny_gemma3_config(vocab: int, sliding_window: int = 512):
    """A two-layer Gemma 3 text config: one sliding-window layer, one full layer."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=vocab,
        head_dim=16,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"],
        **TINY,
    )


def _tiny_model(kind: str, vocab: int, seed: int):
    import torch
    from transformers import Gemma3ForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if kind == "gemma3":
        model = Gemma3ForCausalLM(tiny_gemma3_config(vocab))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **TINY))
    # Sharpen the random logits so greedy decoding is decisive and some positions are confident.
    with torch.no_grad():
        model.lm_head.weight.mul_(12.0)
    return model.eval()


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """Save a tiny random base (Gemma 3 architecture, metaspace BPE) and guide (Llama,
    byte-level BPE with a chat template) to local directories."""
    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for role, arch, kind, seed in (
        ("base", "gemma3", "metaspace", 0),
        ("guide", "llama", "byte", 1),
    ):
        tok = _tokenizer(kind)
        if role == "guide":
            tok.chat_template = CHAT_TEMPLATE
        model = _tiny_model(arch, len(tok), seed)
        model.generation_config.eos_token_id = tok.eos_token_id
        path = root / role
        model.save_pretrained(path)
        tok.save_pretrained(path)
        out[role] = path
    return out


@pytest.fixture(scope="session")
def tiny_pair(tiny_dirs):
    from pairscope.models import load_pair

    return load_pair(str(tiny_dirs["base"]), str(tiny_dirs["guide"]), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def real_pair():
    """The embedded real pair (slow: converts GGUF once into the cache)."""
    from pairscope.models import load_pair

    return load_pair(device="cpu", dtype="float32")
