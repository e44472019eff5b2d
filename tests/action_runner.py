"""Run the steps of the repository's composite action (action.yml) as GitHub Actions
would: each `run:` under `bash --noprofile --norc -eo pipefail`, its `env:` with the
`${{ inputs.* }}` and `${{ github.* }}` expressions filled in, a step's `if:` on an
input honoured, and GITHUB_OUTPUT / GITHUB_STEP_SUMMARY as files. `act` needs Docker,
which a test machine may not have; this covers what the action itself does."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"
_EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
_IF_INPUT = re.compile(r"^inputs\.([\w-]+)\s*==\s*'([^']*)'$")


@dataclass
class ActionResult:
    returncode: int
    stdout: str
    outputs: dict[str, str]
    step_summary: str


def load_action() -> dict[str, Any]:
    return yaml.safe_load(ACTION.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _inputs(action: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    unknown = set(given) - set(action["inputs"])
    assert not unknown, f"not inputs of the action: {unknown}"
    declared = action["inputs"].items()
    return {name: given.get(name, str(spec.get("default", ""))) for name, spec in declared}


def _expand(text: str, inputs: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        expr = match.group(1)
        if expr.startswith("inputs."):
            return inputs[expr.removeprefix("inputs.")]
        if expr == "github.action_path":
            return str(ROOT)
        raise AssertionError(f"expression the runner does not know: {expr}")

    return _EXPR.sub(value, text)


def _runs(step: dict[str, Any], inputs: dict[str, str]) -> bool:
    condition = step.get("if")
    if condition is None:
        return True
    match = _IF_INPUT.match(condition.strip())
    assert match, f"condition the runner does not know: {condition}"
    return inputs[match.group(1)] == match.group(2)


def _outputs(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if line)
    return {key: value for key, value in pairs}


def run_action(
    workdir: Path, env: dict[str, str], timeout: float = 600.0, **given: str
) -> ActionResult:
    """Run the action's steps in ``workdir`` with ``env`` on top of the process's own;
    stop at the first step that fails, as a job does. Inputs are keyword arguments
    (``fail_on`` for ``fail-on``)."""
    action = load_action()
    assert action["runs"]["using"] == "composite"
    inputs = _inputs(action, {k.replace("_", "-"): v for k, v in given.items()})
    output_file, summary_file = workdir / "github_output", workdir / "step_summary.md"
    output_file.touch()
    summary_file.touch()
    base_env = {
        **os.environ,
        **env,
        "GITHUB_OUTPUT": str(output_file),
        "GITHUB_STEP_SUMMARY": str(summary_file),
        "GITHUB_ACTIONS": "true",
    }
    step_outputs: dict[str, dict[str, str]] = {}
    rc, printed = 0, ""
    for step in action["runs"]["steps"]:
        if not _runs(step, inputs):
            continue
        assert step["shell"] == "bash"
        output_file.write_text("", encoding="utf-8")
        step_env = {k: _expand(str(v), inputs) for k, v in (step.get("env") or {}).items()}
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=workdir,
            env={**base_env, **step_env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        printed += proc.stdout + proc.stderr
        step_outputs[step.get("id", "")] = _outputs(output_file)
        rc = proc.returncode
        if rc != 0:
            break
    outputs = {}
    for name, spec in action["outputs"].items():
        match = re.fullmatch(r"\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}", spec["value"])
        assert match, spec["value"]
        step_id, key = match.groups()
        if key in step_outputs.get(step_id, {}):
            outputs[name] = step_outputs[step_id][key]
    return ActionResult(rc, printed, outputs, summary_file.read_text(encoding="utf-8"))
