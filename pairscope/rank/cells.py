"""A rank's cells: one ordinary run directory per (base, guide, task, method).

A cell is a probe run directory (config.json, manifest.json, records.jsonl,
summary.json) whose manifest is the race's committed order up to the budget, so
``pairscope report`` and ``pairscope probe --resume`` read it as any other run.
The race decodes prefixes of that order into it through the probe's own decoding
step, one record per finished sample, so a killed rank resumes at sample
granularity. The committed order is the seeded, stratum-interleaved order of the
whole dataset: a larger budget extends it, and a raised ``--limit`` continues a race.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pairscope.pipeline.runs import RunDir, is_run_dir, iter_generations, read_config
from pairscope.pipeline.spec import RunSpec
from pairscope.rank.racing import Outcome
from pairscope.schema import GenerationRecord


@dataclass(frozen=True)
class TaskPlan:
    """One task's committed order and the settings every cell of it shares."""

    spec: Any
    every: list[Any]  # the whole dataset
    order: list[Any]  # the committed order, cut at the budget
    manifest: Any
    threshold: float
    max_new: int

    @property
    def name(self) -> str:
        return str(self.spec.name)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.order]


def plan_task(
    task: str,
    data_dir: str | None,
    seed: int | None,
    budget: int,
    threshold: float | None,
    max_new_tokens: int | None,
) -> TaskPlan:
    """Load a task's data and fix its sample order (before any decoding)."""
    from pairscope.probes import build_samples, interleave, load_dataset_records, load_probe
    from pairscope.probes.selection import make_manifest

    spec = load_probe(task)
    every = build_samples(spec, load_dataset_records(spec, data_dir))
    use_seed = spec.seed if seed is None else seed
    order = interleave(every, use_seed, stratify=spec.stratify is not None)[:budget]
    return TaskPlan(
        spec=spec,
        every=list(every),
        order=order,
        manifest=make_manifest(spec, every, order, use_seed),
        threshold=float(spec.threshold if threshold is None else threshold),
        max_new=int(max_new_tokens or spec.max_new_tokens),
    )


def slug(spec: str) -> str:
    """A model spec as a directory name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_") or "model"


def cell_path(out: Path, base: str, guide: str, task: str, method: str) -> Path:
    return out / "cells" / f"{slug(base)}--{slug(guide)}" / f"{task}-{method}"


def cell_records(path: Path, task: str, method: str) -> dict[str, GenerationRecord]:
    """A cell's generation records of ``task`` and ``method``, by sample id, in the order
    written (none when the cell does not exist yet)."""
    if not is_run_dir(path):
        return {}
    return {r.sample_id: r for r in iter_generations(path) if r.task == task and r.method == method}


def read_outcomes(path: Path, task: str, method: str) -> dict[str, Outcome]:
    """The finished samples of a cell, by sample id (none when it does not exist yet)."""
    return {
        i: Outcome(int(r.ir_numerator or 0), int(r.ir_denominator or 0), float(r.correct))
        for i, r in cell_records(path, task, method).items()
    }


class Cell:
    """One cell's run directory, opened for decoding once its pair is loaded."""

    def __init__(self, path: Path, opts: RunSpec, plan: TaskPlan, pair: Any, load: float):
        self.path, self.plan = path, plan
        self.opts = opts.model_copy(
            update={
                "task_names": (plan.name,),
                "thresholds": {plan.name: plan.threshold},
                "max_new": {plan.name: plan.max_new},
            }
        )
        self.opened = self._open(pair, load)

    @property
    def run_dir(self) -> RunDir:
        return self.opened.run_dir

    def close(self) -> None:
        """Release the run directory (its lock), as a probe does at its end."""
        self.run_dir.close()

    def _open(self, pair: Any, load_seconds: float) -> Any:
        from pairscope.pipeline.preflight import TaskData
        from pairscope.pipeline.steps import OpenRun, Quiet, record_config, start_session

        if is_run_dir(self.path):
            # A raised budget continues the cell: its order is a prefix of the new one.
            old_n = read_config(self.path).settings.n
            run_dir = RunDir.resume(self.path, self.opts.model_copy(update={"n": old_n}))
        else:
            run_dir = RunDir.create(self.path, self.opts)
        manifest = {**asdict(self.plan.manifest), "ids": list(self.plan.manifest.ids)}
        run_dir.write_manifest({self.plan.name: manifest})
        self.data = TaskData(
            self.plan.spec, self.plan.order, self.plan.manifest, len(self.plan.every)
        )
        opened = OpenRun(self.opts, run_dir, pair, Quiet())
        record_config(opened, {self.plan.name: self.data})
        start_session(run_dir, load_seconds)
        return opened

    def decode(self, samples: Sequence[Any]) -> None:
        """Decode those of ``samples`` not yet on disk (the probe's own decoding step)."""
        from pairscope.pipeline.steps import generate

        generate(self.opened.task(self.plan.name, self.data, self.opts.methods[0]), samples)


def finish(path: Path) -> None:
    """Write a cell's summary.json from its files, as a probe does at its end."""
    from pairscope.summary import summarize

    if is_run_dir(path) and any(True for _ in iter_generations(path)):
        RunDir(path).write_summary(summarize(path))


def cell_options(base_opts: RunSpec, base: str, guide: str, task: str, out: Path) -> RunSpec:
    """A cell's probe options: one pair, one task, the rank's method, no early stop of its
    own (the race decides), no calibration pass, no per-cell report."""
    return base_opts.model_copy(
        update={
            "base": base,
            "guide": guide,
            "tasks": (task,),
            "out": str(out),
            "calibration": False,
            "sequential": False,
            "report": False,
        }
    )


__all__ = [
    "Cell",
    "TaskPlan",
    "cell_options",
    "cell_path",
    "cell_records",
    "finish",
    "plan_task",
    "read_outcomes",
]
