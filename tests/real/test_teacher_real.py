"""Teacher forcing on the embedded pair: the shared-prefix passes against uncached
passes, and the arbitration check against a brute-force oracle."""

from __future__ import annotations

import pytest
import torch

from pairscope.backends.local import LocalForcer as Forcer
from pairscope.pipeline.teacher import arbitration
from tests.tiny.test_teacher import _oracle_guide_correct, _uncached

pytestmark = pytest.mark.slow

FEWSHOT = (
    "Question: Tom has 3 apples and buys 2 more. How many apples does he have?\n"
    "Answer: Tom has 3 + 2 = 5 apples. The answer is 5.\n\n"
)
REFERENCE = (
    " She sells 16 - 3 - 4 = 9 eggs a day, so she makes 9 * 2 = 18 dollars. The answer is 18."
)


def test_real_pair_shared_prefix_and_arbitration_oracle(real_pair):
    base, guide = real_pair.base, real_pair.guide
    questions = ["Janet's ducks lay 16 eggs a day. How much does she make?", "What is 7 * 6?"]
    bprompts = [
        base.encode_completion_prompt(f"{FEWSHOT}Question: {q}\nAnswer:") for q in questions
    ]
    gprompts = [guide.encode_chat_prompt(q) for q in questions]
    forcers = (Forcer(base, bprompts), Forcer(guide, gprompts))
    assert len(forcers[0].prefix) > 20
    ref = base.tokenizer.encode(REFERENCE, add_special_tokens=False)
    got = forcers[0].logprobs(bprompts[0], ref)
    assert torch.allclose(got, _uncached(base.model, bprompts[0] + ref, len(ref) + 1), atol=2e-4)

    arb = arbitration(real_pair, (bprompts[0], gprompts[0]), REFERENCE, tau=2.0, forcers=forcers)
    assert len(arb.guide) == len(ref)
    oracle = _oracle_guide_correct(real_pair, bprompts[0], gprompts[0], REFERENCE, 2.0)
    assert arb.guide == oracle
    # Not vacuous: both models continue this reference at many positions.
    assert sum(arb.guide) > len(ref) // 3 and sum(arb.base) > len(ref) // 3
