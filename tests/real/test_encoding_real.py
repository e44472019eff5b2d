"""The step encoder on the embedded pair's real tokenizers (Gemma 3, SmolLM2)."""

from __future__ import annotations

import pytest

from pairscope.decoding.encoding import Encoder
from tests.unit.test_encoding import STRINGS, wrapper

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("which", ["base", "guide"])
@pytest.mark.parametrize("add_special", [False, True])
def test_real_tokenizers_take_the_direct_path_and_equal_their_call(real_pair, which, add_special):
    tok = getattr(real_pair, which).tokenizer
    enc = Encoder(tok)
    assert enc._direct() is not None
    chat = real_pair.guide.chat_prompt_text("How many apples?", None)
    strings = [*STRINGS, chat, "<end_of_turn>\n<start_of_turn>model\n", " 12 × 3 = 36."]
    assert enc.encode(strings, add_special, True) == wrapper(tok, strings, add_special, True)
