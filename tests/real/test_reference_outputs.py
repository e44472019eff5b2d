"""pairscope against the methods' reference code, run on real vLLM servers.

``tests/fixtures/reference/`` holds what the BlendIn authors' ``completion_with_nudging``
wrote on the embedded pair (``scripts/reference_run.py`` records it: NUDGING with
blending off, BlendIn with it on, 128 tokens, the probes' own prompts). Here pairscope
decodes the same prompt strings (no stop strings, as the reference code has none) and
must agree with it:

* NUDGING under ``--protocol reference`` writes identical texts at least as often as
  BlendIn does against its own reference, and its pooled intervention rate is within
  0.02 of the reference's;
* BlendIn's pooled intervention rate is within 0.02 of its reference's.

By default a few prompts of each task are decoded (CI time);
``PAIRSCOPE_REFERENCE_ALL=1`` decodes every recorded prompt. ``-s`` prints the
comparison: counts, identical texts and where the others first differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pairscope.decoding.engine import DecodeSettings, Request, generate
from pairscope.methods.nudging_reference import Limits

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reference"
PER_TASK = 2  # prompts per task decoded by default (CI time)
IR_TOL = 0.02


def recorded(method: str) -> list[dict[str, Any]]:
    path = FIXTURES / f"{method}.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    if os.environ.get("PAIRSCOPE_REFERENCE_ALL"):
        return records
    seen: dict[str, int] = {}
    kept = []
    for r in records:
        seen[r["task"]] = seen.get(r["task"], 0) + 1
        if seen[r["task"]] <= PER_TASK:
            kept.append(r)
    return kept


def request_of(record: dict[str, Any]) -> Request:
    return Request(
        record["base_prompt"],
        record["guide_user"],
        (),
        Limits.max_tokens,
        guide_system=record["guide_system"],
        guide_prefix=record["guide_prefix"],
    )


def compare(pair, method: str, **settings: Any) -> dict[str, Any]:
    """Decode the recorded prompts with pairscope; the pooled rates and the texts' agreement."""
    records = recorded(method)
    for r in records:  # the recorded guide prompt is the one pairscope builds
        guide = pair.guide.chat_prompt_text(r["guide_user"], r["guide_system"])
        assert guide + r["guide_prefix"] == r["guide_prompt"]
    ours = generate(pair, [request_of(r) for r in records], DecodeSettings(method, **settings))
    numerator = "rounds" if method == "nudging" else "uncertain"
    theirs_counts = [(r[numerator], r["base_tokens"]) for r in records]
    ours_counts = [o.ir_counts for o in ours]
    identical = sum(o.text == r["text"] for o, r in zip(ours, records))
    for o, r in zip(ours, records):
        if o.text != r["text"]:
            at = next((i for i, (a, b) in enumerate(zip(o.text, r["text"])) if a != b), None)
            at = min(len(o.text), len(r["text"])) if at is None else at
            print(
                f"{method} {r['task']} #{r['order']}: differ at {at}: "
                f"{o.text[at : at + 30]!r} | reference {r['text'][at : at + 30]!r}"
            )
    out = {
        "n": len(records),
        "identical": identical,
        "reference_ir": sum(u for u, _ in theirs_counts) / sum(d for _, d in theirs_counts),
        "pairscope_ir": sum(u for u, _ in ours_counts) / max(1, sum(d for _, d in ours_counts)),
        "reference_counts": [sum(x) for x in zip(*theirs_counts)],
        "pairscope_counts": [sum(x) for x in zip(*ours_counts)],
    }
    print(f"{method}: {out}")
    return out


@pytest.fixture(scope="module")
def blendin(real_pair) -> dict[str, Any]:
    return compare(real_pair, "blendin", batch_size=8)


def test_blendin_agrees_with_its_reference(blendin):
    assert abs(blendin["pairscope_ir"] - blendin["reference_ir"]) <= IR_TOL
    assert blendin["identical"] >= 1


def test_nudging_reference_protocol_agrees_with_the_reference_code(real_pair, blendin):
    nudging = compare(real_pair, "nudging", protocol="reference", batch_size=8)
    assert abs(nudging["pairscope_ir"] - nudging["reference_ir"]) <= IR_TOL
    assert nudging["identical"] / nudging["n"] >= blendin["identical"] / blendin["n"]
