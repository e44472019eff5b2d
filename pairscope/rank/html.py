"""rank.html: a bases x guides heatmap per task, the intervention paradox across cells
and each race's drill-down (its two leading guides sample by sample), read from
rank.json and the cells' records it names (the report re-runs nothing and re-computes
no metric but the correlation, which comes from :mod:`pairscope.metrics`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pairscope.rank.schema import GuideStanding, RankResult
from pairscope.schema import Interval

CSS = {
    "winner": "v-pass", "tied": "v-pass", "feasible": "v-pass", "unresolved": "v-warn",
    "racing": "v-warn", "dominated": "v-fail", "infeasible": "v-fail", "pruned": "v-fail",
}  # fmt: skip


DRILL_ROWS = 40  # samples listed per drill-down: those the two guides scored differently first


def _span(value: Interval | None) -> str:
    if value is None or value.point is None:
        return ""
    return f"{value.point:.3f} [{value.low:.3f}, {value.high:.3f}]"


def _cell(g: GuideStanding) -> dict[str, Any]:
    return {
        "status": g.status, "n": g.n, "ir": _span(g.ir), "score": _span(g.score),
        "reason": g.reason + (f" ({g.by})" if g.by and g.by not in g.reason else ""),
        "css": CSS[g.status], "gain": g.gain,
    }  # fmt: skip


def paradox(result: RankResult) -> list[dict[str, Any]]:
    """Per task: the cells' (IR, score) points and their Pearson r, with the figure."""
    from pairscope.metrics.stats import pearson, pearson_interval
    from pairscope.report.html import data_uri
    from pairscope.report.plots import paradox_png

    out = []
    for task in result.tasks:
        points: list[dict[str, Any]] = [
            {
                "ir": g.ir.point,
                "score": g.score.point,
                "ir_low": g.ir.low,
                "ir_high": g.ir.high,
                "label": g.guide,
                "task": task,
            }  # fmt: skip
            for race in result.races
            if race.task == task
            for g in race.guides
            if g.ir is not None and g.score is not None and g.n > 0
        ]
        with_gain = all(g.gain is not None for r in result.races for g in r.guides if g.n > 0)
        if points and with_gain:
            gain = {
                (r.base, g.guide): g.gain for r in result.races if r.task == task for g in r.guides
            }
            for pt, key in zip(points, _keys(result, task)):
                pt["score"] = gain[key]
        r, p = pearson(
            [float(pt["ir"] or 0.0) for pt in points], [float(pt["score"] or 0.0) for pt in points]
        )
        what = "gain over the base" if points and with_gain else "score"
        figure = data_uri(paradox_png(points, r, p, title=f"{task}: {what} vs IR"))
        out.append(
            {
                "task": task,
                "n": len(points),
                "r": r,
                "r_interval": pearson_interval(r, len(points)),
                "p": p,
                "figure": figure,
                "y": what,
            }  # fmt: skip
        )
    return out


def _keys(result: RankResult, task: str) -> list[tuple[str, str]]:
    """(base, guide) of the paradox points of ``task``, in their order."""
    return [
        (race.base, g.guide)
        for race in result.races
        if race.task == task
        for g in race.guides
        if g.ir is not None and g.score is not None and g.n > 0
    ]


def render_rank(out_dir: Path, result: RankResult) -> Path:
    """Write ``out_dir / rank.html`` from a rank's result."""
    from pairscope.report.html import CSP, _environment

    heatmaps = []
    for task in result.tasks:
        grid = []
        for race in (r for r in result.races if r.task == task):
            by_guide = {g.guide: g for g in race.guides}
            grid.append((race.base, race, [_cell(by_guide[g]) for g in result.guides]))
        heatmaps.append((task, grid))
    from pairscope.rank.drill import drill_down, excerpt

    drills = [d for d in (drill_down(out_dir, race) for race in result.races) if d is not None]
    context = {
        "title": "pairscope rank",
        "csp": CSP,
        "result": result,
        "heatmaps": heatmaps,
        "paradox": paradox(result),
        "drills": drills,
        "shown": DRILL_ROWS,
    }
    target = out_dir / "rank.html"
    env = _environment()
    env.filters["excerpt"] = excerpt
    env.get_template("rank.html").stream(**context).dump(str(target), encoding="utf-8")
    return target
