"""Figures for the report, drawn from ``summary.json`` values: every function returns PNG bytes.

Figures use matplotlib's object API (``Figure`` on the Agg canvas), not ``pyplot``: no
display, no global figure registry to leak, and a caller's backend is never switched.
The drawing functions take the summary's parts in their JSON form (estimates are
``{"point", "low", "high"}`` dicts whose values may be None, left out of a plot);
:func:`figure_pngs` reads the typed summary and feeds them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pairscope.report.canvas import (
    MODEL_COLOURS,
    PALETTE,
    TEXT,
    blank_png,
    figure,
    finite,
    interval,
    to_png,
)
from pairscope.schema import Calibration, Summary, dump

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "accuracy_png",
    "figure_pngs",
    "ir_distribution_png",
    "overlap_png",
    "paradox_png",
    "reliability_band_png",
    "reliability_png",
    "safe_name",
    "save_figures",
    "task_slugs",
]


def _errorbar(
    ax: Axes, x: float, estimate: Any, colour: str, label: str | None, marker: str = "o"
) -> bool:
    """Draw one point with its interval (if known); return whether anything was drawn."""
    point, low, high = interval(estimate)
    if point is None:
        return False
    if low is not None and high is not None:
        err = [[max(point - low, 0.0)], [max(high - point, 0.0)]]
        ax.errorbar(
            [x],
            [point],
            yerr=err,
            fmt=marker,
            color=colour,
            ecolor=colour,
            capsize=3,
            markersize=5,
            linewidth=1.2,
            label=label,
        )
    else:
        ax.plot([x], [point], marker, color=colour, markersize=5, label=label)
    return True


def _grouped(ax: Axes, groups: Sequence[str], series: Mapping[str, Mapping[str, Any]]) -> None:
    """Points with intervals, grouped along x by ``groups``, one colour per series."""
    names = list(series)
    width = 0.7 / max(len(names), 1)
    for i, name in enumerate(names):
        labelled = False
        for g, group in enumerate(groups):
            x = g - 0.35 + width * (i + 0.5)
            colour = PALETTE[i % len(PALETTE)]
            drawn = _errorbar(ax, x, series[name].get(group), colour, None if labelled else name)
            labelled = labelled or drawn
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(-0.02, 1.02)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def accuracy_png(task_methods: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Accuracy per method and task with Wilson 95 % intervals as error bars.

    Args:
        task_methods: ``{task: {method: score}}`` where a score is an estimate
            mapping (``summary.json``'s ``methods[m]["score"]``).
    """
    tasks = list(task_methods)
    if not tasks:
        return blank_png("no tasks")
    methods: list[str] = []
    for per_method in task_methods.values():
        methods += [m for m in per_method if m not in methods]
    series = {m: {t: task_methods[t].get(m) for t in tasks} for m in methods}
    fig, (ax,) = figure(max(4.0, 1.3 * len(tasks) + 2.2), 2.8)
    _grouped(ax, tasks, series)
    ax.set_ylabel("score (95 % Wilson CI)", fontsize=8, color=TEXT)
    ax.set_title("Score per task and method", fontsize=10, color=TEXT, loc="left")
    return to_png(fig)


def ir_distribution_png(
    per_task_per_sample_ir: Mapping[str, Mapping[str, Sequence[float | None]]],
    thresholds: Mapping[str, float | None] | None = None,
) -> bytes:
    """Per-sample intervention rates as a strip plot, one panel per task.

    Args:
        per_task_per_sample_ir: ``{task: {method: [IR of each sample]}}``; None and
            NaN entries (samples without base positions) are left out.
        thresholds: ``{task: threshold}``; drawn as a dashed vertical line.
    """
    import numpy as np

    tasks = [t for t, per in per_task_per_sample_ir.items() if per]
    if not tasks:
        return blank_png("no intervention rates (no method consulted the base model)")
    fig, axes = figure(6.4, 0.5 + 1.1 * len(tasks), rows=len(tasks), sharex=True)
    rng = np.random.default_rng(0)  # jitter only; fixed so figures are reproducible
    for ax, task in zip(axes, tasks):
        methods = list(per_task_per_sample_ir[task])
        for i, method in enumerate(methods):
            values = [v for v in map(finite, per_task_per_sample_ir[task][method]) if v is not None]
            y = i + rng.uniform(-0.18, 0.18, size=len(values))
            colour = PALETTE[i % len(PALETTE)]
            ax.scatter(values, y, s=12, color=colour, alpha=0.6, linewidths=0)
            if values:
                ax.plot(
                    [float(np.median(values))] * 2, [i - 0.3, i + 0.3], color=colour, linewidth=2
                )
        threshold = finite((thresholds or {}).get(task))
        if threshold is not None:
            ax.axvline(threshold, color="#C0392B", linestyle="--", linewidth=1)
            ax.text(
                threshold,
                len(methods) - 0.45,
                f" threshold {threshold:g}",
                fontsize=7,
                color="#C0392B",
                va="bottom",
            )
        ax.set_yticks(range(len(methods)), methods)
        ax.set_ylim(-0.6, len(methods) - 0.1)
        ax.set_ylabel(task, fontsize=8, color=TEXT, rotation=0, ha="right", va="center")
        ax.grid(False, axis="y")
    axes[-1].set_xlim(-0.02, 1.02)
    axes[-1].set_xlabel("intervention rate per sample (bar: median)", fontsize=8, color=TEXT)
    axes[0].set_title("Intervention rate per sample", fontsize=10, color=TEXT, loc="left")
    return to_png(fig)


def _display_bins(bins: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Bins ready to draw: the degenerate ``[1, 1]`` bin merged into the top regular bin.

    The pipeline writes ``n_bins + 1`` bins, the last holding confidences of
    exactly 1.0. For display it joins ``[1 - 1/B, 1)`` with count-weighted
    means, so the top bin reads as ``[1 - 1/B, 1]``. Empty bins are kept with
    zero count and no accuracy.
    """
    rows = [dict(b) for b in bins]
    if len(rows) >= 2 and finite(rows[-1].get("lower")) == finite(rows[-1].get("upper")):
        last, top = rows.pop(), rows[-1]
        n_last, n_top = int(last.get("count") or 0), int(top.get("count") or 0)
        merged: dict[str, Any] = {
            "lower": top["lower"],
            "upper": last["upper"],
            "count": n_top + n_last,
        }
        for key in ("mean_confidence", "accuracy"):
            parts = [(n, finite(b.get(key))) for n, b in ((n_top, top), (n_last, last))]
            filled = [(n, v) for n, v in parts if n > 0 and v is not None]
            total = sum(n for n, _ in filled)
            merged[key] = sum(n * v for n, v in filled) / total if total else None
        rows[-1] = merged
    out = []
    for b in rows:
        lower, upper = finite(b.get("lower")), finite(b.get("upper"))
        if lower is None or upper is None:
            continue
        count = float(b.get("count") or 0)
        out.append(
            {
                "lower": lower,
                "upper": upper,
                "count": count,
                "mean_confidence": _nan_if_none(b.get("mean_confidence"), count),
                "accuracy": _nan_if_none(b.get("accuracy"), count),
            }
        )
    return out


def _nan_if_none(x: Any, count: float) -> float:
    value = finite(x)
    return math.nan if value is None or count == 0 else value


def reliability_png(calibration_by_model: Mapping[str, Mapping[str, Any]], title: str) -> bytes:
    """Reliability diagram (accuracy per bin vs the diagonal) over a confidence histogram.

    Args:
        calibration_by_model: ``{model: CAL}`` for one model or several overlaid,
            CAL being a ``summary.json`` calibration entry with ``bins`` (``n_bins + 1``
            of them, the last the ``[1, 1]`` bin, merged into the top bin here).
        title: Figure title.
    """
    models = [m for m, cal in calibration_by_model.items() if cal and cal.get("bins")]
    if not models:
        return blank_png(f"{title}: no calibration data")
    fig, top, bottom = _reliability_axes(4.6)
    for i, model in enumerate(models):
        cal = calibration_by_model[model]
        colour = MODEL_COLOURS.get(model, PALETTE[i % len(PALETTE)])
        bins = _display_bins(cal["bins"])
        filled = [b for b in bins if b["count"] > 0 and not math.isnan(b["accuracy"])]
        ece = interval(cal.get("ece"))[0]
        label = f"{model} (ECE {ece:.3f})" if ece is not None else model
        top.plot(
            [b["mean_confidence"] for b in filled],
            [b["accuracy"] for b in filled],
            marker="o",
            markersize=4,
            color=colour,
            linewidth=1.4,
            label=label,
        )
        _histogram(bottom, bins, i, len(models), colour)
    _finish_reliability(top, bottom, title, "accuracy in bin")
    return to_png(fig)


def _reliability_axes(height: float) -> tuple[Figure, Axes, Axes]:
    """A reliability diagram's figure: the diagonal drawn on its top axes, the
    confidence histogram's axes below."""
    fig, (top, bottom) = figure(
        4.6, height, rows=2, sharex=True, gridspec_kw={"height_ratios": [3, 1.2]}
    )
    top.plot(
        [0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfect calibration"
    )
    return fig, top, bottom


def _histogram(
    ax: Axes, bins: Sequence[Mapping[str, float]], i: int, models: int, colour: str
) -> None:
    """The ``i``-th of ``models`` models' share of tokens per bin, its bars side by side
    with the other models' within each bin."""
    total = sum(b["count"] for b in bins) or 1.0
    widths = [(b["upper"] - b["lower"]) * (1.0 / models) for b in bins]
    ax.bar(
        [b["lower"] + w * i for b, w in zip(bins, widths)],
        [b["count"] / total for b in bins],
        width=widths,
        align="edge",
        color=colour,
        alpha=0.75,
        linewidth=0,
    )


def _finish_reliability(top: Axes, bottom: Axes, title: str, ylabel: str) -> None:
    """Limits, labels, title and legend of a reliability diagram."""
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel(ylabel, fontsize=8, color=TEXT)
    top.set_title(title, fontsize=10, color=TEXT, loc="left")
    top.legend(fontsize=7, frameon=False, loc="upper left")
    bottom.set_ylabel("share of\ntokens", fontsize=8, color=TEXT)
    bottom.set_xlabel("confidence (top-1 probability)", fontsize=8, color=TEXT)


def _band_cells(bins: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """The drawable cells of a banded reliability diagram, one per non-empty bin.

    Each cell is ``{"lower", "upper", "confidence", "accuracy", "low", "high"}``:
    the bin's edges, its mean confidence and accuracy, and its accuracy interval
    (``accuracy_low``/``accuracy_high``, as :func:`pairscope.metrics.calibration.
    reliability_bands` writes them). The ``[1, 1]`` bin of confidences exactly 1.0
    is kept as its own cell (its interval cannot be merged into the top bin's); it
    is drawn as a narrow cell at 1.0. Bins without tokens or without an interval are
    left out.
    """
    keys = ("lower", "upper", "mean_confidence", "accuracy", "accuracy_low", "accuracy_high")
    cells = []
    for b in bins:
        numbers = [v for v in (finite(b.get(k)) for k in keys) if v is not None]
        if len(numbers) < len(keys) or not b.get("count"):
            continue
        lower, upper, conf, acc, low, high = numbers
        cells.append(
            {
                "lower": lower,
                "upper": upper,
                "confidence": conf,
                "accuracy": acc,
                "low": min(low, acc),
                "high": max(high, acc),
            }
        )
    return cells


def reliability_band_png(
    calibration_by_model: Mapping[str, Mapping[str, Any]], title: str, confidence: float = 0.95
) -> bytes:
    """Reliability diagram whose bins carry bootstrap bands over samples.

    Each non-empty bin is a shaded cell spanning the bin's width from the lower to the
    upper end of its accuracy interval, with the bin's accuracy as a point at its mean
    confidence; a bin the diagonal crosses outside its cell is miscalibrated beyond
    what resampling the samples explains. Below, the confidence histogram.

    Args:
        calibration_by_model: ``{model: CAL}``; CAL holds ``bins`` with interval fields
            (:class:`pairscope.metrics.calibration.ReliabilityBand` ``.to_dict()``) and
            optionally ``ece`` and ``smooth_ece`` estimates for the legend.
        title: Figure title.
        confidence: The bands' level, for the axis label.
    """
    models = [
        m for m, cal in calibration_by_model.items() if cal and _band_cells(cal.get("bins") or [])
    ]
    if not models:
        return blank_png(f"{title}: no calibration bands")
    fig, top, bottom = _reliability_axes(4.8)
    for i, model in enumerate(models):
        cal = calibration_by_model[model]
        colour = MODEL_COLOURS.get(model, PALETTE[i % len(PALETTE)])
        cells = _band_cells(cal["bins"])
        for cell in cells:
            width = max(cell["upper"] - cell["lower"], 0.012)
            top.bar(
                min(cell["lower"], 1.0 - width),
                cell["high"] - cell["low"],
                width=width,
                bottom=cell["low"],
                align="edge",
                color=colour,
                alpha=0.22,
                linewidth=0,
            )
        top.plot(
            [c["confidence"] for c in cells],
            [c["accuracy"] for c in cells],
            marker="o",
            markersize=4,
            color=colour,
            linewidth=1.2,
            label=_band_label(model, cal),
        )
        _histogram(bottom, _display_bins(cal["bins"]), i, len(models), colour)
    ylabel = f"accuracy in bin\n(band: {confidence:.0%} bootstrap over samples)"
    _finish_reliability(top, bottom, title, ylabel)
    return to_png(fig)


def _band_label(model: str, cal: Mapping[str, Any]) -> str:
    """A banded diagram's legend entry: the model, then its ECE and smooth ECE with
    their intervals where the calibration holds them."""
    parts = [model]
    for key, name in (("ece", "ECE"), ("smooth_ece", "smECE")):
        point, low, high = interval(cal.get(key))
        if point is not None:
            ci = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
            parts.append(f"{name} {point:.3f}{ci}")
    return ", ".join(parts)


def overlap_png(tasks: Mapping[str, Mapping[str, Any] | None]) -> bytes:
    """Overlap@50 and guide-top-1-in-base-top-k at uncertain positions, per task, with CIs.

    Args:
        tasks: ``{task: overlap}`` where overlap is ``summary.json``'s task ``overlap``
            entry (``overlap_at_k``, ``top1_in_topk``) or None.
    """
    names = [t for t, o in tasks.items() if o]
    if not names:
        return blank_png("no vocabulary overlap measured")
    series = {
        "overlap@50": {t: (tasks[t] or {}).get("overlap_at_k") for t in names},
        "guide top-1 in base top-k": {t: (tasks[t] or {}).get("top1_in_topk") for t in names},
    }
    fig, (ax,) = figure(max(4.0, 1.3 * len(names) + 2.2), 2.8)
    _grouped(ax, names, series)
    ax.set_ylabel("rate (95 % CI)", fontsize=8, color=TEXT)
    ax.set_title("Vocabulary overlap at uncertain positions", fontsize=10, color=TEXT, loc="left")
    return to_png(fig)


def paradox_png(
    points: Sequence[Mapping[str, Any]], r: float, p: float, title: str = "Score vs IR"
) -> bytes:
    """The intervention paradox: score against intervention rate, one point per pair x task.

    Args:
        points: Mappings with ``ir`` and ``score`` (floats), ``label`` and optionally
            ``task`` (colours the points) and ``ir_low``/``ir_high`` (a horizontal CI).
        r: Pearson correlation (NaN when undefined, e.g. fewer than 3 points).
        p: Its two-sided p-value.
        title: Start of the figure title; r and p follow it.
    """
    usable = [
        pt
        for pt in points
        if finite(pt.get("ir")) is not None and finite(pt.get("score")) is not None
    ]
    fig, (ax,) = figure(5.1, 3.5)
    tasks: list[str] = []
    below = labels_below([float(pt["score"]) for pt in usable])
    for index, pt in enumerate(usable):
        task = str(pt.get("task", ""))
        if task not in tasks:
            tasks.append(task)
        colour = PALETTE[tasks.index(task) % len(PALETTE)]
        x, y = float(pt["ir"]), float(pt["score"])
        low, high = finite(pt.get("ir_low")), finite(pt.get("ir_high"))
        if low is not None and high is not None:
            ax.plot([low, high], [y, y], color=colour, alpha=0.4, linewidth=1.2)
        ax.plot([x], [y], "o", color=colour, markersize=6)
        ax.annotate(
            str(pt.get("label", "")),
            (x, y),
            xytext=(5, -11 if below[index] else 4),
            textcoords="offset points",
            fontsize=7,
            color=TEXT,
        )
    stat = (
        f"Pearson r = {r:.2f}, p = {p:.3g}, n = {len(usable)}"
        if finite(r) is not None and finite(p) is not None
        else f"Pearson r undefined (n = {len(usable)})"
    )
    ax.set_title(f"{title} — {stat}", fontsize=9, color=TEXT, loc="left")
    ax.set_xlabel("intervention rate", fontsize=8, color=TEXT)
    ax.set_ylabel("score", fontsize=8, color=TEXT)
    ax.set_xlim(-0.02, _paradox_right(usable))
    ax.set_ylim(
        -0.08 if any(b and float(pt["score"]) < 0.1 for b, pt in zip(below, usable)) else -0.02,
        1.02,
    )
    if len(tasks) > 1:
        _task_legend(ax, tasks)
    return to_png(fig)


def _paradox_right(points: Sequence[Mapping[str, Any]]) -> float:
    """The paradox plot's right edge: past every point and its IR interval (to 1.02),
    at least 0.5, and 1.02 with no point."""
    if not points:
        return 1.02
    ends = [float(pt["ir"]) * 1.15 + 0.05 for pt in points]
    ends += [min(1.02, h) + 0.02 for pt in points if (h := finite(pt.get("ir_high"))) is not None]
    return max([*ends, 0.5])


LABEL_GAP = 0.08  # scores closer than this would put two labels on one line


def labels_below(ys: Sequence[float]) -> list[bool]:
    """Per point, whether its label goes under it: when another point lies just above
    it (within :data:`LABEL_GAP`; of equal scores, the later one counts as above), so the
    two labels part instead of meeting between the points."""
    return [
        any(
            j != i and 0.0 <= ys[j] - y < LABEL_GAP and (ys[j] > y or j > i) for j in range(len(ys))
        )
        for i, y in enumerate(ys)
    ]


def _task_legend(ax: Axes, tasks: Sequence[str]) -> None:
    """A legend of the tasks' point colours."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", linestyle="", color=PALETTE[i % len(PALETTE)], label=t)
        for i, t in enumerate(tasks)
    ]
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper right")


def safe_name(text: str) -> str:
    """``text`` reduced to a file-name-safe token (letters, digits, ``._-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "task"


def task_slugs(tasks: Iterable[str]) -> dict[str, str]:
    """A distinct :func:`safe_name` per task, for file names and page anchors."""
    slugs: dict[str, str] = {}
    for task in tasks:
        slug, n = safe_name(task), 2
        while slug in slugs.values():
            slug, n = f"{safe_name(task)}-{n}", n + 1
        slugs[task] = slug
    return slugs


def _calibration_figures(
    prefix: str, title: str, by_model: Mapping[str, Calibration] | None
) -> dict[str, bytes]:
    if not by_model:
        return {}
    models = {m: dump(cal) for m, cal in by_model.items()}
    figures = {
        f"{prefix}_{safe_name(m)}": reliability_png({m: cal}, f"{title}: {m}")
        for m, cal in models.items()
    }
    if len(models) > 1:
        figures[f"{prefix}_overlaid"] = reliability_png(models, f"{title}: " + " vs ".join(models))
    return figures


def figure_pngs(summary: Summary) -> dict[str, bytes]:
    """Every figure of a run, keyed by a file-name stem, from its typed summary."""
    tasks = summary.tasks
    slugs = task_slugs(tasks)
    figures = {
        "accuracy": accuracy_png(
            {t: {m: dump(v.score) for m, v in info.methods.items()} for t, info in tasks.items()}
        ),
        "intervention_rate": ir_distribution_png(
            {
                t: {
                    m: v.per_sample_ir
                    for m, v in info.methods.items()
                    if v.intervention_rate is not None
                }
                for t, info in tasks.items()
            },
            {t: info.threshold for t, info in tasks.items()},
        ),
    }
    if any(info.overlap for info in tasks.values()):
        figures["overlap"] = overlap_png(
            {t: dump(info.overlap) if info.overlap else None for t, info in tasks.items()}
        )
    for task, info in tasks.items():
        figures |= _calibration_figures(
            f"reliability_{slugs[task]}", f"{task} token calibration", info.calibration
        )
        figures |= _calibration_figures(
            f"answer_reliability_{slugs[task]}",
            f"{task} answer calibration",
            info.answer_calibration,
        )
    return figures


def save_figures(run_dir: Path) -> list[Path]:
    """Write every figure of a run as PNG under ``run_dir/figures/`` and return the paths.

    Raises:
        RunDirError: ``run_dir`` has no readable ``summary.json``.
    """
    from pairscope.pipeline.runs import read_summary

    summary = read_summary(Path(run_dir))
    out_dir = Path(run_dir) / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in figure_pngs(summary).items():
        path = out_dir / f"{name}.png"
        path.write_bytes(png)
        paths.append(path)
    return paths
