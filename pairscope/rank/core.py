"""The core of `pairscope rank`: pre-flight checks, one race per (base, task), rank.json.

For every base, each task's candidate guides are raced (:mod:`pairscope.rank.racing`)
on one committed sample order; each (base, guide, task, method) cell is an ordinary
run directory under the rank's output directory (:mod:`pairscope.rank.cells`). A pair
that fails the hard checks of ``pairscope check`` is pruned and never decoded. The
race is replayed from the records on disk before every batch, so running the same
command again (after a kill, or with a larger ``--limit``) continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pairscope.defaults import DEFAULT_TASKS
from pairscope.errors import ExitCode, InputError, unknown
from pairscope.pipeline.config import PROBE_METHODS, RunOptions, check, strategy
from pairscope.rank.cells import (
    Cell,
    TaskPlan,
    cell_options,
    cell_path,
    finish,
    plan_task,
    read_outcomes,
)
from pairscope.rank.racing import (
    DEFAULT_BATCH,
    DEFAULT_EPSILON,
    OBJECTIVES,
    PRUNED,
    RACE_NONE,
    RACE_TIE,
    RACE_UNRESOLVED,
    RACE_WINNER,
    RaceResult,
    RaceSettings,
    race,
)
from pairscope.rank.schema import RANK_SCHEMA_VERSION, Race, RankResult
from pairscope.schema import Interval

METHODS = PROBE_METHODS
# NUDGING's position protocol: its per-sample counts are bounded by the budget, as the
# race's fixed confidence sequences need (the reference protocol's re-encoded base turns
# are not).
CELL_PROTOCOL = "position"
FAIL_ON = ("infeasible", "unresolved")


def default_out() -> str:
    return str(Path("reports") / f"rank-{time.strftime('%Y%m%d-%H%M%S')}")


class Phase(Protocol):
    def phase(self, text: str) -> None: ...


class _Quiet:
    def phase(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class RankOptions:
    """Every setting of a rank (validated by :meth:`validate`)."""

    bases: tuple[str, ...]
    guides: tuple[str, ...]
    out: str
    tasks: tuple[str, ...] = DEFAULT_TASKS
    method: str = PROBE_METHODS[0]
    objective: str = "score"
    epsilon: float = DEFAULT_EPSILON
    alpha: float = 0.05
    n: int = 100
    batch: int = DEFAULT_BATCH
    seed: int | None = None
    threshold: float | None = None
    max_new_tokens: int | None = None
    data_dir: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    fail_on: tuple[str, ...] = FAIL_ON
    shard: tuple[int, int] | None = None  # (i, N): this machine's share of the races
    base_arm: bool = False  # also decode the base alone, for each guide's gain over it
    probe: dict[str, Any] = field(default_factory=dict)  # other probe settings (tau, k, ...)

    def validate(self) -> None:
        if not self.bases or not self.guides:
            raise InputError("rank needs a base and at least one guide (--base, --guides).")
        for name, values in (("--bases", self.bases), ("--guides", self.guides)):
            if len(set(values)) != len(values):
                raise InputError(f"A model is listed twice in {name}.")
        if self.method not in METHODS:
            raise unknown("rank method", self.method, METHODS)
        if self.objective not in OBJECTIVES:
            raise unknown("objective", self.objective, OBJECTIVES)
        for item in self.fail_on:
            if item not in FAIL_ON:
                raise unknown("--fail-on condition", item, FAIL_ON)
        if self.n < 1 or self.batch < 1:
            got = f"{self.n}, {self.batch}"
            raise InputError(f"--limit and --race-batch must be >= 1 (got {got}).")
        check(self.probe_options(self.bases[0], self.guides[0], self.tasks[0]))

    def probe_options(self, base: str, guide: str, task: str) -> RunOptions:
        """The probe options of one cell."""
        opts = RunOptions(
            command="probe",
            tasks=self.tasks,
            methods=(self.method,),
            n=self.n,
            seed=self.seed,
            threshold=self.threshold,
            max_new_tokens=self.max_new_tokens,
            data_dir=self.data_dir,
            device=self.device,
            dtype=self.dtype,
            batch_size=self.batch,
            trust_remote_code=self.trust_remote_code,
            **{"protocol": CELL_PROTOCOL, **self.probe},
        )
        out = cell_path(Path(self.out), base, guide, task, self.method)
        return cell_options(opts, base, guide, task, out)


def preflight(opts: RankOptions, progress: Phase, bases: list[str]) -> dict[tuple[str, str], str]:
    """``pairscope check`` on every pair of ``bases``; the pairs that fail a hard check."""
    from pairscope.check import check_pair

    pruned = {}
    for base in bases:
        for guide in opts.guides:
            progress.phase(f"Checking {base} + {guide}")
            report = check_pair(
                base, guide, device=opts.device, dtype=opts.dtype,
                trust_remote_code=opts.trust_remote_code, tasks=opts.tasks,
            )  # fmt: skip
            failed = report.failures()
            if failed:
                pruned[(base, guide)] = "; ".join(
                    f"{item.model} {item.check}: {item.found}" for item in failed
                )
    return pruned


class Models:
    """The models of one base's races, loaded on first use: the base once, each guide once."""

    def __init__(self, opts: RankOptions, base: str) -> None:
        self.opts, self.base_spec = opts, base
        self.base: Any = None
        self.guides: dict[str, Any] = {}
        self.seconds = 0.0

    def _load(self, spec: str) -> Any:
        from pairscope.models import load_model

        started = time.perf_counter()
        model = load_model(
            spec, device=self.opts.device, dtype=self.opts.dtype,
            trust_remote_code=self.opts.trust_remote_code,
        )  # fmt: skip
        self.seconds += time.perf_counter() - started
        return model

    def pair(self, guide: str) -> Any:
        from pairscope.models import Pair

        if self.base is None:
            self.base = self._load(self.base_spec)
        if guide not in self.guides:
            self.guides[guide] = self._load(guide)
        return Pair(base=self.base, guide=self.guides[guide])

    def close(self) -> None:
        for model in self.guides.values():
            model.close()
        if self.base is not None:
            self.base.close()


def race_task(
    opts: RankOptions,
    base: str,
    plan: TaskPlan,
    live: list[str],
    models: Models,
    progress: Phase,
) -> RaceResult:
    """Race ``live`` guides on one task: replay, decode the next batch, repeat."""
    from pairscope.summary import ir_support

    probe = opts.probe_options(base, live[0], plan.name)
    # The cells' own strategy (its protocol included) says how their IR is counted.
    kind = strategy(probe, opts.method).ir_kind
    assert kind is not None  # a guided method always has an intervention rate
    settings = RaceSettings(
        threshold=plan.threshold,
        support=ir_support([], plan.max_new, kind),
        budget=len(plan.order),
        objective=opts.objective,  # type: ignore[arg-type]  # validated
        epsilon=opts.epsilon,
        alpha=opts.alpha,
        batch=opts.batch,
    )
    out = Path(opts.out)
    paths = {g: cell_path(out, base, g, plan.name, opts.method) for g in live}
    cells: dict[str, Cell] = {}
    while True:
        outcomes = {g: read_outcomes(paths[g], plan.name, opts.method) for g in live}
        result = race(live, plan.ids, outcomes, settings)
        if result.done or result.next is None:
            break
        start, stop = result.next
        progress.phase(
            f"{plan.name}: samples {start + 1}-{stop} for {', '.join(result.todo)} (base {base})"
        )
        try:
            for g in result.todo:
                if g not in cells:
                    pair = models.pair(g)
                    cells[g] = Cell(
                        paths[g], opts.probe_options(base, g, plan.name), plan, pair, models.seconds
                    )
                cells[g].decode(plan.order[start:stop])
        except BaseException:
            for cell in cells.values():
                cell.close()
            raise
    for cell in cells.values():
        cell.close()
    for path in paths.values():
        finish(path)
    if opts.base_arm:
        _base_arm(opts, base, plan, live, models, max(g.n for g in result.guides))
    return result


BASE_ALONE = "base-alone"


def _base_arm(
    opts: RankOptions, base: str, plan: TaskPlan, live: list[str], models: Models, n: int
) -> None:
    """The base decoding alone on the samples the race used, once for all the guides (the
    gain a guide brings is measured against it)."""
    path = cell_path(Path(opts.out), base, BASE_ALONE, plan.name, "base")
    if n == 0 or len(read_outcomes(path, plan.name, "base")) >= n:
        return
    probe = opts.probe_options(base, live[0], plan.name)
    probe = probe.model_copy(update={"methods": ("base",), "out": str(path)})
    cell = Cell(path, probe, plan, models.pair(live[0]), models.seconds)
    try:
        cell.decode(plan.order[:n])
    finally:
        cell.close()
    finish(path)


def gains(opts: RankOptions, base: str, plan: TaskPlan) -> dict[str, float]:
    """Per guide: its mean paired score gain over the base alone, on the samples it decoded
    (none without the base arm, or where the arm has not reached them)."""
    out = Path(opts.out)
    alone = read_outcomes(cell_path(out, base, BASE_ALONE, plan.name, "base"), plan.name, "base")
    result = {}
    for g in opts.guides:
        mine = read_outcomes(
            cell_path(out, base, g, plan.name, opts.method), plan.name, opts.method
        )
        ids = [i for i in plan.ids if i in mine]
        if ids and all(i in alone for i in ids):
            result[g] = sum(mine[i].score - alone[i].score for i in ids) / len(ids)
    return result


def _interval(estimate: Any) -> Interval | None:
    data = estimate.to_dict()
    return None if data["point"] is None else Interval.model_validate(data)


def race_record(
    opts: RankOptions, base: str, plan: TaskPlan, result: RaceResult | None, pruned: dict[str, str]
) -> Race:
    """A race as rank.json writes it; pruned guides are listed with their reason."""
    out = Path(opts.out)
    gain = gains(opts, base, plan) if opts.base_arm else {}
    standings = []
    for g in opts.guides:
        if g in pruned:
            standings.append({"guide": g, "status": PRUNED, "n": 0, "reason": pruned[g]})
            continue
        assert result is not None
        s = result.guide(g)
        cell = cell_path(out, base, g, plan.name, opts.method).relative_to(out).as_posix()
        standings.append(
            {
                "guide": g,
                "status": s.status,
                "n": s.n,
                "ir": _interval(s.ir),
                "score": _interval(s.score),
                "decided_at": s.decided_at,
                "feasible_at": s.feasible_at,
                "by": s.by,
                "reason": s.reason,
                "cell": cell,
                "gain": gain.get(g),
            }
        )
    return Race.model_validate(
        {
            "base": base,
            "task": plan.name,
            "method": opts.method,
            "threshold": plan.threshold,
            "status": result.status if result is not None else RACE_NONE,
            "n": result.n if result else 0,
            "budget": len(plan.order),
            "batch": opts.batch,
            "batches": result.batches if result else 0,
            "alpha": opts.alpha,
            "alpha_each": result.alpha_each if result else opts.alpha,
            "epsilon": opts.epsilon,
            "objective": opts.objective,
            "winners": [s["guide"] for s in standings if s["status"] in ("winner", "tied")],
            "guides": standings,
        }
    )


def outcome_of(races: list[Race], fail_on: tuple[str, ...]) -> tuple[str, int]:
    """The rank's outcome and exit code: 1 when a race has no feasible pair, 4 when one
    is unresolved, else 0; a condition left out of ``fail_on`` exits 0."""
    if any(r.status == RACE_NONE for r in races):
        return "none-feasible", int(ExitCode.GATE_FAILED) if "infeasible" in fail_on else 0
    if any(r.status == RACE_UNRESOLVED for r in races):
        return "unresolved", int(ExitCode.UNRESOLVED) if "unresolved" in fail_on else 0
    assert all(r.status in (RACE_WINNER, RACE_TIE) for r in races)
    return "feasible", 0


def rank(opts: RankOptions, progress: Phase | None = None) -> RankResult:
    """Run (or continue) a rank, or this shard's share of it; write rank.json (a shard
    writes its own file, for ``--merge``) and return it.

    Raises:
        InputError: bad settings, data or models (exit 2).
    """
    from pairscope.pipeline.runs import write_json_atomic
    from pairscope.rank.shards import my_races, result_file
    from pairscope.schema import dump

    progress = progress or _Quiet()
    started = time.perf_counter()
    opts.validate()
    plans = [
        plan_task(t, opts.data_dir, opts.seed, opts.n, opts.threshold, opts.max_new_tokens)
        for t in opts.tasks
    ]
    mine = my_races([(b, p) for b in opts.bases for p in plans], opts.shard)
    bases = list(dict.fromkeys(b for b, _ in mine))
    pruned = preflight(opts, progress, bases)
    races = []
    for base in bases:
        cut = {g: why for (b, g), why in pruned.items() if b == base}
        live = [g for g in opts.guides if g not in cut]
        models = Models(opts, base)
        try:
            for plan in (p for b, p in mine if b == base):
                result = race_task(opts, base, plan, live, models, progress) if live else None
                races.append(race_record(opts, base, plan, result, cut))
        finally:
            models.close()
    ranked = rank_result(
        opts, races, [p.name for p in plans], _decoded(opts, mine), time.perf_counter() - started
    )
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(opts.out) / result_file(opts.shard), dump(ranked))
    if opts.shard is None:
        from pairscope.rank.html import render_rank

        progress.phase("Rendering rank.html")
        render_rank(Path(opts.out), ranked)
    return ranked


def rank_result(
    opts: RankOptions, races: list[Race], tasks: list[str], decoded: int, seconds: float
) -> RankResult:
    """rank.json's model: the races with the outcome and exit code they give."""
    outcome, code = outcome_of(races, opts.fail_on)
    return RankResult.model_validate(
        {
            "kind": "rank",
            "schema_version": RANK_SCHEMA_VERSION,
            "bases": list(opts.bases),
            "guides": list(opts.guides),
            "tasks": tasks,
            "method": opts.method,
            "objective": opts.objective,
            "alpha": opts.alpha,
            "epsilon": opts.epsilon,
            "budget": opts.n,
            "batch": opts.batch,
            "seed": opts.seed,
            "shard": None if opts.shard is None else f"{opts.shard[0]}/{opts.shard[1]}",
            "races": races,
            "outcome": outcome,
            "exit_code": code,
            "samples_decoded": decoded,
            "seconds": round(seconds, 3),
        }
    )


def _decoded(opts: RankOptions, races: list[tuple[str, TaskPlan]]) -> int:
    """Generations on disk in the cells of ``races``."""
    out = Path(opts.out)
    return sum(
        len(read_outcomes(cell_path(out, b, g, p.name, opts.method), p.name, opts.method))
        for b, p in races
        for g in opts.guides
    )
