"""Synthetic run directories in the on-disk schema the pipeline writes (pairscope.schema).

The records are made up (random steps, confidences and outcomes) but built as
the schema's own typed records, and ``summary.json`` is what the pipeline's
:func:`pairscope.summary.summarize` computes from them: a fixture cannot drift
from the real shape, and a report that shows its numbers can be checked
against them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from pairscope.decoding.types import IR_ROUNDS, IR_UNCERTAIN
from pairscope.pipeline.spec import RunSpec
from pairscope.schema import (
    SCHEMA_VERSION,
    ArbitrationRecord,
    CalibrationRecord,
    GenerationRecord,
    RunConfig,
    SessionRecord,
    dump,
)
from pairscope.summary import summarize

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
            "round_start": False,
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
        # NUDGING: a round starts at an uncertain position that follows a base-written
        # token (or opens the response), so rounds never outnumber base tokens + 1.
        after_base = not steps or steps[-1]["source"] == "base"
        step["round_start"] = method == "nudging" and uncertain and after_base
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
            rounds = sum(st["round_start"] for st in steps)
            base_written = sum(st["source"] == "base" for st in steps)
            ir_kind = {"nudging": IR_ROUNDS, "guide": None}.get(method, IR_UNCERTAIN)
            num, den = {
                IR_ROUNDS: (rounds, base_written),
                IR_UNCERTAIN: (uncertain, positions),
            }.get(ir_kind, (None, None))
            records.append(
                GenerationRecord(
                    task=task,
                    sample_id=sample_id,
                    method=method,
                    prompt=prompt,
                    target="8" if task == "gsm8k" else ("safe" if index % 2 else "unsafe"),
                    text=text,
                    correct=correct,
                    label=("8" if correct else "5")
                    if task == "gsm8k"
                    else ("full_compliance" if correct == (index % 2 == 1) else "full_refusal"),
                    extracted="8" if correct else "5",
                    positions=positions,
                    uncertain=uncertain if ir_kind else None,
                    overridden=overridden,
                    ir_kind=ir_kind,
                    ir_numerator=num,
                    ir_denominator=den,
                    intervention_rate=num / den if den else None,
                    uncertain_rate=uncertain / positions if positions else None,
                    stop_reason="stop",
                    seconds=0.5,
                    steps=steps,
                )
            )
    return records


def _calibration_records(rng: np.random.Generator, task: str, sharp: dict[str, float]) -> list:
    """Teacher-forced confidences per model and sample: sharper for the base than the guide."""
    records = []
    for index in range(N_SAMPLES):
        sample_id = _sha(f"{task}/{index}")[:16]
        for model, a in sharp.items():
            c = np.clip(rng.beta(a, 1.5, size=30), 0.0, 1.0)
            c[:3] = 1.0  # fp32 softmax gives exact 1.0 often: the degenerate [1, 1] bin.
            correct = rng.random(30) < c * 0.9
            records.append(
                CalibrationRecord(
                    task=task,
                    sample_id=sample_id,
                    method=model,
                    confidence=[round(float(x), 4) for x in c],
                    correct=[bool(x) for x in correct],
                )
            )
        picks = rng.random((4, 12)) < np.array([[0.33], [0.41], [0.39], [0.40]])
        records.append(
            ArbitrationRecord(
                task=task,
                sample_id=sample_id,
                method="blendin",
                **{k: [bool(x) for x in row] for k, row in zip(_PICKS, picks)},
            )
        )
    return records


_PICKS = ("base", "guide", "confident", "blend")


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
    settings = RunSpec(
        command=kind,  # type: ignore[arg-type]
        base=base,
        guide=guide,
        tasks=tuple(TASKS),
        task_names=tuple(TASKS),
        methods=tuple(methods),
        n=N_SAMPLES,
        seed=seed,
        sequential=False,  # six samples never settle a sequential test: gate on the bootstrap
        thresholds={task: info["threshold"] for task, info in TASKS.items()},
        max_new={task: 16 for task in TASKS},
    )
    config = RunConfig(
        schema_version=SCHEMA_VERSION,
        created="2026-05-01T12:00:00+00:00",
        command=kind,
        settings=settings,
        pair={
            "base": _model(base, "Gemma3ForCausalLM", 262144, False),
            "guide": _model(guide, "LlamaForCausalLM", 49152, True),
        },
        versions={
            "pairscope": "0.1.0",
            "python": "3.11.7",
            "torch": "2.13.0",
            "transformers": "5.24.0",
            "numpy": "2.4.6",
        },
        data={
            task: {
                "file": info["file"],
                "sha256": _sha(task),
                "hub": None,
                "probe_version": 1,
                "data_fingerprint": _sha(task),
            }
            for task, info in TASKS.items()
        },
        tasks={
            t: {"n": N_SAMPLES, "dataset_size": info["dataset_size"]} for t, info in TASKS.items()
        },
        static_overlap={
            "jaccard": 0.21,
            "base_size": 262144,
            "guide_size": 49152,
            "intersection": 30000,
            "union": 280000,
        },
    )
    records: list = [SessionRecord(task="-", sample_id="1", method="-", load_seconds=3.7)]
    for task in TASKS:
        records += _generations(task, methods, ir_level, accuracy, payload_text, seed)
        if kind == "evaluate" or task == "gsm8k":
            rng = np.random.default_rng([seed, 7, len(task)])
            records += _calibration_records(rng, task, {"base": 3.0, "guide": 1.5})
    manifest = {
        task: {
            "task": task,
            "probe_version": 1,
            "seed": seed,
            "n": N_SAMPLES,
            "ids": [_sha(f"{task}/{index}")[:16] for index in range(N_SAMPLES)],
            "data_sha256": _sha(task),
            "format_version": 1,
        }
        for task in TASKS
    }
    (path / "config.json").write_text(json.dumps(dump(config), indent=2), encoding="utf-8")
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    with (path / "records.jsonl").open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(dump(record)) + "\n")
    # The summary is the pipeline's own, computed from these files.
    (path / "summary.json").write_text(
        json.dumps(dump(summarize(path)), indent=2), encoding="utf-8"
    )
    with (path / "records.jsonl").open("a", encoding="utf-8") as fh:
        # An interrupted run leaves a truncated last line; readers must skip it.
        fh.write('{"kind": "generation", "task": "gsm8k", "sample_')
    return path
