"""The decoding benchmark runs end to end on tiny models and reports paired ratios."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, data_dir


@pytest.mark.skipif(data_dir() is None, reason="no benchmark data (GSM8K prompts)")
def test_bench_decode_reports_a_ratio_per_method_and_repeat(tiny_dirs, tmp_path):
    out = tmp_path / "bench.json"
    args = [sys.executable, str(REPO / "bench" / "decode.py"), "--json", "--out", str(out)]
    args += ["--base", str(tiny_dirs["base"]), "--guide", str(tiny_dirs["guide"])]
    args += ["--batches", "1,3", "--new-tokens", "6", "--naive-tokens", "2", "--repeats", "2"]
    args += ["--methods", "generate,base,nudging,blendin,naive", "--data-dir", str(data_dir())]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 2 * 2 * 5  # batches x repeats x methods
    assert all(r["tokens"] > 0 and r["tokens_per_second"] > 0 for r in result["rows"])
    for batch in (1, 3):
        for key in ("base_vs_generate", "nudging_vs_generate", "blendin_vs_generate"):
            assert result["ratios"][f"{key}@{batch}"] > 0
        assert f"blendin_vs_naive@{batch}" in result["ratios"]
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
