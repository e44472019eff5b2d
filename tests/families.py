"""Tiny tokenizers of every family users pair, built from a small corpus (no downloads).

Each copies its family's real layout, including what makes it awkward:

- ``llama2``: Llama-2 legacy SentencePiece: normaliser Prepend("▁") + Replace(" ", "▁"),
  byte fallback, decoder Replace/ByteFallback/Fuse/Strip, so decoding one token alone
  drops its leading space; a post-processor adds BOS.
- ``metaspace``: the converted Mistral / Llama layout: Metaspace pre-tokeniser with
  ``prepend_scheme="first"``, byte fallback, the same stripping decoder.
- ``bytelevel``: GPT-2 / Qwen / Llama 3 / SmolLM byte-level BPE.
- ``gemma``: Gemma's SentencePiece BPE: spaces replaced by "▁" with no prefix,
  byte fallback, a decoder that strips nothing.

Byte-fallback pieces (``<0x41>``) are ordinary vocabulary entries, as in the real
SentencePiece models, not special tokens.
"""

from __future__ import annotations

import json

FAMILIES = ("llama2", "metaspace", "bytelevel", "gemma")
SPECIALS = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]


def _with_byte_pieces(tok):
    """Insert the 256 ``<0xNN>`` pieces right after the special tokens, as regular tokens."""
    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    first = len(SPECIALS)
    shifted = {t: (i if i < first else i + 256) for t, i in vocab.items()}
    for b in range(256):
        shifted[f"<0x{b:02X}>"] = first + b
    data["model"]["vocab"] = shifted
    for added in data["added_tokens"]:
        added["id"] = shifted[added["content"]]
    if data.get("post_processor"):
        for special in data["post_processor"].get("special_tokens", {}).values():
            special["ids"] = [shifted[t] for t in special["tokens"]]
    return Tokenizer.from_str(json.dumps(data))


def build(family: str, corpus: str, vocab_size: int = 420):
    """A ``PreTrainedTokenizerFast`` of ``family`` trained on ``corpus``."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    sentencepiece = family != "bytelevel"
    tok = Tokenizer(models.BPE(byte_fallback=sentencepiece))
    strip = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    alphabet: list[str] = []
    if family == "llama2":
        tok.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        tok.decoder = strip
    elif family == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme="first", split=False
        )
        tok.decoder = strip
    elif family == "gemma":
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        )
    elif family == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        raise ValueError(family)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator([corpus], trainer)
    if family in ("llama2", "metaspace"):
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    if sentencepiece:
        tok = _with_byte_pieces(tok)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
