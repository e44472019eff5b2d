"""What a CI system reads from a run: a JUnit XML report and the GitHub job summary.

JUnit: one ``<testsuite>`` per task and one ``<testcase>`` per task and method. The
gate method's test case carries the task's verdict: FAIL is a ``<failure>``, WARN (or
no verdict) is ``<skipped>`` (inconclusive), PASS has neither. The other methods of an
evaluation are not gated; their test cases pass and report their numbers. A run that
could not finish writes every test case as an ``<error>``. Pure functions build the
text; :func:`write_text` writes it.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from pairscope.report.console import fmt
from pairscope.schema import MethodSummary, Summary, TaskSummary

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def _counts(suite: ET.Element) -> dict[str, int]:
    cases = suite.findall("testcase")
    return {
        "tests": len(cases),
        "failures": sum(c.find("failure") is not None for c in cases),
        "errors": sum(c.find("error") is not None for c in cases),
        "skipped": sum(c.find("skipped") is not None for c in cases),
    }


def _finish(root: ET.Element) -> str:
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in root.findall("testsuite"):
        counts = _counts(suite)
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{sum(float(c.get('time', 0)) for c in suite):.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{sum(float(s.get('time', 0)) for s in root):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _method_text(task: TaskSummary, method: str, m: MethodSummary) -> str:
    return (
        f"score {fmt(m.score)} ({m.score.correct}/{m.score.n} correct); "
        f"intervention rate {fmt(m.intervention_rate)} ({m.ir_definition or 'none'}); "
        f"threshold {task.threshold:.2f}"
    )


def _testcase(suite: ET.Element, task: str, method: str, seconds: float) -> ET.Element:
    return ET.SubElement(
        suite, "testcase", name=method, classname=f"pairscope.{task}", time=f"{seconds:.3f}"
    )


def junit_xml(summary: Summary) -> str:
    """The JUnit report of a finished run."""
    base, guide = summary.model_spec("base"), summary.model_spec("guide")
    root = ET.Element("testsuites", name=f"pairscope {summary.kind}")
    for task, t in summary.tasks.items():
        suite = ET.SubElement(root, "testsuite", name=task)
        props = ET.SubElement(suite, "properties")
        for name, value in (
            ("base", base),
            ("guide", guide),
            ("gate_method", t.gate_method),
            ("verdict", t.verdict or "none"),
            ("threshold", f"{t.threshold:.2f}"),
            ("samples", str(t.n)),
        ):
            ET.SubElement(props, "property", name=name, value=value)
        for method, m in t.methods.items():
            case = _testcase(suite, task, method, m.seconds)
            text = _method_text(t, method, m)
            if method != t.gate_method:
                ET.SubElement(
                    case, "system-out"
                ).text = f"{text}. Not gated: the verdict is {t.gate_method}'s."
                continue
            message = f"{t.verdict or 'no verdict'}: {t.reason}"
            if t.verdict == "FAIL":
                ET.SubElement(case, "failure", message=message, type="FAIL").text = text
            elif t.verdict != "PASS":
                ET.SubElement(case, "skipped", message=message)
            ET.SubElement(case, "system-out").text = f"{text}. {message}"
    return _finish(root)


def junit_error_xml(command: str, tasks: Iterable[str], methods: Iterable[str], error: str) -> str:
    """The JUnit report of a run that could not finish: every test case is an error."""
    root = ET.Element("testsuites", name=f"pairscope {command}")
    methods = list(methods)
    for task in tasks:
        suite = ET.SubElement(root, "testsuite", name=task)
        for method in methods:
            case = _testcase(suite, task, method, 0.0)
            ET.SubElement(case, "error", message=error, type="error").text = error
    return _finish(root)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def append_step_summary(markdown: str) -> Path | None:
    """Append ``markdown`` to the GitHub Actions job summary when the job has one."""
    target = os.environ.get(STEP_SUMMARY_ENV)
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return path
