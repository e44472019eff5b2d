"""Self-contained HTML reports, built only from the files of a run directory.

The report reads ``summary.json`` (every number), ``config.json`` (when the run
was made) and the ``generation`` lines of ``records.jsonl`` (transcripts). It
never runs a model and never recomputes a metric: it formats what the run
wrote. The page makes no request of any kind: figures are inline
``data:image/png`` images, style and the one small script are inline, the
font is the system's, and a Content-Security-Policy forbids anything else
(the script is allowed by its hash, so injected markup could not run even if
it got through). All model and dataset text goes through Jinja2 autoescaping.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from pairscope.errors import RunDirError
from pairscope.pipeline.runs import iter_generations, read_config, read_summary
from pairscope.schema import GenerationRecord, Interval, StepRecord, Summary, TaskSummary, dump

__all__ = [
    "compare_rows",
    "iter_generations",
    "paradox_points",
    "read_summary",
    "render_compare",
    "render_report",
]

TEMPLATES = Path(__file__).parent / "templates"
VERDICT_RANK = {"PASS": 0, "WARN": 1, "FAIL": 2}
VERDICT_CLASS = {"PASS": "pass", "WARN": "warn", "FAIL": "fail"}
# Transcript span classes: guide and blend sources (base has none), then "o" for any other.
SOURCE_CLASS = {"guide": "g", "blend": "x"}
IDENTITY_KEYS = (
    "spec",
    "kind",
    "architecture",
    "vocab_size",
    "device",
    "dtype",
    "chat_template",
    "sha256",
)

# The page's only script: the transcript filter. It is allowed by its hash in the
# Content-Security-Policy, so any other script in the page is refused to run.
FILTER_JS = """
(function () {
  var task = document.getElementById("f-task");
  var disagree = document.getElementById("f-disagree");
  var count = document.getElementById("f-count");
  if (!task || !disagree || !count) { return; }
  function apply() {
    var shown = 0;
    document.querySelectorAll(".task-samples").forEach(function (group) {
      group.hidden = task.value !== "all" && group.dataset.task !== task.value;
    });
    document.querySelectorAll(".sample").forEach(function (sample) {
      var kind = sample.dataset.disagree;
      var show = (task.value === "all" || sample.dataset.task === task.value) &&
        (disagree.value === "all" || (disagree.value === "any" && kind !== "none") ||
         disagree.value === kind);
      sample.hidden = !show;
      if (show) { shown += 1; }
    });
    count.textContent = shown + (shown === 1 ? " sample shown" : " samples shown");
  }
  task.addEventListener("change", apply);
  disagree.addEventListener("change", apply);
  apply();
})();
"""
_FILTER_HASH = base64.b64encode(hashlib.sha256(FILTER_JS.encode("utf-8")).digest()).decode()
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_FILTER_HASH}'; base-uri 'none'; form-action 'none'"
)


# ---------------------------------------------------------------- formatting


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def fmt_num(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals, or an em dash when undefined."""
    value = _finite(x)
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_bounds(bounds: Any, digits: int = 2) -> str:
    """An interval ``(low, high)`` as ``[low, high]``, or an em dash when undefined."""
    low, high = (_finite(v) for v in bounds)
    return "—" if low is None or high is None else f"[{low:.{digits}f}, {high:.{digits}f}]"


def fmt_estimate(estimate: Any, digits: int = 3) -> str:
    """``point [low, high]``, e.g. ``0.500 [0.188, 0.812]``; ``—`` when there is no point
    (or no estimate: a template passes whatever a missing section gives)."""
    if not isinstance(estimate, Interval) or _finite(estimate.point) is None:
        return "—"
    point = fmt_num(estimate.point, digits)
    low, high = _finite(estimate.low), _finite(estimate.high)
    if low is None or high is None:
        return f"{point} (no interval)"
    return f"{point} [{low:.{digits}f}, {high:.{digits}f}]"


def fmt_p(p: Any) -> str:
    """A p-value: three significant digits, ``< 0.001`` below that."""
    value = _finite(p)
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3g}"


def fmt_value(value: Any) -> str:
    """A setting or identity value for a key/value table."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt_value(v) for v in value) or "—"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def verdict_class(verdict: Any) -> str:
    """CSS class for a verdict (only known verdicts get a colour)."""
    return VERDICT_CLASS.get(str(verdict), "unknown")


def includes_zero(estimate: Any) -> bool:
    """Whether an interval ``[low, high]`` contains 0 (False when it is undefined)."""
    if not isinstance(estimate, Interval):
        return False
    low, high = _finite(estimate.low), _finite(estimate.high)
    return low is not None and high is not None and low <= 0.0 <= high


def short_spec(spec: Any) -> str:
    """The last path or id component of a model spec (``org/name`` -> ``name``)."""
    text = str(spec or "?").rstrip("/")
    return text.rsplit("/", 1)[-1].rsplit(":", 1)[-1] or text


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters |= {
        "num": fmt_num,
        "bounds": fmt_bounds,
        "est": fmt_estimate,
        "pval": fmt_p,
        "val": fmt_value,
        "vclass": verdict_class,
        "short": short_spec,
    }
    env.tests["zero_in"] = includes_zero
    return env


# ---------------------------------------------------------------- transcripts


@dataclass
class Step:
    """One decoding step ready to show: its text, CSS classes and hover text."""

    text: str
    css: str
    title: str


@dataclass
class MethodView:
    """One method's response to one sample."""

    method: str
    correct: bool | None
    label: str
    text: str
    steps: list[Step]
    positions: int | None
    uncertain: int | None
    intervention_rate: float | None
    stop_reason: str


@dataclass
class SampleView:
    """One sample of one task with the responses of every method."""

    task: str
    sample_id: str
    prompt: str
    target: str
    methods: list[MethodView] = field(default_factory=list)

    @property
    def disagreement(self) -> str:
        """How the methods differ on this sample: ``"correct"``, ``"text"`` or ``"none"``.

        ``"correct"`` means their correctness differs (the text then usually does too);
        ``"text"`` means the same correctness but different responses.
        """
        if len({m.correct for m in self.methods}) > 1:
            return "correct"
        if len({m.text for m in self.methods}) > 1:
            return "text"
        return "none"

    @property
    def disagree(self) -> bool:
        """Whether the methods differ in correctness or in text on this sample."""
        return self.disagreement != "none"


def _step_title(step: StepRecord) -> str:
    """Hover text: the probabilities behind the step (source and flags show as style)."""
    parts = [f"p_base {fmt_num(step.p_base)}"]
    if step.p_guide is not None:
        parts.append(f"p_guide {fmt_num(step.p_guide)}")
    if step.alpha is not None:
        parts.append(f"alpha {fmt_num(step.alpha)}")
    return " · ".join(parts)


def _step(step: StepRecord) -> Step:
    """A step as a span: one-letter classes keep long transcripts small (see the page's CSS)."""
    css = [SOURCE_CLASS.get(step.source, "o")] if step.source != "base" else []
    if step.uncertain:
        css.append("u")
    if step.override:
        css.append("v")
    return Step(text=step.text, css=" ".join(css), title=_step_title(step))


def _method_view(record: GenerationRecord) -> MethodView:
    method = record.method
    if record.steps:
        steps = [_step(s) for s in record.steps]
    else:
        # A method without base positions ("guide") has no steps: its text is all the guide's.
        source = "g" if method == "guide" else "o"
        steps = [Step(text=record.text, css=source, title=f"{method}: no per-step trace")]
    return MethodView(
        method=method,
        correct=record.correct,
        label=fmt_value(record.label),
        text=record.text,
        steps=steps,
        positions=record.positions,
        uncertain=record.uncertain,
        intervention_rate=_finite(record.intervention_rate),
        stop_reason=fmt_value(record.stop_reason),
    )


def sample_views(
    generations: Iterable[GenerationRecord], method_order: Sequence[str]
) -> dict[str, list[SampleView]]:
    """Group generation records by task and sample id, methods in ``method_order``.

    A record repeated for the same task, sample and method (a resumed run)
    replaces the earlier one.
    """
    samples: dict[tuple[str, str], SampleView] = {}
    by_method: dict[tuple[str, str], dict[str, MethodView]] = {}
    for record in generations:
        key = (record.task, record.sample_id)
        if key not in samples:
            samples[key] = SampleView(
                task=key[0],
                sample_id=key[1],
                prompt=record.prompt,
                target=fmt_value(record.target),
            )
            by_method[key] = {}
        view = _method_view(record)
        by_method[key][view.method] = view
    rank = {m: i for i, m in enumerate(method_order)}
    grouped: dict[str, list[SampleView]] = {}
    for key, sample in samples.items():
        views = by_method[key]
        sample.methods = [views[m] for m in sorted(views, key=lambda m: (rank.get(m, 99), m))]
        grouped.setdefault(sample.task, []).append(sample)
    return grouped


# ---------------------------------------------------------------- single-run report


def _method_order(summary: Summary) -> list[str]:
    order = list(summary.settings.methods)
    for info in summary.tasks.values():
        order += [m for m in info.methods if m not in order]
    return order


def primary_method(task: TaskSummary, method_order: Sequence[str]) -> str | None:
    """The method whose intervention rate stands for the task: the summary's gate method,
    else the first one that has an intervention rate."""
    methods = task.methods
    if task.gate_method in methods:
        return task.gate_method
    ordered = [m for m in method_order if m in methods] + [
        m for m in methods if m not in method_order
    ]
    for method in ordered:
        if methods[method].intervention_rate is not None:
            return method
    return None


def _created(run_dir: Path) -> str | None:
    """When the run was made (config.json), or None if its config cannot be read."""
    try:
        return read_config(run_dir).created
    except RunDirError:
        return None


def _figures(summary: Summary) -> dict[str, str]:
    from pairscope.report.plots import figure_pngs

    return {name: data_uri(png) for name, png in figure_pngs(summary).items()}


def render_report(
    run_dir: Path, out: Path | None = None, *, max_samples: int | None = None
) -> Path:
    """Write the self-contained HTML report of a run directory.

    Args:
        run_dir: A run directory (needs ``summary.json``; ``records.jsonl`` adds transcripts).
        out: Where to write the page; defaults to ``run_dir/report.html``.
        max_samples: Show transcripts of at most this many samples per task (the first
            ones, in record order; the page says how many it left out). None shows all:
            every step is a span, so a full benchmark run makes a page of tens of MB.

    Returns:
        The path written.

    Raises:
        RunDirError: ``run_dir`` is not a readable run directory.
    """
    run_dir = Path(run_dir)
    context = _report_context(run_dir, read_summary(run_dir), max_samples)
    target = Path(out) if out is not None else run_dir / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    _environment().get_template("report.html").stream(**context).dump(str(target), encoding="utf-8")
    return target


def _report_context(run_dir: Path, summary: Summary, max_samples: int | None) -> dict[str, Any]:
    """The report page's template values: the run's summary, figures and transcripts."""
    from pairscope.report.plots import task_slugs

    order = _method_order(summary)
    all_samples = sample_views(iter_generations(run_dir), order)
    samples = {
        t: group[:max_samples] if max_samples is not None else group
        for t, group in all_samples.items()
    }
    tasks = summary.tasks
    kind = summary.kind
    return {
        "title": f"pairscope {kind} report",
        "kind": kind,
        "csp": CSP,
        "script": Markup(FILTER_JS),  # a constant of this module, never data
        "overall": summary.overall,
        "base": summary.pair.base if summary.pair else None,
        "guide": summary.pair.guide if summary.pair else None,
        "identity_keys": IDENTITY_KEYS,
        "settings": summary.settings,
        "settings_table": dump(summary.settings),
        "versions": summary.versions,
        "data": summary.data,
        "timing_table": dump(summary.timing),
        "static_overlap": summary.static_overlap,
        "judge": summary.judge,
        "created": _created(run_dir),
        "run_name": run_dir.resolve().name,
        "tasks": tasks,
        "task_ids": task_slugs(tasks),
        "primary": {t: primary_method(info, order) for t, info in tasks.items()},
        "method_order": order,
        "figures": _figures(summary),
        "samples": samples,
        "sample_totals": {t: len(group) for t, group in all_samples.items()},
        "n_methods": len(order),
        "n_disagree": sum(s.disagree for group in samples.values() for s in group),
        "n_disagree_correct": sum(
            s.disagreement == "correct" for group in samples.values() for s in group
        ),
    }


# ---------------------------------------------------------------- comparing pairs


def _task_row(task: TaskSummary, order: Sequence[str]) -> dict[str, Any]:
    method = primary_method(task, order)
    entry = task.methods[method] if method is not None else None
    return {
        "verdict": task.verdict,
        "method": method,
        "ir": entry.intervention_rate if entry else None,
        "score": entry.score if entry else None,
        "n": task.n,
        "threshold": task.threshold,
    }


def _run_row(run_dir: Path) -> dict[str, Any]:
    summary = read_summary(run_dir)
    order = _method_order(summary)
    tasks = {t: _task_row(info, order) for t, info in summary.tasks.items()}
    irs = [_finite(row["ir"].point) for row in tasks.values() if row["ir"] is not None]
    known = [x for x in irs if x is not None]
    return {
        "run": Path(run_dir).resolve().name,
        "path": str(run_dir),
        "base": summary.model_spec("base"),
        "guide": summary.model_spec("guide"),
        "kind": summary.kind,
        "verdict": summary.overall.verdict,
        "mean_ir": sum(known) / len(known) if known else None,
        "tasks": tasks,
    }


def compare_rows(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """One row per run, best pair first.

    Ranked by overall verdict (PASS, then WARN, then FAIL), then by the mean
    over tasks of the task intervention rate, lowest first. A task's rate is
    that of its first method (in the run's method order) that consulted the base.

    Raises:
        RunDirError: one of ``run_dirs`` is not a run directory.
    """
    rows = [_run_row(Path(d)) for d in run_dirs]
    _label_rows(rows)

    def key(row: dict[str, Any]) -> tuple[int, bool, float, str]:
        mean = row["mean_ir"]
        return (
            VERDICT_RANK.get(str(row["verdict"]), 3),
            mean is None,
            mean if mean is not None else 0.0,
            row["label"],
        )

    return sorted(rows, key=key)


def _label_rows(rows: list[dict[str, Any]]) -> None:
    """Give each row a short label: the part of the pair that differs across runs."""
    bases = {r["base"] for r in rows}
    guides = {r["guide"] for r in rows}
    for row in rows:
        if len(bases) == 1 and len(guides) > 1:
            row["label"] = short_spec(row["guide"])
        elif len(guides) == 1 and len(bases) > 1:
            row["label"] = short_spec(row["base"])
        else:
            row["label"] = f"{short_spec(row['base'])} + {short_spec(row['guide'])}"


def paradox_points(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per task, one point per pair: its intervention rate and score (both defined)."""
    points: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        for task, cell in row["tasks"].items():
            ir, score = cell["ir"], cell["score"]
            if ir is None or score is None:
                continue
            x, y = _finite(ir.point), _finite(score.point)
            if x is None or y is None:
                continue
            points.setdefault(task, []).append(
                {
                    "task": task,
                    "label": row["label"],
                    "ir": x,
                    "score": y,
                    "ir_low": ir.low,
                    "ir_high": ir.high,
                }
            )
    return points


def _sample_ids(run_dir: Path) -> dict[str, frozenset[str]]:
    ids: dict[str, set[str]] = {}
    for record in iter_generations(run_dir):
        ids.setdefault(record.task, set()).add(record.sample_id)
    return {t: frozenset(s) for t, s in ids.items()}


def _mismatched_tasks(run_dirs: Sequence[Path]) -> list[str]:
    """Tasks whose sample ids differ between runs (pairs not compared on the same samples)."""
    per_run = [_sample_ids(Path(d)) for d in run_dirs]
    tasks = sorted({t for ids in per_run for t in ids})
    return [t for t in tasks if len({ids.get(t, frozenset()) for ids in per_run}) > 1]


def render_compare(run_dirs: Sequence[Path], out: Path) -> Path:
    """Write an HTML page ranking several pairs and plotting the intervention paradox.

    Args:
        run_dirs: Run directories, one per base/guide pair.
        out: Where to write the page.

    Returns:
        The path written.

    Raises:
        RunDirError: one of ``run_dirs`` is not a run directory.
    """
    from pairscope.report.plots import paradox_png
    from pairscope.summary import paradox_correlation

    rows = compare_rows(run_dirs)
    points = paradox_points(rows)
    tasks = list(dict.fromkeys(t for row in rows for t in row["tasks"]))
    paradox = []
    for task in tasks:
        pts = points.get(task, [])
        r, p, interval = paradox_correlation([pt["ir"] for pt in pts], [pt["score"] for pt in pts])
        paradox.append(
            {
                "task": task,
                "n": len(pts),
                "r": r,
                "r_interval": interval,
                "p": p,
                "figure": data_uri(paradox_png(pts, r, p, title=f"{task}: score vs IR")),
            }
        )
    context = {
        "title": "pairscope pair comparison",
        "csp": CSP,
        "rows": rows,
        "tasks": tasks,
        "paradox": paradox,
        "mismatched": _mismatched_tasks(run_dirs),
    }
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    _environment().get_template("compare.html").stream(**context).dump(
        str(target), encoding="utf-8"
    )
    return target
