"""The core of `pairscope probe` and `pairscope evaluate`: samples -> decoding -> records.

Data flows one way: options -> probes (samples, manifests) -> engine + strategy
(results) -> records.jsonl (one line per finished sample) -> summary.json (from
the records only) -> figures and report.html (from the files only).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import pairscope.methods as registry
from pairscope.config import RunOptions
from pairscope.errors import RuntimeFault
from pairscope.preflight import (
    check_same_data,
    check_same_models,
    data_info,
    default_out,
    load_models,
    prepare,
)
from pairscope.runs import MANIFEST, RunDir, versions
from pairscope.schema import (
    AnswerRecord,
    ArbitrationRecord,
    CalibrationRecord,
    GenerationRecord,
    RunConfig,
    SessionRecord,
    StaticOverlap,
    Summary,
    dump,
)

# The method whose picks the teacher-forced arbitration check scores.
ARBITRATED = registry.with_record("arbitration")[0]


class Progress(Protocol):
    """What the pipeline reports while it runs (the CLI draws it with Rich)."""

    def phase(self, text: str) -> None: ...

    def start(self, task: str, method: str, total: int, done: int) -> None: ...

    def advance(
        self, task: str, method: str, tokens: int, ir_counts: tuple[int, int] | None
    ) -> None: ...


class _Silent:
    def phase(self, text: str) -> None:
        pass

    def start(self, task: str, method: str, total: int, done: int) -> None:
        pass

    def advance(
        self, task: str, method: str, tokens: int, ir_counts: tuple[int, int] | None
    ) -> None:
        pass


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run. Carries the run directory so the CLI can say how to resume."""

    def __init__(self, run_dir: Path, command: str) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir
        self.command = command


def run(opts: RunOptions, progress: Progress | None = None) -> tuple[Summary, Path]:
    """Run a probe or an evaluation; return its summary and run directory.

    Everything that can be checked cheaply (settings, output directory, data, a
    resume's settings) is checked before the models load, and the run directory is
    created only once the models have loaded, so bad input leaves nothing behind.

    Raises:
        InputError: bad settings, data, models or run directory (exit 2).
        RuntimeFault: a failure while decoding; finished samples stay on disk (exit 3).
        RunInterrupted: Ctrl-C; finished samples stay on disk (exit 130).
    """
    from pairscope.summary import summarize

    progress = progress or _Silent()
    opts.validate()
    started = time.perf_counter()
    progress.phase("Loading probes and data")
    out = Path(opts.resume or opts.out or default_out(opts.command))
    opts, old, tasks, settings = prepare(opts, out)
    max_new = settings["max_new_tokens"]
    resumed = RunDir.resume(out, settings) if opts.resume else None
    try:
        if resumed is not None and old is not None:
            check_same_data(out, old, tasks)
        progress.phase(f"Loading models: base {opts.base}, guide {opts.guide}")
        pair, load_seconds = load_models(opts)
    except BaseException:
        if resumed is not None:
            resumed.close()
        raise
    try:
        if resumed is not None and old is not None:
            check_same_models(out, old, pair)
        run_dir = resumed or RunDir.create(out, settings, force=opts.force)
    except BaseException:
        pair.close()
        if resumed is not None:
            resumed.close()
        raise
    try:
        if not (run_dir.path / MANIFEST).is_file():
            run_dir.write_manifest({name: _manifest_dict(t[2]) for name, t in tasks.items()})
        _work(run_dir, pair, opts, settings, tasks, max_new, load_seconds, progress)
        progress.phase("Summarising")
        summary = summarize(run_dir.path)
        total = round(time.perf_counter() - started, 3)
        timing = summary.timing.model_copy(update={"total_seconds": total})
        summary = summary.model_copy(update={"timing": timing})
        run_dir.write_summary(summary)
        if opts.report:
            progress.phase("Rendering figures and report.html")
            _render(run_dir.path)
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir.path, opts.command) from None
    except RuntimeFault as exc:
        keep = (
            f"Finished samples are kept in {run_dir.path}; continue with "
            f"`pairscope {opts.command} --resume {run_dir.path}`."
        )
        exc.hint = f"{exc.hint} {keep}" if exc.hint else keep
        raise
    finally:
        pair.close()
        run_dir.close()
    return summary, run_dir.path


def _work(
    run_dir: RunDir,
    pair: Any,
    opts: RunOptions,
    settings: dict[str, Any],
    tasks: dict[str, Any],
    max_new: dict[str, int],
    load_seconds: float,
    progress: Progress,
) -> None:
    """Decode and teacher-force every unit of work not yet in records.jsonl."""
    start_session(run_dir, load_seconds)
    _write_config(run_dir, opts, settings, pair, tasks)
    for name, (spec, samples, *_) in tasks.items():
        for method in opts.methods:
            done = sum(run_dir.has("generation", name, s.id, method) for s in samples)
            progress.start(name, method, len(samples), done)
        if settings["sequential"]:
            threshold = float(settings["thresholds"][name])
            samples = _generate_sequential(
                run_dir, pair, opts, name, spec, samples, max_new[name], threshold, progress
            )
        else:
            for method in opts.methods:
                _generate(run_dir, pair, opts, name, spec, samples, method, max_new[name], progress)
        if opts.calibration and opts.command == "probe":
            try:
                _teacher_force(run_dir, pair, opts, name, samples, progress)
            except Exception as exc:
                if _is_oom(exc):
                    raise RuntimeFault(
                        f"Out of memory while teacher forcing {name} (one sample at a time).",
                        hint="Use a smaller model, --dtype bfloat16, or --no-calibration.",
                    ) from None
                raise


def _manifest_dict(manifest: Any) -> dict[str, Any]:
    data = asdict(manifest)
    data["ids"] = list(manifest.ids)
    return data


def start_session(run_dir: RunDir, load_seconds: float) -> None:
    """One session record: when this process started writing, and its model load time."""
    run_dir.append(
        SessionRecord(
            task="-",
            sample_id=f"{time.time():.6f}",
            method="-",
            load_seconds=round(load_seconds, 3),
        )
    )


def _write_config(
    run_dir: RunDir, opts: RunOptions, settings: dict[str, Any], pair: Any, tasks: dict[str, Any]
) -> None:
    """Complete config.json with what is known once models and data are loaded."""
    from pairscope.metrics.overlap import static_vocab_overlap

    config = run_dir.config()
    static = config.static_overlap
    if static is None:
        static = StaticOverlap.model_validate(
            static_vocab_overlap(
                pair.base.tokenizer.convert_ids_to_tokens(list(range(len(pair.base.tokenizer)))),
                pair.guide.tokenizer.convert_ids_to_tokens(list(range(len(pair.guide.tokenizer)))),
            )
        )
    data = data_info(tasks)
    sizes = {
        name: {"n": len(samples), "dataset_size": size}
        for name, (_, samples, _, size) in tasks.items()
    }
    run_dir.write_config(
        RunConfig.model_validate(
            {
                **dump(config),
                "settings": settings,
                "pair": {"base": pair.base.identity(), "guide": pair.guide.identity()},
                "versions": versions(),
                "data": data,
                "tasks": sizes,
                "static_overlap": dump(static),
            }
        )
    )


def _generate(
    run_dir: RunDir,
    pair: Any,
    opts: RunOptions,
    task: str,
    spec: Any,
    samples: Sequence[Any],
    method: str,
    max_new: int,
    progress: Progress,
) -> None:
    """Decode every not-yet-recorded sample with one method, appending records as they finish.

    A batch that runs out of memory is retried at half the batch size (records already
    written stay); at batch size 1 the run stops with a RuntimeFault, resumable.
    """

    todo = [s for s in samples if not run_dir.has("generation", task, s.id, method)]
    batch_size = opts.batch_size
    while todo:
        try:
            _decode(run_dir, pair, opts, task, spec, todo, method, max_new, batch_size, progress)
            return
        except Exception as exc:
            if not _is_oom(exc):
                raise
            if batch_size == 1:
                raise RuntimeFault(
                    f"Out of memory decoding {task} with {method} even at batch size 1.",
                    hint="Use a smaller model, --dtype bfloat16, or a smaller --max-new-tokens.",
                ) from None
        # Outside the except block, so the failed batch's tensors can be freed.
        _free_memory()
        old, batch_size = batch_size, batch_size // 2
        todo = [s for s in todo if not run_dir.has("generation", task, s.id, method)]
        warnings.warn(
            f"Out of memory decoding {task} with {method} at batch size {old}; retrying the "
            f"{len(todo)} unfinished samples at batch size {batch_size}.",
            stacklevel=2,
        )


def _generate_sequential(
    run_dir: RunDir,
    pair: Any,
    opts: RunOptions,
    task: str,
    spec: Any,
    samples: Sequence[Any],
    max_new: int,
    threshold: float,
    progress: Progress,
) -> list[Any]:
    """Decode ``samples`` in their fixed order, one batch at a time, until the verdict is in.

    After each batch the gate method's samples are fed, in order, to the anytime-valid
    test (:func:`pairscope.summary.sequential_test`, the same replay the summary
    does); decoding stops once it has declared PASS or FAIL, or once a decision
    within the budget has become unlikely (:meth:`SequentialTest.futile`: WARN), and
    at least ``--min-calibration-samples`` samples are decoded (with calibration on,
    for a task whose samples calibration can read: a reference answer or options). The
    samples decoded after the deciding one still count: they are the next in the
    fixed order, and the verdict, once declared, never changes. Returns the samples
    used, a prefix of ``samples``.
    """
    from pairscope.summary import gate_method, sequential_test, stop_phrase

    gate = gate_method(list(opts.methods))
    # Calibration reads only samples with a reference answer or options (not XSTest's).
    calibrated = opts.calibration and any(s.reference or s.options for s in samples)
    need = min(opts.min_calibration_samples, len(samples)) if calibrated else 0
    used = 0
    while used < len(samples):
        if used >= need:
            counts = _ir_counts(run_dir, task, gate, samples[:used])
            test = sequential_test(counts, threshold, max_new, _ir_kind(opts, gate))
            if test is None:
                used = len(samples)  # no valid test at this threshold: spend the budget
                break
            futile, chance = test.futile(len(samples) - used)
            if test.verdict is not None or futile:
                progress.phase(
                    f"{task}: {stop_phrase(test, chance)}; {used} of {len(samples)} decoded"
                )
                break
        chunk = samples[used : max(used + opts.batch_size, need)]
        for method in opts.methods:
            _generate(run_dir, pair, opts, task, spec, chunk, method, max_new, progress)
        used += len(chunk)
    for method in opts.methods:
        _generate(run_dir, pair, opts, task, spec, samples[:used], method, max_new, progress)
    return list(samples[:used])


def _ir_kind(opts: RunOptions, method: str) -> str | None:
    return opts.strategy(method).ir_kind


def _ir_counts(
    run_dir: RunDir, task: str, method: str, samples: Sequence[Any]
) -> list[tuple[int, int]]:
    """The IR numerator and denominator of each of ``samples``, in their order."""
    wanted = {s.id for s in samples}
    found = {
        r.sample_id: (r.ir_numerator, r.ir_denominator)
        for r in run_dir.records()
        if isinstance(r, GenerationRecord)
        and r.task == task
        and r.method == method
        and r.sample_id in wanted
        and r.ir_numerator is not None
        and r.ir_denominator is not None
    }
    return [found[s.id] for s in samples if s.id in found]


def _decode(
    run_dir: RunDir,
    pair: Any,
    opts: RunOptions,
    task: str,
    spec: Any,
    todo: Sequence[Any],
    method: str,
    max_new: int,
    batch_size: int,
    progress: Progress,
) -> None:
    """Decode ``todo`` in batches of ``batch_size``, appending each record as it finishes."""
    from pairscope.decoding.engine import DecodeSettings, Engine, Request
    from pairscope.scoring import score

    settings = DecodeSettings(
        method=method,
        tau=opts.tau,
        top_k=opts.k,
        lam=opts.lam,
        alpha=opts.alpha,
        batch_size=batch_size,
        tokenization=opts.tokenization,
        protocol=opts.protocol,
    )
    engine = Engine(pair, settings)
    requests = [
        Request(
            s.base_prompt,
            s.guide_user,
            tuple(spec.stop),
            max_new,
            guide_system=s.guide_system,
            guide_prefix=s.guide_prefix,
        )
        for s in todo
    ]
    last = [time.perf_counter()]

    def on_result(index: int, result: Any) -> None:
        now = time.perf_counter()
        sample = todo[index]
        scored = score(spec.scorer, sample, result.text)
        run_dir.append(
            GenerationRecord(
                task=task,
                sample_id=sample.id,
                prompt=sample.guide_user,
                target=sample.target,
                correct=scored.correct,
                label=scored.label,
                extracted=scored.extracted,
                seconds=round(now - last[0], 4),
                **result.to_dict(),
            )
        )
        last[0] = now
        progress.advance(task, method, result.positions, result.ir_counts)

    engine.run(requests, on_result)


def _is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error (host, CUDA, or MPS)."""
    if isinstance(exc, MemoryError):
        return True
    import torch

    cuda_oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if cuda_oom is not None and isinstance(exc, cuda_oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _teacher_force(
    run_dir: RunDir,
    pair: Any,
    opts: RunOptions,
    task: str,
    samples: Sequence[Any],
    progress: Progress,
) -> None:
    """Calibration records (both models), the arbitration check, and MC answer calibration.

    One teacher-forced pass per model and sample serves all three: the calibration
    records, the arbitration check (same reference) and the option letters (the
    prompt's next-token distribution is the pass's first row).
    """
    from pairscope.teacher import arbitration, forced_tokens, option_probs

    kinds = [
        *(("calibration", m) for m in ("base", "guide")),
        ("arbitration", ARBITRATED),
    ]
    answers = [("answer", m) for m in ("base", "guide")]

    def missing(s: Any) -> list[tuple[str, str]]:
        wanted = (kinds if s.reference else []) + (answers if s.options else [])
        return [(k, m) for k, m in wanted if not run_dir.has(k, task, s.id, m)]

    relevant = [s for s in samples if s.reference or s.options]
    if not relevant:
        return
    todo = [s for s in relevant if missing(s)]
    progress.start(task, "teacher forcing", len(relevant), len(relevant) - len(todo))
    if not todo:
        return
    models = (("base", pair.base), ("guide", pair.guide))
    encoded = {
        s.id: (
            pair.base.encode_completion_prompt(s.base_prompt),
            pair.guide.encode_chat_prompt(s.guide_user, s.guide_system, s.guide_prefix),
        )
        for s in todo
    }
    forcers = (
        pair.base.forcer([e[0] for e in encoded.values()]),
        pair.guide.forcer([e[1] for e in encoded.values()]),
    )
    for s in todo:
        need = set(missing(s))
        if s.reference:
            bprompt, gprompt = (
                _fit(lm, e, s.reference) for (_, lm), e in zip(models, encoded[s.id])
            )
            for (role, lm), prompt, forcer in zip(models, (bprompt, gprompt), forcers):
                if ("calibration", role) in need:
                    forced = forced_tokens(lm, prompt, s.reference, forcer)
                    run_dir.append(
                        CalibrationRecord(
                            task=task, sample_id=s.id, method=role, **forced.to_dict()
                        )
                    )
            if ("arbitration", ARBITRATED) in need:
                arb = arbitration(
                    pair, bprompt, gprompt, s.reference, opts.tau, opts.lam, opts.k, forcers
                )
                run_dir.append(
                    ArbitrationRecord(task=task, sample_id=s.id, method=ARBITRATED, **arb.to_dict())
                )
        for (role, lm), enc, forcer in zip(models, encoded[s.id], forcers):
            if ("answer", role) in need:
                probs = option_probs(lm, _fit(lm, enc), s.options, forcer)
                run_dir.append(
                    AnswerRecord(
                        task=task,
                        sample_id=s.id,
                        method=role,
                        letters=list(s.options),
                        probs=probs,
                        answer=s.answer_letter,
                    )
                )
        progress.advance(task, "teacher forcing", 0, None)


def _fit(lm: Any, prompt: list[int], reference: str = "") -> list[int]:
    """Cut a teacher-forcing prompt from the left, as decoding does, to fit the reference."""
    from pairscope.decoding.contexts import fit_prompt

    reserve = len(lm.tokenizer.encode(reference, add_special_tokens=False)) if reference else 1
    return fit_prompt(lm, prompt, max(reserve, 1))


def _render(path: Path) -> None:
    from pairscope.report.html import render_report
    from pairscope.report.plots import save_figures

    save_figures(path)
    render_report(path, max_samples=100)
