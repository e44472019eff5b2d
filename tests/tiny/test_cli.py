"""The probe command as a CI gate, on the tiny random pair: exit codes, outputs, run dirs.

tau makes the intervention rate exact, so every verdict here is deterministic:
tau = 0 never intervenes (IR = 0, interval [0, 0]) and tau = 2 always does
(IR = 1, interval [1, 1]). FAIL iff low > threshold, PASS iff high < threshold.
The ``probe`` fixture runs with --fixed (the bootstrap gate on all samples); the
sequential gate has its own tests at the end.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pairscope.pipeline.runs import iter_records, read_json
from pairscope.schema import dump
from pairscope.summary import summarize
from tests.conftest import cli, data_dir

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")


@pytest.fixture
def probe(tiny_dirs, tmp_path):
    """Run `pairscope probe --fixed` on the tiny pair (xstest, 3 samples, 6 tokens)."""

    def run(
        *extra: object,
        out: Path | None = None,
        data: Path | None = None,
        n: str = "3",
        fixed: bool = True,
        calibration: bool = False,
        tasks: str = "xstest",
    ):
        return cli(
            "probe",
            "--base",
            tiny_dirs["base"],
            "--guide",
            tiny_dirs["guide"],
            "--data-dir",
            data or DATA,
            "--tasks",
            tasks,
            "--limit",
            n,
            "--max-new-tokens",
            "6",
            *([] if calibration else ["--no-calibration"]),
            "--out",
            out or tmp_path / "run",
            *(["--fixed"] if fixed else []),
            *extra,
        )

    return run


def summary_of(path: Path) -> dict:
    return read_json(path / "summary.json")


@pytest.mark.parametrize(
    ("tau", "threshold", "strict", "verdict", "code"),
    [
        ("0", "0.2", False, "PASS", 0),  # IR [0, 0] below 0.2
        ("2", "0.2", False, "FAIL", 1),  # IR [1, 1] above 0.2
        ("2", "1.0", False, "WARN", 0),  # IR [1, 1] touches 1.0: WARN passes...
        ("2", "1.0", True, "WARN", 1),  # ...unless --strict
        ("0", "0.0", False, "WARN", 0),  # IR [0, 0] touches 0.0
    ],
)
def test_exit_code_follows_the_verdict(probe, tmp_path, tau, threshold, strict, verdict, code):
    # BlendIn's rate is uncertain positions / positions, so tau = 2 gives exactly 1.
    result = probe(
        "--method",
        "blendin",
        "--tau",
        tau,
        "--threshold",
        threshold,
        *(["--strict"] if strict else []),
    )
    assert result.exit_code == code, result.output
    summary = summary_of(tmp_path / "run")
    assert summary["tasks"]["xstest"]["verdict"] == verdict
    assert summary["overall"]["verdict"] == verdict
    assert summary["overall"]["exit_code"] == code
    assert summary["overall"]["gate_passed"] is (code == 0)
    assert f"Overall: {verdict}" in result.stdout


def test_default_tau_on_the_tiny_pair_fails_a_zero_threshold(probe, tmp_path):
    result = probe("--threshold", "0.0")
    task = summary_of(tmp_path / "run")["tasks"]["xstest"]
    ir = task["methods"]["nudging"]["intervention_rate"]
    # Rounds / base-written tokens: undefined (a FAIL) when the guide wrote every token.
    assert ir is None or ir["low"] > 0.0
    assert task["verdict"] == "FAIL"
    assert result.exit_code == 1


def test_any_fail_policy_over_several_tasks(tiny_dirs, tmp_path):
    """Two tasks, one threshold: both FAIL at tau = 2 and the pair fails."""
    result = cli(
        "probe",
        *("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"]),
        *("--data-dir", DATA, "--tasks", "xstest,truthfulqa", "--limit", "2"),
        *("--max-new-tokens", "4", "--no-calibration", "--tau", "2", "--threshold", "0.5"),
        *("--out", tmp_path / "run", "--fixed"),
    )
    assert result.exit_code == 1
    summary = summary_of(tmp_path / "run")
    assert [t["verdict"] for t in summary["tasks"].values()] == ["FAIL", "FAIL"]


def test_json_to_stdout_is_only_the_summary(probe, tmp_path):
    result = probe("--json")
    assert result.exit_code in (0, 1)
    printed = json.loads(result.stdout)  # nothing else on stdout: the table went to stderr
    assert printed == summary_of(tmp_path / "run")
    assert "Overall:" in result.stderr
    assert printed["overall"]["exit_code"] == result.exit_code


def test_json_and_markdown_files(probe, tmp_path):
    result = probe("--json-out", tmp_path / "s.json", "--markdown", tmp_path / "s.md")
    summary = summary_of(tmp_path / "run")
    assert read_json(tmp_path / "s.json") == summary
    md = (tmp_path / "s.md").read_text()
    verdict = summary["overall"]["verdict"]
    assert md.startswith(f"### pairscope probe: {verdict}")
    header = "| task | n | intervention rate (95% CI) | formula | threshold | score (95% CI) |"
    assert header + " verdict | decided by |" in md
    assert "| xstest | 3/" in md and f"**{summary['tasks']['xstest']['verdict']}** |" in md
    assert "Overall:" in result.stdout


def test_run_directory_contents(probe, tmp_path):
    probe()
    run = tmp_path / "run"
    for name in ("config.json", "manifest.json", "records.jsonl", "summary.json", "report.html"):
        assert (run / name).is_file(), name
    manifest = read_json(run / "manifest.json")
    gens = [dump(r) for r in iter_records(run) if r.kind == "generation"]
    assert sorted(r["sample_id"] for r in gens) == sorted(manifest["xstest"]["ids"])
    # The run records each task's scorer, so the summary takes its rates from it.
    assert read_json(run / "config.json")["data"]["xstest"]["scorer"] == "xstest"
    saved = summary_of(run)
    assert "compliance_on_safe" in saved["tasks"]["xstest"]["methods"]["nudging"]["rates"]
    again = dump(summarize(run))
    saved["timing"].pop("total_seconds")
    assert again == saved


def test_out_existing_run_needs_force_or_resume(probe, tmp_path):
    assert probe().exit_code in (0, 1)
    before = (tmp_path / "run" / "records.jsonl").read_bytes()
    refused = probe()
    assert refused.exit_code == 2
    assert "already holds a run" in refused.stderr
    assert f"--resume {tmp_path / 'run'}" in refused.stderr and "--force" in refused.stderr
    assert (tmp_path / "run" / "records.jsonl").read_bytes() == before
    replaced = probe("--force", "--tau", "0")
    assert replaced.exit_code == 0
    assert summary_of(tmp_path / "run")["settings"]["tau"] == 0.0


def test_resume_with_different_settings_is_refused(probe, tmp_path):
    assert probe().exit_code in (0, 1)
    result = probe("--resume", tmp_path / "run", "--tau", "0.3", "--k", "50")
    assert result.exit_code == 2
    line = next(x for x in result.stderr.splitlines() if x.startswith("error:"))
    assert f"Cannot resume {tmp_path / 'run'} with different settings" in line
    assert "tau: run has 0.4, now 0.3" in line and "k: run has 100, now 50" in line


def test_resume_takes_the_settings_not_given_again_from_the_run(probe, tmp_path):
    assert probe("--tau", "0", "--threshold", "0.3", "--batch-size", "2").exit_code == 0
    (tmp_path / "run" / "summary.json").unlink()
    result = cli("probe", "--resume", tmp_path / "run")  # no --data-dir, models, n or tau
    assert result.exit_code == 0, result.output
    settings = summary_of(tmp_path / "run")["settings"]
    assert settings["tau"] == 0.0 and settings["n"] == 3 and settings["batch_size"] == 2
    assert settings["thresholds"] == {"xstest": 0.3}
    assert settings["max_new_tokens"] == {"xstest": 6}
    assert settings["calibration"] is False
    # A setting that is given again with the same value is fine; another value is not.
    assert cli("probe", "--resume", tmp_path / "run", "--tau", "0").exit_code == 0
    refused = cli("probe", "--resume", tmp_path / "run", "--threshold", "0.2")
    assert refused.exit_code == 2
    assert "thresholds: run has {'xstest': 0.3}, now {'xstest': 0.2}" in refused.stderr


def test_resume_of_a_finished_run_redoes_nothing(probe, tmp_path):
    assert probe().exit_code in (0, 1)
    first = summary_of(tmp_path / "run")
    before = [dump(r) for r in iter_records(tmp_path / "run") if r.kind != "session"]
    result = probe("--resume", tmp_path / "run")
    assert result.exit_code == first["overall"]["exit_code"]
    after = [dump(r) for r in iter_records(tmp_path / "run") if r.kind != "session"]
    assert after == before
    second = summary_of(tmp_path / "run")
    for s in (first, second):
        s.pop("timing")
    assert second == first


def test_nothing_is_written_outside_the_run_directory(probe, tmp_path, monkeypatch):
    """A fresh copy of the data (a new datasets cache key) leaves the datasets cache alone."""
    import datasets

    assert DATA is not None
    data = tmp_path / "data"
    shutil.copytree(DATA / "xstest", data / "xstest")
    cache = Path(datasets.config.HF_DATASETS_CACHE)

    def listing() -> set[str]:
        return {str(p) for p in cache.rglob("*")} if cache.exists() else set()

    before = listing()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = probe(data=data, out=tmp_path / "run")
    assert result.exit_code in (0, 1)
    assert listing() == before
    assert os.listdir(cwd) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "data", "run"]
    assert sorted(p.name for p in (data / "xstest").iterdir()) == sorted(
        p.name for p in (DATA / "xstest").iterdir()
    )


def test_generate_input_file_writes_one_result_a_line_in_order(tiny_dirs, tmp_path):
    rows = [
        {"base_prompt": "Question: Tom has 3 apples.\nAnswer:", "guide_prompt": "Tom?"},
        {"base_prompt": "The capital of France is", "system": "Be brief.", "max_new_tokens": 3},
        {"base_prompt": "I cannot help", "guide_prefix": "Sure", "stop": ["\n"]},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    dest = tmp_path / "out.jsonl"
    args = ("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"], "--max-new-tokens", "6")
    result = cli("generate", "--input", src, "--output", dest, "--method", "blendin", *args)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in dest.read_text(encoding="utf-8").splitlines()]
    assert len(out) == 3 and all(o["method"] == "blendin" for o in out)
    assert out[1]["positions"] <= 3 and out[0]["positions"] <= 6
    # The same request alone decodes to the same text: batching keeps input order.
    alone = cli(
        "generate",
        "--prompt",
        rows[0]["base_prompt"],
        "--plain",
        "--guide-prompt",
        "Tom?",
        "--method",
        "blendin",
        "--json",
        *args,
    )
    assert json.loads(alone.stdout)["text"] == out[0]["text"]


def test_generate_input_file_errors_name_the_line(tiny_dirs, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"base_prompt": "a"}\n{"prompt": "b"}\n', encoding="utf-8")
    args = ("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"])
    result = cli("generate", "--input", src, *args)
    assert result.exit_code == 2 and "in.jsonl:2" in result.output
    both = cli("generate", "--input", src, "--prompt", "x", *args)
    assert both.exit_code == 2 and "exactly one" in both.output


# -- the sequential gate (the default) --------------------------------------------------------


def generation_ids(run: Path) -> list[str]:
    return [r.sample_id for r in iter_records(run) if r.kind == "generation"]


@pytest.mark.parametrize(("tau", "verdict", "code"), [("2", "FAIL", 1), ("0", "PASS", 0)])
def test_a_settled_task_stops_early_on_a_prefix_of_the_manifest(
    probe, tmp_path, tau, verdict, code
):
    # IR exactly 1 (tau 2) or 0 (tau 0) against 0.2: the test decides long before 60.
    result = probe("--method", "blendin", "--tau", tau, "--batch-size", "4", n="60", fixed=False)
    assert result.exit_code == code, result.output
    run = tmp_path / "run"
    task = summary_of(run)["tasks"]["xstest"]
    seq = task["sequential"]
    assert task["verdict"] == verdict and task["verdict_source"] == "anytime-valid"
    assert seq["stop_reason"] == "decided" and seq["used_for_verdict"] is True
    assert seq["decided_at"] <= seq["used"] == task["n"] < task["budget"] == 60
    # Decoding stops at the first batch boundary after the decision.
    assert task["n"] - seq["decided_at"] < 4
    ids = generation_ids(run)
    manifest = read_json(run / "manifest.json")["xstest"]["ids"]
    assert sorted(ids) == sorted(manifest[: task["n"]]) and len(manifest) == 60
    low, high = seq["ir"]["low"], seq["ir"]["high"]
    assert (low > 0.2) if verdict == "FAIL" else (high < 0.2)
    assert f"{verdict} declared after {seq['decided_at']} samples" in result.stderr
    page = " ".join((run / "report.html").read_text(encoding="utf-8").split())
    assert f"anytime-valid test: {verdict} after {seq['decided_at']} samples" in page
    assert f"({task['n']} decoded of 60)" in page


def test_fixed_spends_the_whole_budget_and_says_what_the_test_would_have_done(probe, tmp_path):
    result = probe("--method", "blendin", "--tau", "2", n="24")
    assert result.exit_code == 1
    task = summary_of(tmp_path / "run")["tasks"]["xstest"]
    assert task["n"] == task["budget"] == 24 and task["verdict_source"] == "bootstrap"
    seq = task["sequential"]
    assert seq["stop_reason"] == "fixed" and not seq["used_for_verdict"]
    assert seq["verdict"] == "FAIL" and seq["decided_at"] < 24
    assert len(generation_ids(tmp_path / "run")) == 24
    assert "no early stop (it would have decided FAIL after" in " ".join(result.stdout.split())


def test_an_unsettled_task_spends_its_budget_and_warns(probe, tmp_path):
    # Two samples cannot reach an e-value of 40 (each multiplies it by 4.6 at most).
    result = probe("--method", "blendin", "--tau", "2", n="2", fixed=False)
    assert result.exit_code == 0
    task = summary_of(tmp_path / "run")["tasks"]["xstest"]
    assert task["verdict"] == "WARN" and task["sequential"]["stop_reason"] == "budget"
    assert task["n"] == 2


def test_a_task_the_budget_cannot_settle_stops_early_and_warns(probe, tmp_path):
    # IR exactly 1 (tau 2) against a threshold of 0.99: each sample adds about 1 % to
    # FAIL's evidence, so 60 samples cannot settle it, and the probe stops for futility
    # at the first batch boundary past 30 samples instead of spending the budget.
    args = ("--method", "blendin", "--tau", "2", "--threshold", "0.99", "--batch-size", "8")
    result = probe(*args, n="60", fixed=False)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    task = summary_of(run)["tasks"]["xstest"]
    seq = task["sequential"]
    assert task["verdict"] == "WARN" and seq["stop_reason"] == "futile"
    assert task["n"] == seq["used"] == 32 and task["budget"] == 60
    assert seq["decision_chance"] < 0.02 and seq["decided_at"] is None
    assert len(generation_ids(run)) == 32
    assert "stopping early (WARN)" in result.stderr
    assert "stopped early (WARN)" in " ".join(result.stdout.split())
    page = " ".join((run / "report.html").read_text(encoding="utf-8").split())
    assert "undecided after 32 of 60, stopped early" in page


def test_min_calibration_samples_keeps_decoding_after_the_decision(probe, tmp_path):
    args = ("--method", "blendin", "--tau", "2", "--batch-size", "2")
    args += ("--min-calibration-samples", "20")
    result = probe(*args, n="40", fixed=False, calibration=True, tasks="truthfulqa")
    assert result.exit_code == 1, result.output
    task = summary_of(tmp_path / "run")["tasks"]["truthfulqa"]
    assert task["sequential"]["decided_at"] < 20 <= task["n"] < 40
    assert task["calibration"]["base"]["n_samples"] == task["n"]


def test_min_calibration_samples_do_not_hold_a_task_calibration_cannot_read(probe, tmp_path):
    # XSTest has no reference answers: its decision stops decoding at once.
    args = ("--method", "blendin", "--tau", "2", "--batch-size", "2")
    result = probe(*args, "--min-calibration-samples", "20", n="40", fixed=False, calibration=True)
    assert result.exit_code == 1, result.output
    task = summary_of(tmp_path / "run")["tasks"]["xstest"]
    assert task["n"] - task["sequential"]["decided_at"] < 2 and task["n"] < 20


def test_a_resumed_sequential_run_stops_where_an_uninterrupted_one_does(probe, tmp_path):
    full = tmp_path / "full"
    probe("--method", "blendin", "--tau", "2", "--batch-size", "4", n="60", fixed=False, out=full)
    want = summary_of(full)["tasks"]["xstest"]
    # Keep only the first batch of records, as a run killed after it would have.
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    (cut / "summary.json").unlink()
    lines = (cut / "records.jsonl").read_text().splitlines(keepends=True)
    kept, seen = [], 0
    for line in lines:
        rec = json.loads(line)
        if rec["kind"] == "generation":
            seen += 1
            if seen > 4:
                continue
        kept.append(line)
    (cut / "records.jsonl").write_text("".join(kept))
    result = cli("probe", "--resume", cut)
    assert result.exit_code == 1, result.output
    got = summary_of(cut)["tasks"]["xstest"]
    assert (
        got["n"] == want["n"]
        and got["sequential"]["decided_at"] == want["sequential"]["decided_at"]
    )
    assert sorted(generation_ids(cut)) == sorted(generation_ids(full))
