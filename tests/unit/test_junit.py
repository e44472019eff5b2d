"""--junit and the GitHub job summary: a JUnit report that validates against the JUnit
schema (tests/fixtures/junit/junit.xsd), one test case per task and method, each
verdict mapped to its outcome; a run that could not finish is all errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from lxml import etree

from pairscope.pipeline.runs import read_summary
from pairscope.report.ci import append_step_summary, junit_error_xml, junit_xml
from pairscope.schema import Summary
from tests.report_fixtures import TASKS, make_run_dir

SCHEMA = Path(__file__).parents[1] / "fixtures" / "junit" / "junit.xsd"


def validate(text: str) -> ET.Element:
    """Parse ``text`` and check it against the JUnit schema; return its root."""
    schema = etree.XMLSchema(etree.parse(str(SCHEMA)))
    document = etree.fromstring(text.encode("utf-8"))
    assert schema.validate(document), schema.error_log
    return ET.fromstring(text)


def with_verdicts(summary: Summary, verdicts: dict[str, str | None]) -> Summary:
    tasks = {
        name: task.model_copy(update={"verdict": verdicts[name]})
        for name, task in summary.tasks.items()
    }
    return summary.model_copy(update={"tasks": tasks})


def outcome(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory) -> Summary:
    run = make_run_dir(tmp_path_factory.mktemp("eval") / "run", "evaluate")
    return read_summary(run)


def test_the_schema_check_rejects_a_malformed_report():
    # The check is not vacuous: a test case without a name, or with two outcomes, fails.
    schema = etree.XMLSchema(etree.parse(str(SCHEMA)))
    nameless = '<testsuites><testsuite name="a" tests="1" failures="0" errors="0">'
    nameless += "<testcase/></testsuite></testsuites>"
    assert not schema.validate(etree.fromstring(nameless))
    two = '<testsuites><testsuite name="a" tests="1" failures="1" errors="1">'
    two += '<testcase name="m"><failure/><error/></testcase></testsuite></testsuites>'
    assert not schema.validate(etree.fromstring(two))


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [("FAIL", "failure"), ("WARN", "skipped"), (None, "skipped"), ("PASS", "passed")],
)
def test_each_verdict_maps_to_its_outcome(evaluation, verdict, expected):
    summary = with_verdicts(evaluation, dict.fromkeys(TASKS, verdict))
    root = validate(junit_xml(summary))
    for suite in root.findall("testsuite"):
        task = summary.tasks[suite.get("name", "")]
        gate = [c for c in suite.findall("testcase") if c.get("name") == task.gate_method]
        assert [outcome(c) for c in gate] == [expected]
        if expected != "passed":
            message = gate[0].find(expected).get("message")  # type: ignore[union-attr]
            assert task.reason in message


def test_one_case_per_task_and_method_and_counts_that_add_up(evaluation):
    summary = with_verdicts(evaluation, {"gsm8k": "FAIL", "xstest": "WARN"})
    root = validate(junit_xml(summary))
    cases = {
        (suite.get("name"), case.get("name")): outcome(case)
        for suite in root.findall("testsuite")
        for case in suite.findall("testcase")
    }
    methods = list(summary.settings.methods)
    assert set(cases) == {(task, m) for task in summary.tasks for m in methods}
    # Only the gate method carries the verdict; the other methods are reported, not gated.
    for (task, method), result in cases.items():
        if method != summary.tasks[task].gate_method:
            assert result == "passed"
    assert root.get("tests") == str(len(cases))
    assert root.get("failures") == "1" and root.get("skipped") == "1"
    assert root.get("errors") == "0"
    for suite in root.findall("testsuite"):
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert props["verdict"] == summary.tasks[suite.get("name", "")].verdict
        assert props["base"] == summary.model_spec("base")


def test_a_run_that_could_not_finish_is_all_errors():
    text = junit_error_xml("probe", ["gsm8k", "xstest"], ["nudging"], "Out of memory <&>")
    root = validate(text)
    cases = root.findall("testsuite/testcase")
    assert [outcome(c) for c in cases] == ["error", "error"]
    assert cases[0].find("error").get("message") == "Out of memory <&>"  # type: ignore[union-attr]
    assert root.get("errors") == "2" and root.get("tests") == "2"


def test_step_summary_is_appended_only_when_the_job_has_one(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_step_summary("### one") is None
    target = tmp_path / "step_summary.md"
    target.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert append_step_summary("### one") == target
    append_step_summary("### two\n")
    assert target.read_text(encoding="utf-8") == "earlier step\n### one\n### two\n"


def test_an_unwritable_job_summary_costs_a_warning_not_the_verdict(tmp_path, monkeypatch, capsys):
    from pairscope.cli.run import _step_summary

    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "no-such-dir" / "summary.md"))
    _step_summary("### pairscope probe: PASS")  # returns: the exit code stays the verdict's
    assert "warning: job summary not written" in capsys.readouterr().err
