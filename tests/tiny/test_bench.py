"""The decoding benchmark runs end to end on tiny models and reports paired ratios."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, data_dir


def run_bench(script: str, tiny_dirs, *args: str) -> str:  # type: ignore[no-untyped-def]
    """A bench script's stdout, run on the tiny pair and the benchmark data (it must exit 0)."""
    command = [sys.executable, str(REPO / "bench" / script), *args]
    command += ["--base", str(tiny_dirs["base"]), "--guide", str(tiny_dirs["guide"])]
    command += ["--data-dir", str(data_dir())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(data_dir() is None, reason="no benchmark data (GSM8K prompts)")
def test_bench_decode_reports_a_ratio_per_method_and_repeat(tiny_dirs, tmp_path):
    out = tmp_path / "bench.json"
    args = ["--json", "--out", str(out), "--batches", "1,3", "--new-tokens", "6"]
    args += ["--naive-tokens", "2", "--repeats", "2"]
    methods = "generate,base,nudging,blendin,naive,floor_base,floor_base_norm,floor_both_norm"
    run_bench("decode.py", tiny_dirs, *args, "--methods", methods)
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 2 * 2 * 8  # batches x repeats x methods
    assert all(r["tokens"] > 0 and r["tokens_per_second"] > 0 for r in result["rows"])
    for batch in (1, 3):
        for key in ("base_vs_generate", "nudging_vs_generate", "blendin_vs_generate"):
            assert result["ratios"][f"{key}@{batch}"] > 0
        assert f"blendin_vs_naive@{batch}" in result["ratios"]
        for key in ("floor_both_norm_vs_generate", "blendin_vs_floor_both_norm"):
            assert result["ratios"][f"{key}@{batch}"] > 0
        # The ratio is the median of the per-repeat ratios, measured back to back.
        rows = {
            (r["method"], r["repeat"]): r["tokens_per_second"]
            for r in result["rows"]
            if r["batch"] == batch
        }
        pairs = sorted(rows[("blendin", i)] / rows[("generate", i)] for i in (0, 1))
        assert result["ratios"][f"blendin_vs_generate@{batch}"] == pytest.approx(
            sum(pairs) / 2, abs=2e-3
        )


def test_the_floor_runs_the_base_greedy_path(tiny_pair):
    # The floors time the passes a decoder cannot avoid, so they must be those passes:
    # on pairscope's cached streams, each row's ids are the base's greedy path, checked
    # against an uncached pass over the whole context at every token.
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    import decode

    from pairscope.decoding.engine import DecodeSettings, Engine, Request

    texts = ["Tom has 3 apples and buys 5 more.", "The answer is", "Sam reads 12 pages a day."]
    reqs = [Request(t, t, (), 7) for t in texts]
    engine = Engine(tiny_pair, DecodeSettings(method="blendin", batch_size=3))
    prompts = [engine._new_row(i, r).driver.ids for i, r in enumerate(reqs)]
    model = tiny_pair.base.model
    expected = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = list(prompt)
            for _ in range(7):
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
                ids.append(int(logits.argmax()))
            expected.append(ids[len(prompt) :])
    for guide, normalise in ((False, False), (False, True), (True, True)):
        assert decode.floor_ids(tiny_pair, reqs, 7, guide, normalise) == expected


@pytest.mark.skipif(data_dir() is None, reason="no benchmark data (GSM8K prompts)")
def test_bench_parts_splits_a_run_into_parts_that_fit_its_wall_time(tiny_dirs):
    args = ["--json", "--batch", "3", "--new-tokens", "6", "--repeats", "1"]
    result = json.loads(run_bench("parts.py", tiny_dirs, *args))
    method, floor = result["parts"]["blendin"], result["parts"]["floor_both_norm"]
    for part in ("base passes", "guide passes", "top-k lists", "re-tokenisation, tag 0"):
        assert method[part] > 0, part
    assert "top-k lists" not in floor and floor["base passes"] > 0
    # The parts do not overlap, so they add up to no more than the method's wall time.
    assert 0 <= sum(method.values()) <= result["wall"]["blendin"]
    assert result["rest"] >= 0
    # A pass of each model per step (6 steps of 3 rows), plus a prompt's prefill pass;
    # BlendIn's base makes the same passes as the floor's where no row ends early.
    counts = result["counts"]
    floor_counts = counts["floor_both_norm"]
    assert floor_counts["positions"] == 18
    assert 6 <= floor_counts["guide passes"] <= floor_counts["base passes"] <= 8
    blend = counts["blendin"]
    assert 0 < blend["positions"] <= 18
    if blend["positions"] == 18:
        assert blend["base passes"] == floor_counts["base passes"]


@pytest.mark.skipif(data_dir() is None, reason="no benchmark data (GSM8K prompts)")
def test_bench_head_times_a_full_and_a_narrow_guide_pass(tiny_dirs):
    args = ["--passes", "2", "--read", "2", "--batch", "6"]
    lines = run_bench("head.py", tiny_dirs, *args).splitlines()
    assert "logits of all rows" in lines[0] and "logits of 2 rows" in lines[1]
    assert float(lines[2].split(":")[1]) > 0


@pytest.mark.skipif(data_dir() is None, reason="no benchmark data (GSM8K prompts)")
def test_bench_ahead_times_nudging_with_and_without_reading_ahead(tiny_dirs):
    args = ["--repeats", "1", "--batch", "4", "--new-tokens", "8"]
    lines = run_bench("ahead.py", tiny_dirs, *args).splitlines()
    assert lines[0].startswith("read ahead") and lines[1].startswith("context alone")
    assert float(lines[2].split(":")[1]) > 0
    assert lines[3] == "same texts: True"


@pytest.mark.skipif(data_dir() is None, reason="no benchmark data (GSM8K prompts)")
def test_bench_refill_times_static_and_refilled_batches(tiny_dirs):
    args = ["--samples", "6", "--batch", "4", "--new-tokens", "6", "--methods", "nudging,base"]
    lines = run_bench("refill.py", tiny_dirs, *args).splitlines()
    assert lines[0].startswith("6 GSM8K probe samples, batch 4, 6 new tokens at most")
    for n, method in enumerate(("nudging", "base")):
        static, refill, ratios = lines[1 + 3 * n : 4 + 3 * n]
        assert static.split()[:2] == [method, "static"] and refill.split()[:2] == [method, "refill"]
        assert float(static.split()[2]) > 0 and int(refill.split()[4]) > 0
        assert ratios.startswith(f"{method:8} refill vs static: wall ")
        assert ratios.endswith("texts identical: True")


@pytest.mark.skipif(data_dir() is None, reason="no benchmark data (GSM8K prompts)")
def test_bench_hotpath_profiles_a_run_and_counts_its_passes(tiny_dirs):
    out = run_bench("hotpath.py", tiny_dirs, "--rows", "3", "--batch", "3", "--new-tokens", "5")
    assert "Self CPU time total" in out and "nudging, batch 3: 15 base positions in" in out
    steps = int(out.split("engine steps: ")[1].split()[0])
    assert steps >= 5  # one position a row per step at most
    passes = {name: int(out.split(f"\n{name}: ")[1].split()[0]) for name in ("base", "guide")}
    assert passes["base"] >= 5 and 0 < passes["guide"] <= steps + 1
