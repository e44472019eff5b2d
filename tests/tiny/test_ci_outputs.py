"""probe's CI outputs on the tiny random pair: --junit and the GitHub job summary from a
real run, and --base-revision / --guide-revision reaching from_pretrained and config.json.

A local model directory has no revisions (transformers ignores the argument there), so
the test checks the plumbing: the value reaches the loader and the run's record.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pairscope.pipeline.runs import read_json
from tests.conftest import cli, data_dir
from tests.unit.test_junit import validate

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")


@pytest.fixture
def loads(monkeypatch) -> list[tuple[str, str, str | None]]:
    """Every from_pretrained call of the tokenizer and model classes: (class, source, revision)."""
    import transformers

    seen: list[tuple[str, str, str | None]] = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        original = cls.from_pretrained

        def spy(source, *args, _original=original, _name=cls.__name__, **kwargs):
            seen.append((_name, str(source), kwargs.get("revision")))
            return _original(source, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    return seen


def test_revisions_junit_and_step_summary_from_one_probe(tiny_dirs, tmp_path, monkeypatch, loads):
    summary_file = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    run = tmp_path / "run"
    result = cli(
        "probe",
        *("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"]),
        *("--base-revision", "v1.0", "--guide-revision", "0123abc"),
        *("--data-dir", DATA, "--tasks", "xstest", "-n", "2", "--max-new-tokens", "4"),
        *("--no-calibration", "--fixed", "--tau", "2", "--threshold", "0.5"),
        *("--out", run, "--junit", tmp_path / "junit.xml"),
    )
    assert result.exit_code == 1, result.output  # tau = 2 always intervenes: FAIL
    base, guide = str(tiny_dirs["base"]), str(tiny_dirs["guide"])
    for name in ("AutoTokenizer", "AutoModelForCausalLM"):
        assert (name, base, "v1.0") in loads
        assert (name, guide, "0123abc") in loads
    settings = read_json(run / "config.json")["settings"]
    assert (settings["base_revision"], settings["guide_revision"]) == ("v1.0", "0123abc")

    root = validate((tmp_path / "junit.xml").read_text(encoding="utf-8"))
    (case,) = root.findall("testsuite/testcase")
    assert (case.get("classname"), case.get("name")) == ("pairscope.xstest", "nudging")
    assert case.find("failure") is not None and root.get("failures") == "1"

    step_summary = summary_file.read_text(encoding="utf-8")
    assert step_summary.startswith("### pairscope probe: FAIL")
    assert f"Run directory: `{run}`" in step_summary


def test_resume_refuses_another_revision(tiny_dirs, tmp_path):
    run = tmp_path / "run"
    common = (
        *("--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"]),
        *("--data-dir", DATA, "--tasks", "xstest", "-n", "1", "--max-new-tokens", "2"),
        *("--no-calibration", "--fixed", "--out", run),
    )
    assert cli("probe", *common, "--base-revision", "v1").exit_code in (0, 1)
    again = cli("probe", *common, "--base-revision", "v2", "--resume", run)
    assert again.exit_code == 2
    assert "base_revision: run has 'v1', now 'v2'" in again.stderr


def test_a_run_that_cannot_start_writes_junit_errors(tmp_path, monkeypatch):
    summary_file = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    junit = tmp_path / "junit.xml"
    result = cli("probe", "--tasks", "gsm8k,nosuchtask", "--junit", junit, "--out", tmp_path / "r")
    assert result.exit_code == 2
    root = validate(junit.read_text(encoding="utf-8"))
    cases = root.findall("testsuite/testcase")
    assert [s.get("name") for s in root.findall("testsuite")] == ["gsm8k", "nosuchtask"]
    assert all(c.find("error") is not None for c in cases)
    assert "nosuchtask" in (cases[0].find("error").get("message") or "")  # type: ignore[union-attr]
    assert summary_file.read_text(encoding="utf-8").startswith("### pairscope probe: could not")
    assert ET.fromstring(junit.read_text(encoding="utf-8")).get("errors") == "2"


def test_the_action_probes_the_pair_for_real(tiny_dirs, tmp_path):
    """The action's steps with the real CLI: a FAIL (tau = 2) fails the step, and the
    outputs, the JUnit file and the job summary say so."""
    import os
    import sys

    from tests.action_runner import ROOT, run_action

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in (("pairscope", "-m pairscope"), ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {target} "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "100",
    }
    args = f"--data-dir {DATA} -n 2 --max-new-tokens 4 --no-calibration --fixed --tau 2"
    result = run_action(
        tmp_path, env, install="false", check="false", base=str(tiny_dirs["base"]),
        guide=str(tiny_dirs["guide"]), tasks="xstest", out="runs/ci", args=args,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert result.outputs["verdict"] == "FAIL" and result.outputs["exit-code"] == "1"
    assert (tmp_path / result.outputs["report"]).is_file()
    root = validate((tmp_path / result.outputs["junit"]).read_text(encoding="utf-8"))
    assert root.get("failures") == "1"
    assert result.step_summary.startswith("### pairscope probe: FAIL")
