"""summary.json, computed from a run directory's files only (config, manifest, records).

This is the one place where records become numbers, so a run, its resume and
``pairscope report`` all agree. Samples are ordered by the manifest, never by
completion order, and every bootstrap has a fixed seed: the summary is a pure
function of the records.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

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
from pairscope.metrics.sequential import SequentialTest
from pairscope.metrics.stats import (
    Estimate,
    bootstrap_ratio,
    mcnemar_exact,
    min_detectable_difference,
    paired_bootstrap_diff,
    proportion,
)
from pairscope.runs import CONFIG, MANIFEST, SCHEMA_VERSION, iter_records, read_json
from pairscope.tasks import run_rates

GUIDED = ("nudging", "blendin")


def gate_method(methods: list[str]) -> str:
    """The method whose intervention rate the verdict uses: the first guided one."""
    for m in methods:
        if m in GUIDED or m.startswith("blend:"):
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
    NUDGING's rounds can outnumber its base-written tokens by one: every round but
    the first of a response starts after a base-written token. None when no such
    test exists: a threshold of 0 or 1, or a method with no intervention rate.
    """
    from pairscope.decoding.types import IR_ROUNDS

    if ir_kind is None or not 0.0 < threshold < 1.0:
        return None
    d_max = max([max_new_tokens, *(int(d) for _, d in counts), *(int(u) for u, _ in counts)])
    slack = 1 if ir_kind == IR_ROUNDS else 0
    test = SequentialTest(threshold, d_max, numerator_slack=slack)
    for u, d in counts:
        test.update(u, d)
    return test


def summarize(run_dir: Path) -> dict[str, Any]:
    """Compute the summary of a run directory from its files."""
    config = read_json(run_dir / CONFIG)
    manifests = read_json(run_dir / MANIFEST) if (run_dir / MANIFEST).exists() else {}
    settings = config["settings"]
    records: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    load_seconds = 0.0
    for rec in iter_records(run_dir):
        if rec["kind"] == "session":
            load_seconds = float(rec.get("load_seconds", 0.0))
            continue
        records[rec["task"]][(rec["kind"], rec.get("method", ""))].append(rec)
    tasks: dict[str, Any] = {}
    decode_seconds = 0.0
    for task in settings["tasks"]:
        order = {sid: i for i, sid in enumerate(manifests.get(task, {}).get("ids", []))}
        by_kind = {
            key: sorted(recs, key=lambda r: order.get(r["sample_id"], len(order)))
            for key, recs in records.get(task, {}).items()
        }
        info = config.get("tasks", {}).get(task, {})
        tasks[task] = _task_summary(task, info, settings, by_kind)
        decode_seconds += sum(m["seconds"] for m in tasks[task]["methods"].values())
    verdicts = [Verdict(t["verdict"]) for t in tasks.values() if t["verdict"] is not None]
    overall = (
        overall_verdict(verdicts, policy=settings.get("policy", "any-fail"))
        if verdicts
        else Verdict.WARN
    )
    strict = bool(settings.get("strict", False))
    passed = gate_passes(overall, strict=strict)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": config.get("command", "probe"),
        "pair": config.get("pair", {}),
        "settings": settings,
        "versions": config.get("versions", {}),
        "data": config.get("data", {}),
        "static_overlap": config.get("static_overlap"),
        "timing": {
            "load_seconds": round(load_seconds, 3),
            "decode_seconds": round(decode_seconds, 3),
        },
        "tasks": tasks,
        "overall": {
            "verdict": overall.value,
            "gate_passed": passed,
            "exit_code": 0 if passed else 1,
            "policy": settings.get("policy", "any-fail"),
            "strict": strict,
        },
    }


def _est(estimate: Estimate | None) -> dict[str, Any] | None:
    return None if estimate is None else estimate.to_dict()


def _method_summary(task: str, gens: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(gens)
    correct = sum(bool(g["correct"]) for g in gens)
    counts = [g for g in gens if g["uncertain"] is not None]
    out: dict[str, Any] = {
        "score": {**proportion(correct, n).to_dict(), "correct": correct, "n": n},
        "ir_definition": None,
        "intervention_rate": None,
        "uncertain_rate": None,
        "override_rate": None,
        "ir_distribution": None,
        "per_sample_ir": [],
        "ir_counts": [],
        "tokens": sum(int(g["positions"]) for g in gens),
        "seconds": round(sum(float(g.get("seconds", 0.0)) for g in gens), 3),
    }
    out["tokens_per_second"] = round(out["tokens"] / out["seconds"], 2) if out["seconds"] else None
    if counts and sum(g["positions"] for g in counts) > 0:
        unc = [g["uncertain"] for g in counts]
        pos = [g["positions"] for g in counts]
        # The method's own intervention rate (DESIGN §3): its numerator and denominator.
        num = [g["ir_numerator"] for g in counts]
        den = [g["ir_denominator"] for g in counts]
        out["ir_definition"] = counts[0]["ir_kind"]
        out["ir_counts"] = [[int(u), int(d)] for u, d in zip(num, den)]
        if sum(den) > 0:
            out["intervention_rate"] = intervention_rate(num, den).to_dict()
        out["uncertain_rate"] = intervention_rate(unc, pos).to_dict()
        out["override_rate"] = intervention_rate([g["overridden"] for g in counts], pos).to_dict()
        rates = per_sample_rates(num, den)
        out["ir_distribution"] = distribution_summary(rates).to_dict()
        out["per_sample_ir"] = [None if r != r else round(float(r), 4) for r in rates]
    task_rates = run_rates(task, gens)
    if task_rates is not None:
        out["rates"] = task_rates
    return out


def _verdict(ir: dict[str, Any] | None, threshold: float) -> tuple[str | None, str]:
    if ir is None or ir["low"] is None:
        return None, "no intervention rate was measured"
    v = verdict((ir["low"], ir["high"]), threshold)
    interval = f"{ir['point']:.3f} [{ir['low']:.3f}, {ir['high']:.3f}]"
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
    task: str,
    info: dict[str, Any],
    settings: dict[str, Any],
    by_kind: dict[tuple[str, str], list[dict[str, Any]]],
) -> dict[str, Any]:
    methods = list(settings["methods"])
    threshold = float(settings.get("thresholds", {}).get(task, 0.20))
    method_out = {m: _method_summary(task, by_kind.get(("generation", m), [])) for m in methods}
    gate = gate_method(methods)
    verdict_value, reason = _verdict(method_out[gate]["intervention_rate"], threshold)
    counts = method_out[gate]["ir_counts"]
    if verdict_value is None and counts and sum(u for u, _ in counts) > 0:
        # Rounds but not one base-written token: the guide wrote every word.
        verdict_value = Verdict.FAIL.value
        reason = "intervention rate undefined: the guide wrote every token (no base tokens)"
    budget = int(info.get("n", 0))
    max_new = int(settings.get("max_new_tokens", {}).get(task, 0) or 0)
    test = sequential_test(counts, threshold, max_new, method_out[gate]["ir_definition"])
    sequential = _sequential_summary(test, bool(settings.get("sequential")), budget, len(counts))
    if sequential is not None and sequential["used_for_verdict"]:
        verdict_value, reason = sequential["verdict"], sequential["reason"]
    gate_steps = [
        s
        for g in by_kind.get(("generation", gate), [])
        for s in g["steps"]
        if s["uncertain"] and s.get("overlap") is not None
    ]
    overlap = (
        overlap_summary(
            [s["overlap"] for s in gate_steps], [bool(s["guide_top1_in_base"]) for s in gate_steps]
        )
        if gate_steps
        else None
    )
    used = len(by_kind.get(("generation", gate), []))
    out: dict[str, Any] = {
        "n": used,
        "budget": budget,
        "dataset_size": int(info.get("dataset_size", 0)),
        "subset": used < int(info.get("dataset_size", 0)),
        "threshold": threshold,
        "gate_method": gate,
        "verdict": verdict_value,
        "verdict_source": "anytime-valid"
        if sequential is not None and sequential["used_for_verdict"]
        else "bootstrap",
        "reason": reason,
        "sequential": sequential,
        "methods": method_out,
        "overlap": overlap,
        "calibration": _calibration(by_kind, "calibration"),
        "answer_calibration": _answer_calibration(by_kind),
        "arbitration": _arbitration(by_kind.get(("arbitration", "blendin"), [])),
        "comparisons": _comparisons(methods, by_kind),
    }
    return out


def _sequential_summary(
    test: SequentialTest | None, on: bool, budget: int, used: int
) -> dict[str, Any] | None:
    """The sequential test's state, why decoding stopped, and its verdict with a reason."""
    if test is None:
        return None
    interval = test.interval()
    span = f"[{interval.low:.3f}, {interval.high:.3f}]"
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
        stop = "budget" if used >= budget else "incomplete"
        reason = (
            f"anytime-valid test undecided after {used} of {budget} samples "
            f"(interval {span} contains {test.theta:.2f})"
        )
    if not on:
        stop = "fixed"
    verdict_value = test.final_verdict().value
    return {
        **test.to_dict(),
        "budget": budget,
        "used": used,
        "stop_reason": stop,
        "used_for_verdict": on,
        "verdict": verdict_value,
        "reason": reason,
    }


def _calibration(
    by_kind: dict[tuple[str, str], list[dict[str, Any]]], kind: str
) -> dict[str, Any] | None:
    out = {}
    for role in ("base", "guide"):
        recs = [r for r in by_kind.get((kind, role), []) if r["confidence"]]
        if recs:
            out[role] = calibration_summary(
                [r["confidence"] for r in recs], [r["correct"] for r in recs]
            ).to_dict()
    return out or None


def _answer_calibration(
    by_kind: dict[tuple[str, str], list[dict[str, Any]]],
) -> dict[str, Any] | None:
    """One (confidence, correct) pair per sample: the renormalised option-letter distribution."""
    out = {}
    for role in ("base", "guide"):
        recs = by_kind.get(("answer", role), [])
        if recs:
            conf = [[max(r["probs"])] for r in recs]
            corr = [[r["letters"][r["probs"].index(max(r["probs"]))] == r["answer"]] for r in recs]
            out[role] = calibration_summary(conf, corr).to_dict()
    return out or None


def _arbitration(recs: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not recs:
        return None
    picks = ("base", "guide", "confident", "blend")
    flat = {p: [v for r in recs for v in r[p]] for p in picks}
    flat["oracle"] = [b or g for b, g in zip(flat["base"], flat["guide"])]
    n = len(flat["base"])
    if n == 0:
        return {
            "n_positions": 0,
            "accuracy": None,
            "confidence_helps": None,
            "statement": "The base was never uncertain on the references: nothing to arbitrate.",
        }
    acc: dict[str, dict[str, Any]] = {p: proportion(sum(v), n).to_dict() for p, v in flat.items()}
    point = {p: float(acc[p]["point"]) for p in acc}
    better = "base" if point["base"] >= point["guide"] else "guide"
    conf, single = point["confident"], point[better]
    # Positions of one sample are not independent: resample whole samples.
    diff = bootstrap_ratio(
        [sum(r["confident"]) - sum(r[better]) for r in recs], [len(r["base"]) for r in recs]
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
        f" BlendIn's pick: {acc['blend']['point']:.2f}; oracle: {acc['oracle']['point']:.2f}."
    )
    return {
        "n_positions": n,
        "accuracy": acc,
        "confidence_minus_better": diff.to_dict(),
        "confidence_helps": helps,
        "statement": statement,
    }


def _mde(n: int, xa: list[bool], xb: list[bool], discordant: int) -> float:
    """Minimum paired difference detectable at this n (80 % power, alpha 0.05).

    Uses the observed discordance; when the outcomes are degenerate (no discordant
    pairs and accuracies of 0 or 1) it falls back to the most conservative p = 0.5,
    rather than claiming that any difference at all would be detected.
    """
    mde = min_detectable_difference(n, sum(xa) / n, sum(xb) / n, discordance=discordant / n or None)
    return mde if mde > 0 else min_detectable_difference(n, 0.5)


PAIRS = (("blendin", "nudging"), ("blendin", "base"), ("nudging", "base"), ("guide", "base"))


def _comparisons(
    methods: list[str], by_kind: dict[tuple[str, str], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    out = []
    for a, b in PAIRS:
        if a not in methods or b not in methods:
            continue
        ra = {r["sample_id"]: bool(r["correct"]) for r in by_kind.get(("generation", a), [])}
        rb = {r["sample_id"]: bool(r["correct"]) for r in by_kind.get(("generation", b), [])}
        common = [sid for sid in ra if sid in rb]
        if not common:
            continue
        xa = [ra[s] for s in common]
        xb = [rb[s] for s in common]
        test = mcnemar_exact(xa, xb)
        n = len(common)
        out.append(
            {
                "a": a,
                "b": b,
                "n": n,
                "diff": paired_bootstrap_diff(xa, xb).to_dict(),
                "mcnemar": test.to_dict(),
                "mde": _mde(n, xa, xb, test.n_discordant),
            }
        )
    return out
