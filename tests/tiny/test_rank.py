"""`pairscope rank` on tiny random models: pruning, the race's outcomes, exit codes, resume.

tau makes the intervention rate exact: tau = 0 never intervenes (IR 0, every guide
feasible, and the responses are the base's own, so guides score alike: a tie) and
tau = 2 always does (IR 1: infeasible). xstest, 6 new tokens per response.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pairscope.pipeline.runs import is_run_dir, read_summary
from pairscope.rank.schema import RankResult
from tests.conftest import cli, data_dir

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")


@pytest.fixture(scope="module")
def guides(tiny_dirs, tmp_path_factory) -> list[Path]:
    """Two guides: the tiny guide and a copy of it under another name."""
    other = tmp_path_factory.mktemp("guides") / "guide-copy"
    shutil.copytree(tiny_dirs["guide"], other)
    return [tiny_dirs["guide"], other]


def rank(tiny_dirs, guides, out: Path, *extra: object, tau: str = "0", n: str = "40"):
    result = cli(
        "rank", "--base", tiny_dirs["base"], "--guides", ",".join(str(g) for g in guides),
        "--tasks", "xstest", "--max-new-tokens", "6", "--tau", tau, "-n", n,
        "--data-dir", DATA, "--out", out, *extra,
    )  # fmt: skip
    loaded = (
        RankResult.model_validate_json((out / "rank.json").read_text())
        if (out / "rank.json").is_file()
        else None
    )
    return result, loaded


def test_equal_guides_tie_and_a_broken_pair_is_pruned(tiny_dirs, guides, tmp_path):
    missing = tmp_path / "no-such-guide"
    result, ranked = rank(
        tiny_dirs, [*guides, missing], tmp_path / "r", "--epsilon", "0.3", "--base-arm"
    )
    assert result.exit_code == 0, result.output
    assert ranked is not None and ranked.outcome == "feasible"
    (race,) = ranked.races
    assert race.status == "tie" and race.n == 20  # the first decision allowed
    by_guide = {g.guide: g for g in race.guides}
    pruned = by_guide[str(missing)]
    assert pruned.status == "pruned" and pruned.n == 0 and "model files" in pruned.reason
    assert not (tmp_path / "r" / "cells" / f"{missing.name}").exists()
    for g in guides:
        standing = by_guide[str(g)]
        assert standing.status == "tied" and standing.ir is not None and standing.ir.point == 0
        # tau = 0: NUDGING never intervenes, so each guide's response is the base's own.
        assert standing.gain == 0.0
        cell = tmp_path / "r" / (standing.cell or "")
        assert is_run_dir(cell) and read_summary(cell).tasks["xstest"].n == 20
    assert ranked.samples_decoded == 40  # the guides' cells; the base arm is its own
    alone = next((tmp_path / "r" / "cells").glob("*--base-alone")) / "xstest-base"
    assert read_summary(alone).tasks["xstest"].n == 20
    assert "tie" in result.output
    page = (tmp_path / "r" / "rank.html").read_text()
    assert "The intervention paradox" in page and "tied" in page and "pruned" in page
    assert "gain over the base" in page
    # The drill-down pairs the tied guides on their 20 shared samples: identical answers.
    assert "Drill-down" in page and "20 of 20 samples" in page
    assert "right only with the first 0, only with the second 0" in " ".join(page.split())
    assert "http" not in page.split("<body", 1)[1]  # self-contained


def test_no_feasible_pair_exits_1_and_fail_on_chooses(tiny_dirs, guides, tmp_path):
    out = tmp_path / "r"
    result, ranked = rank(tiny_dirs, guides, out, tau="2")
    assert result.exit_code == 1, result.output
    assert ranked is not None and ranked.races[0].status == "none-feasible"
    assert {g.status for g in ranked.races[0].guides} == {"infeasible"}
    assert all(g.decided_at == 2 for g in ranked.races[0].guides)  # at 20 samples
    copy = tmp_path / "ci" / "rank.json"
    again, replayed = rank(
        tiny_dirs, guides, out, "--fail-on", "unresolved", "--json-out", copy, tau="2"
    )
    assert again.exit_code == 0
    assert replayed is not None and replayed.samples_decoded == ranked.samples_decoded
    assert RankResult.model_validate_json(copy.read_text()) == replayed


def test_unresolved_exits_4_and_a_larger_n_continues_the_race(tiny_dirs, guides, tmp_path):
    out = tmp_path / "r"
    result, ranked = rank(tiny_dirs, guides, out, "--race-batch", "5", n="10")
    assert result.exit_code == 4, result.output
    assert ranked is not None and ranked.outcome == "unresolved"
    assert {g.status for g in ranked.races[0].guides} == {"unresolved"}
    assert ranked.samples_decoded == 20
    more, continued = rank(tiny_dirs, guides, out, "--race-batch", "5", "--epsilon", "0.3", n="40")
    fresh, once = rank(
        tiny_dirs, guides, tmp_path / "once", "--race-batch", "5", "--epsilon", "0.3", n="40"
    )
    assert more.exit_code == fresh.exit_code == 0, more.output + fresh.output
    assert continued is not None and once is not None
    assert continued.races == once.races
    assert continued.samples_decoded == once.samples_decoded


def test_a_rank_killed_mid_race_resumes_to_the_same_decision(tiny_dirs, guides, tmp_path):
    """What a hard kill leaves: one cell a batch behind, its last line cut short, no
    rank.json. Running the same command again reaches the same decision."""
    out = tmp_path / "r"
    _, ranked = rank(tiny_dirs, guides, out, "--epsilon", "0.3")
    assert ranked is not None
    cell = out / (ranked.races[0].guides[1].cell or "")
    lines = (cell / "records.jsonl").read_text().splitlines(keepends=True)
    (cell / "records.jsonl").write_text("".join(lines[:-8]) + lines[-8][:40])
    (out / "rank.json").unlink()
    (cell / "summary.json").unlink()
    result, resumed = rank(tiny_dirs, guides, out, "--epsilon", "0.3")
    assert result.exit_code == 0
    assert resumed is not None and resumed.races == ranked.races
    assert json.loads((cell / "summary.json").read_text())["tasks"]["xstest"]["n"] == 20


def test_an_interrupted_rank_says_what_it_kept_and_continues(
    tiny_dirs, guides, tmp_path, monkeypatch
):
    """Ctrl-C (or SIGTERM) in the second batch: exit 130 naming where the finished samples
    are; the same command then reaches the decision of an uninterrupted rank."""
    from pairscope.rank.cells import Cell

    decode, calls = Cell.decode, []

    def interrupted(self, samples):  # type: ignore[no-untyped-def]
        calls.append(len(samples))
        if len(calls) == 3:  # the first guide's share of the second batch
            raise KeyboardInterrupt
        return decode(self, samples)

    out = tmp_path / "r"
    monkeypatch.setattr(Cell, "decode", interrupted)
    result, ranked = rank(tiny_dirs, guides, out, "--epsilon", "0.3", "--race-batch", "10")
    assert result.exit_code == 130, result.output
    assert ranked is None and "Traceback" not in result.output
    assert f"finished samples are saved in the cells under {out}" in result.output
    assert "run the same command again to continue the rank" in result.output
    monkeypatch.setattr(Cell, "decode", decode)
    again, resumed = rank(tiny_dirs, guides, out, "--epsilon", "0.3", "--race-batch", "10")
    _, once = rank(tiny_dirs, guides, tmp_path / "once", "--epsilon", "0.3", "--race-batch", "10")
    assert again.exit_code == 0, again.output
    assert resumed is not None and once is not None and resumed.races == once.races


def test_bad_rank_options_exit_2(tiny_dirs, guides, tmp_path):
    result, _ = rank(tiny_dirs, guides, tmp_path / "r", "--objective", "fastest")
    assert result.exit_code == 2 and "objective" in result.output
    result, _ = rank(tiny_dirs, guides, tmp_path / "r", "--fail-on", "sometimes")
    assert result.exit_code == 2
    assert not (tmp_path / "r").exists()


def test_shards_merged_equal_one_unsharded_run(tiny_dirs, guides, tmp_path):
    """Two shards share a directory, one race each; merged, they are the unsharded rank."""
    tasks = ("--tasks", "xstest,truthfulqa", "--epsilon", "0.3")
    _, whole = rank(tiny_dirs, guides, tmp_path / "whole", *tasks)
    shared = tmp_path / "shared"
    for i in (1, 2):
        part = cli(
            "rank", "--base", tiny_dirs["base"], "--guides", ",".join(map(str, guides)),
            "--max-new-tokens", "6", "--tau", "0", "--limit", "40", "--data-dir", DATA,
            "--out", shared, "--shard", f"{i}/2", *tasks,
        )  # fmt: skip
        assert part.exit_code == 0, part.output
    shard_one = RankResult.model_validate_json((shared / "rank-shard-1-of-2.json").read_text())
    assert [r.task for r in shard_one.races] == ["xstest"]
    merged = cli("rank", "--merge", shared)
    assert merged.exit_code == 0, merged.output
    combined = RankResult.model_validate_json((shared / "rank.json").read_text())
    assert whole is not None and combined.races == whole.races
    assert (combined.outcome, combined.exit_code) == (whole.outcome, whole.exit_code)
    assert combined.samples_decoded == whole.samples_decoded


def test_merge_refuses_missing_shards(tiny_dirs, guides, tmp_path):
    out = tmp_path / "shared"
    part = cli(
        "rank", "--base", tiny_dirs["base"], "--guides", ",".join(map(str, guides)),
        "--tasks", "xstest,truthfulqa", "--max-new-tokens", "6", "--tau", "2", "--limit", "20",
        "--data-dir", DATA, "--out", out, "--shard", "2/2",
    )  # fmt: skip
    assert part.exit_code == 1
    merged = cli("rank", "--merge", out)
    assert merged.exit_code == 2 and "Missing" in merged.output


def test_bench_rank_compares_with_the_fixed_design(tiny_dirs, guides, tmp_path):
    """bench/rank.py runs both designs and reports what racing saved."""
    import subprocess
    import sys

    from tests.conftest import REPO

    command = [
        sys.executable, str(REPO / "bench" / "rank.py"), "--base", str(tiny_dirs["base"]),
        "--guides", ",".join(map(str, guides)), "--tasks", "xstest", "-n", "30",
        "--max-new-tokens", "6", "--tau", "2", "--data-dir", str(DATA), "--json", "--shared",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    # tau = 2: both guides are infeasible at the first decision (20 samples each).
    assert result["rank"]["samples"] == 40 and result["rank"]["exit"] == 1
    assert result["fixed"]["samples"] == 60
    assert result["ratios"]["samples"] == pytest.approx(40 / 60, abs=1e-4)
    assert result["rank"]["seconds"] > 0 and result["fixed"]["seconds"] > 0
    # --shared: the base arm decoded once, on the 20 samples both guides used, where one
    # arm per guide would decode 40; the base's prefill repeats for the second guide's 20.
    arm, prefill = result["shared"]["base_arm"], result["shared"]["prefill"]
    assert (arm["samples"], arm["per_guide_samples"], arm["saved_samples"]) == (20, 40, 20)
    assert arm["decode_seconds"] > 0 and arm["saved_seconds"] > 0
    task = prefill["tasks"]["xstest"]
    assert task["samples"] == 20 and task["repeated"] == 20 and task["seconds_per_sample"] > 0
    assert task["shared_prefix_tokens"] > 0 and task["prefix_seconds"] > 0  # the transcript's
    shared = 20 * task["seconds_per_sample"] + task["prefix_seconds"]
    assert prefill["saved_seconds"] == pytest.approx(shared, rel=0.01, abs=0.02)
