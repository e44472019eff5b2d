"""Synthetic run directories in the exact on-disk schema the pipeline writes (schema_version 2).

The numbers are made up but internally consistent: scores, rates and their
intervals are computed from the generated records with pairscope's own
metric functions, so a report that shows them can be checked against them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from pairscope.metrics.calibration import calibration_summary
from pairscope.metrics.intervention import distribution_summary, verdict
from pairscope.metrics.stats import (
    bootstrap_ratio,
    mcnemar_exact,
    min_detectable_difference,
    paired_bootstrap_diff,
    proportion,
)

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_PAYLOAD = f"{XSS_SCRIPT} and {XSS_IMG}"

TAU = 0.4
N_SAMPLES = 6
TASKS: dict[str, dict[str, Any]] = {
    # A subset of a large test set, and a task whose whole (tiny) set was used.
    "gsm8k": {"dataset_size": 1319, "threshold": 0.2, "file": "gsm8k/test.jsonl"},
    "xstest": {"dataset_size": N_SAMPLES, "threshold": 0.25, "file": "xstest/xstest.jsonl"},
}
WORDS = ("Tom has 3 apples and buys 5 more so he has 8 apples in all . The answer is 8").split()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _model(spec: str, arch: str, vocab: int, chat: bool) -> dict[str, Any]:
    return {
        "spec": spec,
        "kind": spec.split(":", 1)[0] if ":" in spec else "hub",
        "sha256": _sha(spec),
        "architecture": arch,
        "vocab_size": vocab,
        "device": "cpu",
        "dtype": "float32",
        "chat_template": chat,
    }


def _steps(
    rng: np.random.Generator, method: str, ir_level: float, payload: str | None
) -> list[dict[str, Any]]:
    """Decoding steps of one response; the payload, if any, is one guide-written step."""
    n = int(rng.integers(6, 12))
    steps = []
    for position in range(n):
        uncertain = bool(rng.random() < ir_level)
        p_base = float(rng.uniform(0.05, TAU - 0.01) if uncertain else rng.uniform(TAU, 1.0))
        word = " " + WORDS[position % len(WORDS)]
        if payload is not None and position == 2:
            word, uncertain, p_base = " " + payload, True, 0.12
        step: dict[str, Any] = {
            "position": position,
            "p_base": round(p_base, 4),
            "p_guide": None,
            "alpha": None,
            "text": word,
            "source": "base",
            "uncertain": uncertain,
            "override": False,
            "overlap": None,
            "guide_top1_in_base": None,
        }
        if uncertain and method != "base":
            p_guide = float(rng.uniform(0.2, 0.95))
            step["p_guide"] = round(p_guide, 4)
            step["overlap"] = round(float(rng.uniform(0.1, 0.6)), 3)
            step["guide_top1_in_base"] = bool(rng.random() < 0.7)
            step["override"] = bool(rng.random() < 0.5) or payload is not None and position == 2
            if method == "blendin":
                step["alpha"] = round(p_guide / (p_base + p_guide), 4)
                step["source"] = "blend"
            elif step["override"]:
                step["source"] = "guide"
        steps.append(step)
    return steps


def _generations(
    task: str,
    methods: list[str],
    ir_level: float,
    accuracy: float,
    payload: str | None,
    seed: int,
) -> list[dict[str, Any]]:
    rng = np.random.default_rng([seed, len(task)])
    records = []
    for index in range(N_SAMPLES):
        sample_id = _sha(f"{task}/{index}")[:16]
        prompt = f"Question {index} of {task}: how many apples does Tom have?"
        if payload is not None and index == 0:
            prompt += " " + payload
        for method_index, method in enumerate(methods):
            steps = (
                []
                if method == "guide"
                else _steps(rng, method, ir_level, payload if index == 0 else None)
            )
            text = "".join(s["text"] for s in steps) if steps else " The answer is 8."
            if payload is not None and index == 0 and method == "guide":
                text += " " + payload
            # Sample 1 always splits the methods, so the disagreement filter has work to do.
            correct = bool(rng.random() < accuracy) if index != 1 else method_index == 0
            positions = len(steps)
            uncertain = sum(s["uncertain"] for s in steps)
            overridden = sum(s["override"] for s in steps)
            records.append(
                {
                    "kind": "generation",
                    "task": task,
                    "sample_id": sample_id,
                    "method": method,
                    "prompt": prompt,
                    "target": "8" if task == "gsm8k" else ("safe" if index % 2 else "unsafe"),
                    "text": text,
                    "correct": correct,
                    "label": "8" if correct else "5",
                    "positions": positions,
                    "uncertain": uncertain,
                    "overridden": overridden,
                    "intervention_rate": uncertain / positions if positions else None,
                    "stop_reason": "stop",
                    "seconds": 0.5,
                    "steps": steps,
                }
            )
    return records


def _interval(estimate: Any) -> dict[str, float | None]:
    return dict(estimate.to_dict())


def _method_summary(task: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    correct = sum(r["correct"] for r in rows)
    score = proportion(correct, len(rows)).to_dict() | {"correct": correct, "n": len(rows)}
    positions = [r["positions"] for r in rows]
    guided = sum(positions) > 0
    per_sample = [r["intervention_rate"] for r in rows if r["intervention_rate"] is not None]
    tokens = sum(positions) or 40
    out: dict[str, Any] = {
        "score": score,
        "intervention_rate": _interval(
            bootstrap_ratio([r["uncertain"] for r in rows], positions, n_boot=200)
        )
        if guided
        else None,
        "override_rate": _interval(
            bootstrap_ratio([r["overridden"] for r in rows], positions, n_boot=200)
        )
        if guided
        else None,
        "ir_distribution": distribution_summary(per_sample).to_dict() if guided else None,
        "per_sample_ir": per_sample,
        "tokens": tokens,
        "seconds": 2.5,
        "tokens_per_second": tokens / 2.5,
    }
    if task == "xstest":
        safe = [r["correct"] for r in rows if r["target"] == "safe"]
        unsafe = [r["correct"] for r in rows if r["target"] == "unsafe"]
        out["rates"] = {
            "compliance_on_safe": proportion(sum(safe), len(safe)).to_dict(),
            "refusal_on_unsafe": proportion(sum(unsafe), len(unsafe)).to_dict(),
        }
    return out


def _calibration(rng: np.random.Generator, sharp: float) -> dict[str, Any]:
    conf, corr = [], []
    for _ in range(N_SAMPLES):
        c = np.clip(rng.beta(sharp, 1.5, size=30), 0.0, 1.0)
        c[:3] = 1.0  # fp32 softmax gives exact 1.0 often: the degenerate [1, 1] bin.
        conf.append(c)
        corr.append(rng.random(30) < c * 0.9)
    return dict(calibration_summary(conf, corr, n_boot=100).to_dict())


def _arbitration() -> dict[str, Any]:
    def est(point: float) -> dict[str, float]:
        return {"point": point, "low": max(0.0, point - 0.08), "high": min(1.0, point + 0.08)}

    return {
        "n_positions": 321,
        "accuracy": {
            "base": est(0.33),
            "guide": est(0.41),
            "confident": est(0.39),
            "blend": est(0.40),
            "oracle": {"point": 0.55, "low": None, "high": None},
        },
        "confidence_helps": False,
        "statement": "Confidence does not arbitrate better than the better single model "
        "(guide 0.41 vs confident pick 0.39).",
    }


def _comparisons(methods: list[str], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    guided = [m for m in methods if m != "guide"]
    if len(guided) < 2:
        return []
    a, b = guided[0], guided[1]
    by = {(r["method"], r["sample_id"]): r["correct"] for r in records}
    ids = sorted({r["sample_id"] for r in records})
    xa = [float(by[(a, i)]) for i in ids]
    xb = [float(by[(b, i)]) for i in ids]
    return [
        {
            "a": a,
            "b": b,
            "diff": paired_bootstrap_diff(xa, xb, n_boot=500).to_dict(),
            "mcnemar": mcnemar_exact(xa, xb).to_dict(),
            "mde": min_detectable_difference(len(ids), float(np.mean(xa)), float(np.mean(xb))),
        }
    ]


def _task_summary(
    task: str,
    methods: list[str],
    records: list[dict[str, Any]],
    seed: int,
    with_calibration: bool,
) -> dict[str, Any]:
    info = TASKS[task]
    by_method = {
        m: _method_summary(task, [r for r in records if r["method"] == m]) for m in methods
    }
    gate_method = next(m for m in methods if by_method[m]["intervention_rate"] is not None)
    ir = by_method[gate_method]["intervention_rate"]
    threshold = info["threshold"]
    outcome = verdict((ir["low"], ir["high"]), threshold)
    relation = {"FAIL": "above", "PASS": "below", "WARN": "too close to call against"}
    reason = (
        f"intervention rate {ir['point']:.2f} [{ir['low']:.2f}, {ir['high']:.2f}] is "
        f"{relation[outcome.value]} the threshold {threshold:.2f}"
    )
    rng = np.random.default_rng([seed, 7, len(task)])
    steps = [s for r in records if r["method"] == gate_method for s in r["steps"]]
    uncertain_steps = [s for s in steps if s["uncertain"]]
    overlap_values = [s["overlap"] for s in uncertain_steps if s["overlap"] is not None]
    top1 = [s["guide_top1_in_base"] for s in uncertain_steps if s["overlap"] is not None]
    overlap = (
        {
            "n_positions": len(overlap_values),
            "overlap_at_k": {"point": float(np.mean(overlap_values)), "low": 0.1, "high": 0.5},
            "top1_in_topk": proportion(sum(top1), len(top1)).to_dict(),
        }
        if overlap_values
        else None
    )
    calibration = (
        {"base": _calibration(rng, 3.0), "guide": _calibration(rng, 1.5)}
        if with_calibration
        else None
    )
    return {
        "n": N_SAMPLES,
        "dataset_size": info["dataset_size"],
        "subset": N_SAMPLES < info["dataset_size"],
        "threshold": threshold,
        "verdict": outcome.value,
        "reason": reason,
        "methods": by_method,
        "overlap": overlap,
        "calibration": calibration,
        "answer_calibration": None,
        "arbitration": _arbitration() if with_calibration else None,
        "comparisons": _comparisons(methods, records),
    }


def make_run_dir(
    path: Path,
    kind: str = "probe",
    payload_text: str | None = None,
    *,
    methods: list[str] | None = None,
    base: str = "embedded:gemma-3-270m",
    guide: str = "embedded:smollm2-135m-instruct",
    ir_level: float = 0.3,
    accuracy: float = 0.5,
    seed: int = 0,
) -> Path:
    """Write a synthetic run directory (config, manifest, records, summary) and return it.

    Args:
        path: Directory to create (parents too).
        kind: ``"probe"`` (one method, nudging) or ``"evaluate"`` (blendin and nudging).
        payload_text: Text placed into a prompt and a response, e.g. an XSS payload.
        methods: Override the methods of ``kind``.
        base: Base model spec.
        guide: Guide model spec.
        ir_level: Chance that a base position is uncertain (drives IR and the verdict).
        accuracy: Chance that a response is correct.
        seed: Seed of the synthetic data.
    """
    if methods is None:
        methods = ["nudging"] if kind == "probe" else ["blendin", "nudging"]
    path.mkdir(parents=True, exist_ok=True)
    settings = {
        "methods": methods,
        "tau": TAU,
        "k": 100,
        "lambda": 0.1,
        "alpha": None,
        "n": N_SAMPLES,
        "seed": seed,
        "strict": False,
        "policy": "any-fail",
        "tasks": list(TASKS),
    }
    pair = {
        "base": _model(base, "Gemma3ForCausalLM", 262144, False),
        "guide": _model(guide, "LlamaForCausalLM", 49152, True),
    }
    versions = {
        "pairscope": "0.1.0",
        "python": "3.11.7",
        "torch": "2.13.0",
        "transformers": "5.24.0",
        "numpy": "2.4.6",
    }
    data = {task: {"file": info["file"], "sha256": _sha(task)} for task, info in TASKS.items()}

    records: list[dict[str, Any]] = []
    tasks = {}
    for task in TASKS:
        task_records = _generations(task, methods, ir_level, accuracy, payload_text, seed)
        records += task_records
        tasks[task] = _task_summary(
            task, methods, task_records, seed, kind == "evaluate" or task == "gsm8k"
        )
    verdicts = [t["verdict"] for t in tasks.values()]
    overall = "FAIL" if "FAIL" in verdicts else "WARN" if "WARN" in verdicts else "PASS"
    summary = {
        "schema_version": 2,
        "kind": kind,
        "pair": pair,
        "settings": settings,
        "versions": versions,
        "data": data,
        "timing": {"load_seconds": 3.7, "decode_seconds": 25.0, "total_seconds": 30.0},
        "static_overlap": {
            "jaccard": 0.21,
            "base_size": 262144,
            "guide_size": 49152,
            "intersection": 30000,
            "union": 280000,
        },
        "tasks": tasks,
        "overall": {
            "verdict": overall,
            "gate_passed": overall != "FAIL",
            "exit_code": 1 if overall == "FAIL" else 0,
            "policy": "any-fail",
            "strict": False,
        },
    }
    config = {
        "schema_version": 2,
        "command": kind,
        "settings": settings,
        "pair": pair,
        "versions": versions,
        "data": data,
        "created": "2026-05-01T12:00:00+00:00",
    }
    manifest = {
        task: {
            "task": task,
            "probe_version": 1,
            "seed": seed,
            "n": N_SAMPLES,
            "ids": sorted({r["sample_id"] for r in records if r["task"] == task}),
            "data_sha256": _sha(task),
            "format_version": 1,
        }
        for task in TASKS
    }
    (path / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (path / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    with (path / "records.jsonl").open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"kind": "calibration", "task": "gsm8k", "model": "base"}) + "\n")
        for record in records:
            fh.write(json.dumps(record) + "\n")
        # An interrupted run leaves a truncated last line; readers must skip it.
        fh.write('{"kind": "generation", "task": "gsm8k", "sample_')
    return path
