"""The composite action's gate step, run as GitHub Actions runs it, with a stand-in
`pairscope` that reports a chosen verdict and exit code: which exits fail the step for
each fail-on, what the outputs say, and what reaches the command line. The real probe
through the action is in tests/tiny/test_ci_outputs.py."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.action_runner import load_action, run_action

STAND_IN = """#!/usr/bin/env bash
# Stand-in pairscope: record the arguments, write the summary a run would, exit as told.
if [ "$1" = check ]; then
  printf '%s\\n' "$@" > "$STAND_IN_ARGS.check"
  exit "${STAND_IN_CHECK_RC:-0}"
fi
printf '%s\\n' "$@" > "$STAND_IN_ARGS"
out=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--out" ]; then out=$2; fi
  shift
done
if [ -n "$STAND_IN_VERDICT" ]; then
  mkdir -p "$out"
  printf '{"overall": {"verdict": "%s"}}' "$STAND_IN_VERDICT" > "$out/summary.json"
fi
exit "$STAND_IN_RC"
"""


@pytest.fixture
def stand_in(tmp_path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "pairscope"
    tool.write_text(STAND_IN, encoding="utf-8")
    tool.chmod(0o755)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    python.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "STAND_IN_ARGS": str(tmp_path / "args.txt"),
    }


def test_the_action_declares_the_inputs_and_outputs_ci_needs():
    action = load_action()
    assert {"base", "guide", "tasks", "fail-on"} <= set(action["inputs"])
    assert {"verdict", "report"} <= set(action["outputs"])
    assert action["inputs"]["fail-on"]["default"] == "fail"


@pytest.mark.parametrize(
    ("fail_on", "verdict", "rc", "step_rc"),
    [
        ("fail", "PASS", 0, 0),
        ("fail", "WARN", 0, 0),
        ("fail", "FAIL", 1, 1),
        ("warn", "WARN", 1, 1),  # --strict: WARN fails the gate, exit 1
        ("never", "FAIL", 1, 0),
        ("never", "", 3, 3),  # could not finish: the step fails whatever fail-on says
        ("fail", "", 2, 2),
    ],
)
def test_gate_step_exit_and_outputs(tmp_path, stand_in, fail_on, verdict, rc, step_rc):
    env = {**stand_in, "STAND_IN_VERDICT": verdict, "STAND_IN_RC": str(rc)}
    result = run_action(
        tmp_path, env, install="false", fail_on=fail_on, tasks="gsm8k", out="runs/ci",
        args="-n 5 --data-dir data",
    )  # fmt: skip
    assert result.returncode == step_rc, result.stdout
    assert result.outputs["verdict"] == (verdict or "ERROR")
    assert result.outputs["exit-code"] == str(rc)
    assert result.outputs["report"] == "runs/ci/report.html"
    assert result.outputs["junit"] == "runs/ci.junit.xml"
    args = Path(stand_in["STAND_IN_ARGS"]).read_text(encoding="utf-8").splitlines()
    assert args[:7] == ["probe", "--base", "embedded:gemma-3-270m", "--guide",
                        "embedded:smollm2-135m-instruct", "--tasks", "gsm8k"]  # fmt: skip
    assert ("--strict" in args) == (fail_on == "warn")
    assert args[-4:] == ["-n", "5", "--data-dir", "data"]  # `args` split as a command line
    assert args[args.index("--junit") + 1] == "runs/ci.junit.xml"


def test_an_unknown_fail_on_stops_before_probing(tmp_path, stand_in):
    env = {**stand_in, "STAND_IN_VERDICT": "PASS", "STAND_IN_RC": "0"}
    result = run_action(tmp_path, env, install="false", fail_on="sometimes")
    assert result.returncode == 2
    assert "fail-on must be fail, warn or never" in result.stdout
    assert not Path(stand_in["STAND_IN_ARGS"]).exists()


def test_a_failed_check_stops_before_probing(tmp_path, stand_in):
    env = {**stand_in, "STAND_IN_VERDICT": "PASS", "STAND_IN_RC": "0", "STAND_IN_CHECK_RC": "2"}
    result = run_action(tmp_path, env, install="false", tasks="xstest")
    assert result.returncode == 2
    check = Path(stand_in["STAND_IN_ARGS"] + ".check").read_text(encoding="utf-8").split()
    assert check == ["check", "--base", "embedded:gemma-3-270m", "--guide",
                     "embedded:smollm2-135m-instruct", "--tasks", "xstest"]  # fmt: skip
    assert not Path(stand_in["STAND_IN_ARGS"]).exists()
    # check: false skips it.
    assert run_action(tmp_path, env, install="false", check="false").returncode == 0


def test_the_documented_workflow_uses_only_inputs_the_action_has():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "ci.md").read_text(encoding="utf-8")
    (workflow,) = [b for b in docs.split("```yaml\n")[1:] if "uses: ./" in b]
    steps = yaml.safe_load(workflow.split("```")[0])["jobs"]["pairscope"]["steps"]
    (gate,) = [step for step in steps if step.get("uses") == "./"]
    assert set(gate["with"]) <= set(load_action()["inputs"])
    outputs = set(load_action()["outputs"])
    used = {m for step in steps for m in re.findall(r"steps\.gate\.outputs\.([\w-]+)", str(step))}
    assert used and used <= outputs


def test_install_step_runs_only_when_asked(tmp_path, stand_in):
    # install=true would pip install; with pip replaced by a recorder, the step's
    # commands are visible without touching the network.
    bin_dir = Path(stand_in["PATH"].split(os.pathsep)[0])
    record = tmp_path / "pip.txt"
    (bin_dir / "python").write_text(
        f'#!/bin/sh\nif [ "$1 $2" = "-m pip" ]; then echo "$@" >> "{record}"; exit 0; fi\n'
        f'exec "{sys.executable}" "$@"\n',
        encoding="utf-8",
    )
    env = {**stand_in, "STAND_IN_VERDICT": "PASS", "STAND_IN_RC": "0"}
    assert run_action(tmp_path, env, install="false").returncode == 0
    assert not record.exists()
    assert run_action(tmp_path, env, install="true").returncode == 0
    installs = record.read_text(encoding="utf-8")
    root = Path(__file__).resolve().parents[2]
    assert f"{root}[embedded]" in installs and "torch==" in installs
    assert installs.count("-m pip install") == 3
