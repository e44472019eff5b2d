"""summary.json, computed from a run directory's files only (config, manifest, records).

This is the one place where records become numbers, so a run, its resume and
``pairscope report`` all agree. Samples are ordered by the manifest, never by
completion order, and every bootstrap has a fixed seed: the summary is a pure
function of the records.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, TypeVar

import pairscope.methods as registry
from pairscope.errors import RunDirError
from pairscope.metrics.calibration import calibration_summary
from pairscope.metrics.intervention import (
    Verdict,
    distribution_summary,
    gate_passes,
    intervention_rate,
    overall_verdict,
    per_sample_rates,
    verdict,
)
from pairscope.metrics.overlap import overlap_summary
from pairscope.metrics.sequential import SequentialTest, Support
from pairscope.metrics.stats import (
    Estimate,
    bootstrap_ratio,
    mcnemar_exact,
    min_detectable_difference,
    paired_bootstrap_diff,
    pearson,
    pearson_interval,
    proportion,
)
from pairscope.pipeline.runs import MANIFEST, RECORDS, iter_records, read_config, read_json
from pairscope.schema import (
    SCHEMA_VERSION,
    AnswerRecord,
    Arbitration,
    ArbitrationRecord,
    Calibration,
    CalibrationRecord,
    Comparison,
    GenerationRecord,
    Interval,
    MethodSummary,
    Overall,
    OverlapSummary,
    Record,
    SequentialSummary,
    SessionRecord,
    Settings,
    Summary,
    TaskSize,
    TaskSummary,
    Timing,
    record_key,
)
from pairscope.tasks import run_rates

# The method whose picks the arbitration check scores (its records' method).
ARBITRATED = registry.with_record("arbitration")[0]


def gate_method(methods: list[str]) -> str:
    """The method whose intervention rate the verdict uses: the first gated one."""
    for m in methods:
        if registry.is_gated(m):
            return m
    return methods[0]


def sequential_test(
    counts: list[tuple[int, int]] | list[list[int]],
    threshold: float,
    max_new_tokens: int,
    ir_kind: str | None,
) -> SequentialTest | None:
    """The anytime-valid test of the pooled IR against ``threshold``, fed ``counts`` in order.

    ``counts`` are the samples' (IR numerator, denominator) in the run's fixed order.
    NUDGING's rounds can outnumber its base-written tokens by one (every round but
    the first of a response starts after a base-written token), and a round's first
    word and a base-written token are different positions of the response, so
    rounds + base-written tokens <= ``max_new_tokens``. None when no such test
    exists: a threshold of 0 or 1, or a method with no intervention rate.
    """
    if ir_kind is None or not 0.0 < threshold < 1.0:
        return None
    test = SequentialTest(threshold, ir_support(counts, max_new_tokens, ir_kind))
    for u, d in counts:
        test.update(u, d)
    return test


def stop_phrase(test: SequentialTest, chance: float) -> str:
    """Why a sequential task stops decoding now: its verdict, or futility (``chance``: of a
    decision within the budget)."""
    if test.verdict is not None:
        return f"{test.verdict.value} declared after {test.decided_at} samples (anytime-valid test)"
    return (
        f"undecided after {test.n} samples, and a decision within the budget has an "
        f"estimated chance of {chance:.1%}: stopping early (WARN)"
    )


def ir_support(
    counts: list[tuple[int, int]] | list[list[int]], max_new_tokens: int, ir_kind: str
) -> Support:
    """Where one sample's IR counts can lie, for a method's kind of intervention rate
    (:func:`sequential_test`); ``d_max`` is ``max_new_tokens``, or the largest count
    seen should a record exceed it."""
    from pairscope.metrics.rates import IR_REFERENCE, REFERENCE_COMPLETION_TOKENS, ROUND_KINDS

    rounds = ir_kind in ROUND_KINDS
    sizes = [int(u) + int(d) if rounds else max(int(u), int(d)) for u, d in counts]
    if ir_kind == IR_REFERENCE:
        # The reference loop's rounds need not follow a base token (a round whose words
        # the base accepts nothing after), and its last base continuation or guide
        # completion may pass the budget by one completion.
        d_max = max([max_new_tokens + REFERENCE_COMPLETION_TOKENS, *sizes])
        return Support(d_max, numerator_max=d_max, disjoint=True)
    return Support(max([max_new_tokens, *sizes]), slack=int(rounds), disjoint=rounds)


def paradox_correlation(
    irs: list[float], scores: list[float]
) -> tuple[float, float, tuple[float, float]]:
    """Pearson r of score against intervention rate over pairs (one point per run), its
    p-value and its 95 % Fisher-z interval (NaN where undefined): the intervention
    paradox across runs, which the comparison page formats."""
    r, p = pearson(irs, scores)
    return r, p, pearson_interval(r, sum(1 for x, y in zip(irs, scores) if _finite(x, y)))


def _finite(*values: float) -> bool:
    return all(math.isfinite(float(v)) for v in values)


def summarize(run_dir: Path) -> Summary:
    """Compute the summary of a run directory from its files."""
    config = read_config(run_dir)
    manifests = read_json(run_dir / MANIFEST) if (run_dir / MANIFEST).exists() else {}
    settings = config.settings
    records, sessions = _read_records(run_dir)
    load_seconds = sessions[-1].load_seconds if sessions else 0.0  # the last session's
    tasks: dict[str, TaskSummary] = {}
    decode_seconds = 0.0
    for task in settings.task_names:
        order = {sid: i for i, sid in enumerate(manifests.get(task, {}).get("ids", []))}
        by_kind: ByKind = {
            key: sorted(recs, key=lambda r: order.get(r.sample_id, len(order)))
            for key, recs in records.get(task, {}).items()
        }
        info = config.tasks.get(task, TaskSize(n=0, dataset_size=0))
        scorer = config.data[task].scorer if task in config.data else None
        tasks[task] = _task_summary(task, info, settings, by_kind, scorer)
        decode_seconds += sum(m.seconds for m in tasks[task].methods.values())
    verdicts = [Verdict(t.verdict) for t in tasks.values() if t.verdict is not None]
    overall = overall_verdict(verdicts, policy=settings.policy) if verdicts else Verdict.WARN
    passed = gate_passes(overall, strict=settings.strict)
    judged = run_dir / "judge.json"  # written by --judge (pairscope.judge.runs)
    return Summary(
        schema_version=SCHEMA_VERSION,
        kind=config.command,
        pair=config.pair,
        settings=settings,
        versions=config.versions,
        data=config.data,
        static_overlap=config.static_overlap,
        timing=Timing(
            load_seconds=round(load_seconds, 3),
            decode_seconds=round(decode_seconds, 3),
            **({"sessions": len(sessions)} if len(sessions) > 1 else {}),
        ),
        tasks=tasks,
        overall=Overall(
            verdict=overall.value,
            gate_passed=passed,
            exit_code=0 if passed else 1,
            policy=settings.policy,
            strict=settings.strict,
        ),
        **({"judge": read_json(judged)} if judged.is_file() else {}),
    )


ByKind = dict[tuple[str, str], list[Record]]


def _read_records(run_dir: Path) -> tuple[dict[str, ByKind], list[SessionRecord]]:
    """A run's records by task and (kind, method), and its session records in order.

    Raises:
        RunDirError: a record's key appears twice.
    """
    records: dict[str, ByKind] = defaultdict(lambda: defaultdict(list))
    sessions: list[SessionRecord] = []
    seen: set[tuple[str, str, str, str]] = set()
    for rec in iter_records(run_dir):
        key = record_key(rec)
        if key in seen:
            raise RunDirError(
                f"{run_dir / RECORDS} holds the record {'/'.join(key)} twice; a run "
                "directory was written by two processes at once, or edited.",
                hint="Delete the repeated lines (keep the first), or run the probe again "
                "in a new --out directory.",
            )
        seen.add(key)
        if isinstance(rec, SessionRecord):
            sessions.append(rec)
        else:
            records[rec.task][(rec.kind, rec.method)].append(rec)
    return records, sessions


R = TypeVar(
    "R", SessionRecord, GenerationRecord, CalibrationRecord, ArbitrationRecord, AnswerRecord
)


def _of(by_kind: ByKind, kind: type[R], method: str) -> list[R]:
    """The records of one kind and method, typed (the key names the kind)."""
    name = kind.model_fields["kind"].default
    return [r for r in by_kind.get((name, method), []) if isinstance(r, kind)]


def _interval(estimate: Estimate) -> Interval:
    return Interval.model_validate(estimate.to_dict())


def _method_summary(
    task: str, gens: list[GenerationRecord], scorer: str | None = None
) -> MethodSummary:
    n = len(gens)
    correct = sum(g.correct for g in gens)
    counts = [g for g in gens if g.uncertain is not None]
    tokens = sum(g.positions for g in gens)
    seconds = round(sum(g.seconds for g in gens), 3)
    out: dict[str, Any] = {
        "score": {**proportion(correct, n).to_dict(), "correct": correct, "n": n},
        "ir_definition": None,
        "intervention_rate": None,
        "uncertain_rate": None,
        "override_rate": None,
        "ir_distribution": None,
        "per_sample_ir": [],
        "ir_counts": [],
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": round(tokens / seconds, 2) if seconds else None,
    }
    if counts and sum(g.positions for g in counts) > 0:
        unc = [int(g.uncertain or 0) for g in counts]
        pos = [g.positions for g in counts]
        # The method's own intervention rate (docs/methods.md §3): its numerator and denominator.
        num = [int(g.ir_numerator or 0) for g in counts]
        den = [int(g.ir_denominator or 0) for g in counts]
        out["ir_definition"] = counts[0].ir_kind
        out["ir_counts"] = list(zip(num, den))
        if sum(den) > 0:
            out["intervention_rate"] = intervention_rate(num, den).to_dict()
        out["uncertain_rate"] = intervention_rate(unc, pos).to_dict()
        out["override_rate"] = intervention_rate([g.overridden for g in counts], pos).to_dict()
        rates = per_sample_rates(num, den)
        out["ir_distribution"] = distribution_summary(rates).to_dict()
        out["per_sample_ir"] = [None if r != r else round(float(r), 4) for r in rates]
    task_rates = run_rates(task, gens, scorer)
    if task_rates is not None:
        out["rates"] = task_rates
    return MethodSummary.model_validate(out)


def _verdict(ir: Interval | None, threshold: float) -> tuple[str | None, str]:
    if ir is None or ir.low is None or ir.high is None or ir.point is None:
        return None, "no intervention rate was measured"
    v = verdict((ir.low, ir.high), threshold)
    interval = f"{ir.point:.3f} [{ir.low:.3f}, {ir.high:.3f}]"
    if v is Verdict.FAIL:
        reason = f"intervention rate {interval}: the whole interval is above {threshold:.2f}"
    elif v is Verdict.PASS:
        reason = f"intervention rate {interval}: the whole interval is below {threshold:.2f}"
    else:
        reason = (
            f"intervention rate {interval}: the interval contains the threshold {threshold:.2f}"
        )
    return v.value, reason


def _task_summary(
    task: str, info: TaskSize, settings: Settings, by_kind: ByKind, scorer: str | None = None
) -> TaskSummary:
    methods = list(settings.methods)
    threshold = float(settings.thresholds.get(task, 0.20))
    gens = {m: _of(by_kind, GenerationRecord, m) for m in methods}
    method_out = {m: _method_summary(task, gens[m], scorer) for m in methods}
    gate = gate_method(methods)
    verdict_value, reason = _verdict(method_out[gate].intervention_rate, threshold)
    counts = method_out[gate].ir_counts
    if verdict_value is None and counts and sum(u for u, _ in counts) > 0:
        # Rounds but not one base-written token: the guide wrote every word.
        verdict_value = Verdict.FAIL.value
        reason = "intervention rate undefined: the guide wrote every token (no base tokens)"
    elif verdict_value is None and counts and method_out[gate].ir_definition is not None:
        # Nothing counted at all (0/0): the reference loop's guide ended every response in
        # its first turn. No rate, so no PASS: an undecided task.
        verdict_value = Verdict.WARN.value
        reason = "intervention rate undefined: no round and no base token was counted (0/0)"
    budget = info.n
    max_new = int(settings.max_new.get(task, 0) or 0)
    test = sequential_test(counts, threshold, max_new, method_out[gate].ir_definition)
    sequential = _sequential_summary(test, settings.sequential, budget, len(counts))
    if sequential is not None and sequential.used_for_verdict:
        verdict_value, reason = sequential.verdict, sequential.reason
    gate_steps = [s for g in gens[gate] for s in g.steps if s.uncertain and s.overlap is not None]
    overlap = (
        OverlapSummary.model_validate(
            overlap_summary(
                [float(s.overlap or 0.0) for s in gate_steps],
                [bool(s.guide_top1_in_base) for s in gate_steps],
            )
        )
        if gate_steps
        else None
    )
    used = len(gens[gate])
    return TaskSummary(
        n=used,
        budget=budget,
        dataset_size=info.dataset_size,
        subset=used < info.dataset_size,
        threshold=threshold,
        gate_method=gate,
        verdict=verdict_value,  # type: ignore[arg-type]  # a Verdict's value
        verdict_source="anytime-valid"
        if sequential is not None and sequential.used_for_verdict
        else "bootstrap",
        reason=reason,
        sequential=sequential,
        methods=method_out,
        overlap=overlap,
        calibration=_calibration(by_kind),
        answer_calibration=_answer_calibration(by_kind),
        arbitration=_arbitration(_of(by_kind, ArbitrationRecord, ARBITRATED)),
        comparisons=_comparisons(methods, gens),
    )


def _sequential_summary(
    test: SequentialTest | None, on: bool, budget: int, used: int
) -> SequentialSummary | None:
    """The sequential test's state, why decoding stopped, and its verdict with a reason."""
    if test is None:
        return None
    interval = test.interval()
    span = f"[{interval.low:.3f}, {interval.high:.3f}]"
    chance: float | None = None
    if test.verdict is not None:
        side = "above" if test.verdict is Verdict.FAIL else "below"
        fail = test.verdict is Verdict.FAIL
        bound = 1 / (test.alpha_fail if fail else test.alpha_pass)
        stop = "decided"
        reason = (
            f"anytime-valid test: the intervention rate is {side} {test.theta:.2f} "
            f"(e-value reached {bound:.0f}) after {test.decided_at} "
            f"samples; {used} decoded, anytime-valid interval {span}"
        )
    else:
        futile, chance = test.futile(budget - used)
        stop = "budget" if used >= budget else "futile" if futile and on else "incomplete"
        reason = (
            f"anytime-valid test undecided after {used} of {budget} samples "
            f"(interval {span} contains {test.theta:.2f})"
        )
        if stop == "futile":
            reason += (
                f"; a decision within the budget had an estimated chance of {chance:.1%}, "
                "so the probe stopped early"
            )
    if not on:
        stop = "fixed"
    return SequentialSummary.model_validate(
        {
            **test.to_dict(),
            "budget": budget,
            "used": used,
            "stop_reason": stop,
            **({"decision_chance": chance} if stop == "futile" else {}),
            "used_for_verdict": on,
            "verdict": test.final_verdict().value,
            "reason": reason,
        }
    )


def _calibration(by_kind: ByKind) -> dict[str, Calibration] | None:
    out = {}
    for role in ("base", "guide"):
        recs = [r for r in _of(by_kind, CalibrationRecord, role) if r.confidence]
        if recs:
            out[role] = Calibration.model_validate(
                calibration_summary(
                    [r.confidence for r in recs], [r.correct for r in recs]
                ).to_dict()
            )
    return out or None


def _answer_calibration(by_kind: ByKind) -> dict[str, Calibration] | None:
    """One (confidence, correct) pair per sample: the renormalised option-letter distribution."""
    out = {}
    for role in ("base", "guide"):
        recs = _of(by_kind, AnswerRecord, role)
        if recs:
            conf = [[max(r.probs)] for r in recs]
            corr = [[r.letters[r.probs.index(max(r.probs))] == r.answer] for r in recs]
            out[role] = Calibration.model_validate(calibration_summary(conf, corr).to_dict())
    return out or None


def _arbitration(recs: list[ArbitrationRecord]) -> Arbitration | None:
    if not recs:
        return None
    picks = ("base", "guide", "confident", "blend")
    flat = {p: [v for r in recs for v in getattr(r, p)] for p in picks}
    flat["oracle"] = [b or g for b, g in zip(flat["base"], flat["guide"])]
    n = len(flat["base"])
    if n == 0:
        return Arbitration(
            n_positions=0,
            accuracy=None,
            confidence_helps=None,
            statement="The base was never uncertain on the references: nothing to arbitrate.",
        )
    acc = {p: _interval(proportion(sum(v), n)) for p, v in flat.items()}
    point = {p: float(acc[p].point or 0.0) for p in acc}
    better = "base" if point["base"] >= point["guide"] else "guide"
    conf, single = point["confident"], point[better]
    # Positions of one sample are not independent: resample whole samples.
    diff = bootstrap_ratio(
        [sum(r.confident) - sum(getattr(r, better)) for r in recs], [len(r.base) for r in recs]
    )
    helps = bool(diff.low > 0)
    span = f"difference {diff.point:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
    rates = f"the more confident model is right {conf:.3f} of the time vs {single:.3f} for the"
    if helps:
        statement = f"Confidence arbitrates better than the better single model: {rates} {better}"
    elif diff.high < 0:
        statement = f"Confidence arbitrates worse than the better single model: {rates} {better}"
    else:
        statement = (
            "Confidence does not arbitrate detectably better than the better single model: "
            f"{rates} {better}"
        )
    statement += (
        f" alone ({span}, 95 % bootstrap over samples)."
        f" BlendIn's pick: {point['blend']:.2f}; oracle: {point['oracle']:.2f}."
    )
    return Arbitration(
        n_positions=n,
        accuracy=acc,
        confidence_minus_better=_interval(diff),
        confidence_helps=helps,
        statement=statement,
    )


def _mde(n: int, xa: list[bool], xb: list[bool], discordant: int) -> float:
    """Minimum paired difference detectable at this n (80 % power, alpha 0.05).

    Uses the observed discordance; when the outcomes are degenerate (no discordant
    pairs and accuracies of 0 or 1) it falls back to the most conservative p = 0.5,
    rather than claiming that any difference at all would be detected.
    """
    mde = min_detectable_difference(n, sum(xa) / n, sum(xb) / n, discordance=discordant / n or None)
    return mde if mde > 0 else min_detectable_difference(n, 0.5)


def _comparisons(methods: list[str], gens: dict[str, list[GenerationRecord]]) -> list[Comparison]:
    out = []
    for a, b in registry.pairs_in(methods):
        ra = {r.sample_id: r.correct for r in gens[a]}
        rb = {r.sample_id: r.correct for r in gens[b]}
        common = [sid for sid in ra if sid in rb]
        if not common:
            continue
        xa = [ra[s] for s in common]
        xb = [rb[s] for s in common]
        test = mcnemar_exact(xa, xb)
        n = len(common)
        out.append(
            Comparison.model_validate(
                {
                    "a": a,
                    "b": b,
                    "n": n,
                    "diff": paired_bootstrap_diff(xa, xb).to_dict(),
                    "mcnemar": test.to_dict(),
                    "mde": _mde(n, xa, xb, test.n_discordant),
                }
            )
        )
    return out
