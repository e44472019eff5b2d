"""The HTML report and its figures, rendered from synthetic run directories."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from pairscope.errors import RunDirError
from pairscope.report.html import compare_rows, paradox_points, render_compare, render_report
from pairscope.report.plots import (
    _display_bins,
    accuracy_png,
    ir_distribution_png,
    overlap_png,
    paradox_png,
    reliability_png,
    save_figures,
)
from tests.report_fixtures import XSS_IMG, XSS_PAYLOAD, XSS_SCRIPT, make_run_dir

PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Collects what the tests inspect: tags, their attributes, and inline script and style text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in = tag
            (self.scripts if tag == "script" else self.styles).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data
        else:
            self.text.append(data)

    def shown(self) -> str:
        """Text content plus attribute values a reader can see (titles, alt text)."""
        return " ".join(self.text + self.attr_values("title") + self.attr_values("alt"))

    def attr_values(self, name: str) -> list[str]:
        return [a[name] or "" for _, a in self.tags if name in a]


def summary_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def interval(e: dict[str, Any]) -> str:
    """The format the report promises: point [low, high], three decimals."""
    return f"{e['point']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("probe") / "run", "probe")


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_dir(
        tmp_path_factory.mktemp("evaluate") / "run",
        "evaluate",
        methods=["blendin", "nudging", "guide"],
    )


@pytest.fixture(scope="module")
def xss_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run_dir(
        tmp_path_factory.mktemp("xss") / "run",
        "evaluate",
        payload_text=XSS_PAYLOAD,
        guide=f"hub:evil/{XSS_IMG}",
    )


@pytest.fixture(scope="module")
def probe_html(probe_run: Path) -> str:
    return render_report(probe_run).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def eval_html(eval_run: Path) -> str:
    return render_report(eval_run).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def xss_html(xss_run: Path) -> str:
    return render_report(xss_run).read_text(encoding="utf-8")


# ---------------------------------------------------------------- content


def test_default_output_path_and_custom_out(probe_run: Path, tmp_path: Path) -> None:
    assert render_report(probe_run) == probe_run / "report.html"
    out = tmp_path / "elsewhere" / "page.html"
    assert render_report(probe_run, out) == out
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("which", ["probe", "evaluate"])
def test_report_shows_verdicts_tasks_scores_and_rates(
    which: str, probe_run: Path, eval_run: Path, probe_html: str, eval_html: str
) -> None:
    run, page = (probe_run, probe_html) if which == "probe" else (eval_run, eval_html)
    summary = summary_of(run)
    overall = summary["overall"]["verdict"]
    assert f'<div class="big">{overall}</div>' in page
    assert summary["pair"]["base"]["spec"] in page and summary["pair"]["guide"]["spec"] in page
    for task, info in summary["tasks"].items():
        assert f'id="task-{task}"' in page
        assert html.escape(info["reason"]) in page
        for method, entry in info["methods"].items():
            score = entry["score"]
            assert interval(score) in page, (task, method)
            assert f"{score['correct']}/{score['n']}" in page
            if entry["intervention_rate"] is not None:
                assert interval(entry["intervention_rate"]) in page
                assert interval(entry["override_rate"]) in page
    for name, version in summary["versions"].items():
        assert f'<th>{name}</th><td class="mono">{version}</td>' in page
    for entry in summary["data"].values():
        assert entry["sha256"] in page and entry["file"] in page


def test_literal_wilson_interval_is_shown(probe_run: Path, probe_html: str) -> None:
    """3 of 6 correct has the Wilson 95 % interval [0.188, 0.812]: a hand-checked value."""
    scores = [
        m["score"] for t in summary_of(probe_run)["tasks"].values() for m in t["methods"].values()
    ]
    assert any(s["correct"] == 3 and s["n"] == 6 for s in scores)
    assert "0.500 [0.188, 0.812]" in probe_html


def test_subset_notice_only_for_subsets(probe_html: str) -> None:
    assert "n = 6 of 1319 samples: a subset; intervals are wide." in probe_html
    # xstest used its whole (tiny) set: no notice for it.
    assert "n = 6 of 6 samples" not in probe_html
    assert probe_html.count("a subset; intervals are wide") == 1


def test_evaluate_sections(eval_run: Path, eval_html: str) -> None:
    info = summary_of(eval_run)["tasks"]["gsm8k"]
    for model in ("base", "guide"):
        cal = info["calibration"][model]
        for key in ("ece", "ece_equal_mass", "mce"):
            assert interval(cal[key]) in eval_html
    assert str(escape(info["arbitration"]["statement"])) in eval_html  # Jinja's escaping
    for pick, accuracy in info["arbitration"]["accuracy"].items():
        assert f'<td>{pick}</td><td class="n">{interval(accuracy)}</td>' in eval_html
    comparison = info["comparisons"][0]
    assert interval(comparison["diff"]) in eval_html
    assert f"{comparison['mde']:.3f}" in eval_html
    mc = comparison["mcnemar"]
    assert f"{mc['b01']} / {mc['b10']}" in eval_html
    assert f"{mc['p_value']:.3g}" in eval_html
    for rate in info["methods"]["blendin"].get("rates", {}).values():
        assert interval(rate) in eval_html
    xstest = summary_of(eval_run)["tasks"]["xstest"]["methods"]["nudging"]["rates"]
    assert interval(xstest["refusal_on_unsafe"]) in eval_html
    # The guide method has no intervention rate: shown as a dash, not as a number or "None".
    assert "None" not in Page(eval_html).shown()


def test_figures_are_inline_pngs(eval_html: str) -> None:
    sources = Page(eval_html).attr_values("src")
    assert len(sources) >= 5  # accuracy, IR, overlap, a reliability diagram per task
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)


def test_no_external_references(probe_html: str, eval_html: str, xss_html: str) -> None:
    for page in (probe_html, eval_html, xss_html):
        parsed = Page(page)
        links = parsed.attr_values("src") + parsed.attr_values("href")
        assert links
        for link in links:
            assert link.startswith(("data:", "#")), link
        for tag, attrs in parsed.tags:
            assert tag not in ("link", "iframe", "object", "embed", "base")
            assert not (tag == "script" and "src" in attrs)
        css = "".join(parsed.styles) + " ".join(parsed.attr_values("style"))
        assert "@import" not in css
        assert all(u.startswith("data:") for u in re.findall(r"url\(\s*['\"]?([^)'\"]*)", css))
        assert "http://" not in page and "https://" not in page


def test_csp_allows_exactly_the_inline_script(probe_html: str) -> None:
    parsed = Page(probe_html)
    csp = next(
        a["content"] or ""
        for t, a in parsed.tags
        if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in csp and "img-src data:" in csp
    assert len(parsed.scripts) == 1
    digest = base64.b64encode(hashlib.sha256(parsed.scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp


# ---------------------------------------------------------------- transcripts


def expected_span(step: dict[str, Any]) -> str:
    """A step as the report promises: class by source and flags, probabilities on hover."""
    classes = {"guide": ["g"], "blend": ["x"], "base": []}[step["source"]]
    classes += ["u"] * step["uncertain"] + ["v"] * step["override"]
    title = f"p_base {step['p_base']:.3f}"
    if step["p_guide"] is not None:
        title += f" · p_guide {step['p_guide']:.3f}"
    if step["alpha"] is not None:
        title += f" · alpha {step['alpha']:.3f}"
    css = f' class="{" ".join(classes)}"' if classes else ""
    return f'<span{css} title="{title}">{html.escape(step["text"], quote=False)}</span>'


def test_transcript_steps_coloured_with_hover(eval_run: Path, eval_html: str) -> None:
    lines = (eval_run / "records.jsonl").read_text(encoding="utf-8").splitlines()
    records = [r for r in map(json.loads, lines[:-1]) if r["kind"] == "generation"]
    for method in ("blendin", "nudging"):
        record = next(r for r in records if r["method"] == method)
        spans = "".join(expected_span(s) for s in record["steps"])
        assert f'<div class="response tx">{spans}</div>' in eval_html, method
    sources = {s["source"] for r in records for s in r["steps"]}
    assert sources == {"base", "guide", "blend"}
    assert ' class="x u" title="p_base ' in eval_html and " · alpha " in eval_html
    assert ' class="g u v" title="p_base ' in eval_html


def test_samples_grouped_by_task_truncated_line_skipped(eval_run: Path, eval_html: str) -> None:
    for task in summary_of(eval_run)["tasks"]:
        assert f'<div class="task-samples" data-task="{task}">' in eval_html
        assert eval_html.count(f'<details class="sample" data-task="{task}"') == 6


def test_max_samples_limits_transcripts(eval_run: Path, tmp_path: Path) -> None:
    page = render_report(eval_run, tmp_path / "r.html", max_samples=2).read_text(encoding="utf-8")
    assert page.count('<details class="sample"') == 4
    assert "the first 2 of 6 samples" in page


def test_disagreement_marks(eval_html: str, probe_html: str) -> None:
    # Fixture sample 1 always splits correctness between methods.
    assert eval_html.count('data-disagree="correct"') >= 2
    # One method: nothing to compare, and the filter is disabled.
    assert 'data-disagree="none"' in probe_html and 'data-disagree="correct"' not in probe_html
    assert '<select id="f-disagree" disabled' in probe_html


def test_xss_payload_is_escaped(xss_html: str) -> None:
    assert XSS_SCRIPT not in xss_html and XSS_IMG not in xss_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in xss_html
    assert "&lt;img src=x onerror=alert(1)&gt;" in xss_html
    parsed = Page(xss_html)
    assert len(parsed.scripts) == 1 and "alert" not in parsed.scripts[0]
    assert not [t for t, _ in parsed.tags if t == "img" and "onerror" in _]
    assert all(not k.startswith("on") for _, attrs in parsed.tags for k in attrs)
    assert all(src.startswith("data:") for src in parsed.attr_values("src"))


# ---------------------------------------------------------------- errors


def test_missing_dir_is_a_run_dir_error(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"is not a pairscope run directory \(no summary.json\)"):
        render_report(tmp_path / "nope")
    with pytest.raises(RunDirError, match="no summary.json") as info:
        render_report(tmp_path)
    assert info.value.hint


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not readable JSON"),
        ('{"schema_version": 1}', "no 'tasks'"),
        ('{"schema_version": 9, "tasks": {}}', "schema_version 9"),
        ('{"schema_version": 1, "tasks": {}}', "rounds / base-written tokens"),
    ],
)
def test_bad_summary_is_a_run_dir_error(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "summary.json").write_text(content, encoding="utf-8")
    with pytest.raises(RunDirError, match=match):
        render_report(tmp_path)
    with pytest.raises(RunDirError):
        compare_rows([tmp_path])


def test_a_summary_off_the_schema_is_refused_naming_the_field(tmp_path: Path) -> None:
    """A hand-made summary with sections missing is not guessed at: the field is named."""
    summary = {"schema_version": 2, "overall": None, "tasks": {"gsm8k": {"verdict": "PASS"}}}
    (tmp_path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    with pytest.raises(RunDirError, match="does not match schema version 3: kind: Field required"):
        render_report(tmp_path)
    with pytest.raises(RunDirError, match="does not match schema version 3"):
        compare_rows([tmp_path])


def test_every_optional_section_empty_renders(probe_run: Path, tmp_path: Path) -> None:
    """Optional sections null, undefined estimates, no verdict, odd task names: no crash, no
    "None" on the page, and task anchors stay unique."""
    summary = summary_of(probe_run)
    task = summary["tasks"]["gsm8k"]
    undefined = {"point": None, "low": None, "high": None}
    for name in ("overlap", "calibration", "answer_calibration", "arbitration", "sequential"):
        task[name] = None
    task["verdict"] = None
    task["comparisons"] = []
    method = task["methods"]["nudging"]
    method |= {"intervention_rate": undefined, "ir_distribution": None, "per_sample_ir": [None]}
    method["score"] |= undefined
    summary["pair"] = None
    summary["static_overlap"] = None
    summary["tasks"] = {"odd<task>": task, "odd_task": summary["tasks"]["xstest"]}
    summary["tasks"]["odd_task"]["methods"]["nudging"]["intervention_rate"] = undefined
    (tmp_path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    page = render_report(tmp_path).read_text(encoding="utf-8")
    assert "odd&lt;task&gt;" in page and "None" not in Page(page).shown()
    assert 'id="task-odd_task"' in page and 'id="task-odd_task-2"' in page
    assert save_figures(tmp_path)
    row = compare_rows([tmp_path])[0]
    assert row["mean_ir"] is None and row["base"] == summary["settings"]["base"]


def test_summary_only_run_renders(probe_run: Path, tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_bytes((probe_run / "summary.json").read_bytes())
    page = render_report(tmp_path).read_text(encoding="utf-8")
    assert "No generation records" in page


# ---------------------------------------------------------------- compare


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("pairs")
    # (guide, chance of an uncertain position, accuracy, seed); the test checks the verdicts.
    specs = [
        ("hub:org/fails", 0.6, 0.2, 0),
        ("hub:org/passes", 0.02, 0.8, 1),
        ("hub:org/warns-high", 0.2, 0.5, 3),
        ("hub:org/warns-low", 0.25, 0.6, 4),
    ]
    return [
        make_run_dir(
            root / guide.split("/")[1], "probe", guide=guide, ir_level=ir, accuracy=acc, seed=seed
        )
        for guide, ir, acc, seed in specs
    ]


def test_compare_ranking(pairs: list[Path]) -> None:
    verdicts = {p.name: summary_of(p)["overall"]["verdict"] for p in pairs}
    assert verdicts == {
        "fails": "FAIL",
        "passes": "PASS",
        "warns-high": "WARN",
        "warns-low": "WARN",
    }
    rows = compare_rows(pairs)
    assert [r["label"] for r in rows] == ["passes", "warns-low", "warns-high", "fails"]
    assert rows[1]["mean_ir"] < rows[2]["mean_ir"]
    expected = [
        sum(
            t["methods"]["nudging"]["intervention_rate"]["point"]
            for t in summary_of(p)["tasks"].values()
        )
        / 2
        for p in pairs
    ]
    assert sorted(r["mean_ir"] for r in rows) == pytest.approx(sorted(expected))


def test_compare_page_and_paradox(pairs: list[Path], tmp_path: Path) -> None:
    from scipy.stats import pearsonr

    rows = compare_rows(pairs)
    points = paradox_points(rows)
    assert set(points) == {"gsm8k", "xstest"} and all(len(v) == 4 for v in points.values())
    page = render_compare(pairs, tmp_path / "compare.html").read_text(encoding="utf-8")
    parsed = Page(page)
    assert len(parsed.attr_values("src")) == 2
    assert all(s.startswith("data:image/png;base64,") for s in parsed.attr_values("src"))
    for task, pts in points.items():
        fit = pearsonr([p["ir"] for p in pts], [p["score"] for p in pts])
        ci = fit.confidence_interval()  # Fisher z, the oracle for the page's interval
        r, bounds = f"{fit.statistic:.2f}", f"[{ci.low:.2f}, {ci.high:.2f}]"
        row = f'<td class="n">{r}</td><td class="n">{bounds}</td>'
        assert f'<td>{task}</td><td class="n">4</td>{row}' in page
    order = [
        page.index(f"hub:org/{name}") for name in ("passes", "warns-low", "warns-high", "fails")
    ]
    assert order == sorted(order)
    assert "Not compared on identical samples" not in page


def test_compare_two_pairs_has_undefined_r(pairs: list[Path], tmp_path: Path) -> None:
    page = render_compare(pairs[:2], tmp_path / "c.html").read_text(encoding="utf-8")
    undefined = '<td class="n">—</td>' * 3  # r, its interval, p
    assert f'<td class="n">2</td>{undefined}' in page


def test_compare_flags_different_samples(pairs: list[Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_run_dir(other, "probe")
    lines = (
        (other / "records.jsonl")
        .read_text(encoding="utf-8")
        .replace('"sample_id": "', '"sample_id": "x')
    )
    (other / "records.jsonl").write_text(lines, encoding="utf-8")
    page = render_compare([pairs[0], other], tmp_path / "c.html").read_text(encoding="utf-8")
    assert "Not compared on identical samples: gsm8k, xstest" in page


# ---------------------------------------------------------------- plots


def test_plot_functions_return_png(eval_run: Path) -> None:
    info = summary_of(eval_run)["tasks"]
    estimate = {"point": 0.3, "low": 0.2, "high": 0.4}
    pngs = [
        accuracy_png(
            {t: {m: v["score"] for m, v in i["methods"].items()} for t, i in info.items()}
        ),
        ir_distribution_png({"gsm8k": {"nudging": [0.1, None, float("nan"), 0.5]}}, {"gsm8k": 0.2}),
        reliability_png(info["gsm8k"]["calibration"], "both"),
        reliability_png({"base": info["gsm8k"]["calibration"]["base"]}, "one"),
        overlap_png({"gsm8k": info["gsm8k"]["overlap"], "xstest": None}),
        paradox_png(
            [
                {"ir": 0.1, "score": 0.6, "label": "a", "task": "t"},
                {"ir": 0.3, "score": None, "label": "b"},
            ],
            float("nan"),
            float("nan"),
        ),
        accuracy_png({"t": {"m": {"point": None, "low": None, "high": None}, "n": estimate}}),
        accuracy_png({}),
        ir_distribution_png({}),
        overlap_png({}),
        reliability_png({}, "none"),
    ]
    import io

    import matplotlib.image as mpimg

    for png in pngs:
        assert png.startswith(PNG)
        pixels = mpimg.imread(io.BytesIO(png), format="png")
        # A real figure: something drawn on it (axes, a message), not a blank canvas.
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and pixels.std() > 0.01


def test_degenerate_top_bin_is_merged() -> None:
    bins = [
        {"lower": 0.0, "upper": 0.5, "count": 0, "mean_confidence": None, "accuracy": None},
        {"lower": 0.5, "upper": 1.0, "count": 3, "mean_confidence": 0.8, "accuracy": 0.0},
        {"lower": 1.0, "upper": 1.0, "count": 1, "mean_confidence": 1.0, "accuracy": 1.0},
    ]
    shown = _display_bins(bins)
    assert len(shown) == 2
    assert shown[1]["upper"] == 1.0 and shown[1]["count"] == 4
    assert shown[1]["mean_confidence"] == pytest.approx((3 * 0.8 + 1.0) / 4)
    assert shown[1]["accuracy"] == pytest.approx(0.25)
    assert shown[0]["count"] == 0 and shown[0]["accuracy"] != shown[0]["accuracy"]  # NaN


def test_save_figures(eval_run: Path) -> None:
    paths = save_figures(eval_run)
    names = {p.name for p in paths}
    for task in ("gsm8k", "xstest"):
        for model in ("base", "guide", "overlaid"):
            assert f"reliability_{task}_{model}.png" in names
    assert {"accuracy.png", "intervention_rate.png", "overlap.png"} <= names
    assert all(p.parent == eval_run / "figures" and p.read_bytes().startswith(PNG) for p in paths)


def test_paradox_labels_of_close_points_part() -> None:
    from pairscope.report.plots import labels_below

    # Two guides a few points apart (one race's cells): the lower label goes under its
    # point, the upper one over it, whichever came first.
    assert labels_below([0.6, 0.675]) == [True, False]
    assert labels_below([0.675, 0.6]) == [False, True]
    # Equal scores part too; far-apart points keep their labels above.
    assert labels_below([0.2, 0.2]) == [True, False]
    assert labels_below([0.1, 0.5, 0.9]) == [False, False, False]
    assert labels_below([]) == []
