"""The core of `pairscope probe` and `pairscope evaluate`: samples -> decoding -> records.

Data flows one way: the run's spec -> probes (samples, manifests) -> engine + strategy
(results) -> records.jsonl (one line per finished sample) -> summary.json (from
the records only) -> figures and report.html (from the files only).

A run is a pipeline of named steps over typed objects: :func:`prepare` (the
:class:`~pairscope.pipeline.preflight.Plan`: spec, directory, tasks), :func:`open_run` (models
loaded, the run directory created or resumed: an :class:`OpenRun`),
:func:`start_session` and :func:`record_config`, then per task :func:`decode_task`
(each method's :class:`TaskRun` through :func:`generate`) and :func:`teacher_force`,
and at the end :func:`finish` (summary, figures, report). What differs between probe
and evaluate is data in the spec (whether a task stops early, whether it calibrates).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import pairscope.methods as registry
from pairscope.errors import RuntimeFault
from pairscope.pipeline.config import check, decode_settings, strategy
from pairscope.pipeline.preflight import (
    Plan,
    TaskData,
    check_same_data,
    check_same_models,
    data_info,
    load_models,
    prepare,
)
from pairscope.pipeline.runs import MANIFEST, RunDir, versions
from pairscope.pipeline.spec import RunSpec
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


class Quiet:
    """A progress that shows nothing (the API's default, and rank's cells)."""

    def phase(self, text: str) -> None:
        pass

    def start(self, task: str, method: str, total: int, done: int) -> None:
        pass

    def advance(
        self, task: str, method: str, tokens: int, ir_counts: tuple[int, int] | None
    ) -> None:
        pass


@dataclass(frozen=True)
class OpenRun:
    """A run being written: its spec (resolved), directory, loaded models and progress."""

    spec: RunSpec
    run_dir: RunDir
    pair: Any
    progress: Progress

    def task(self, name: str, data: TaskData, method: str) -> TaskRun:
        return TaskRun(self, name, data, method)


@dataclass(frozen=True)
class TaskRun:
    """One task decoded with one method in an open run."""

    run: OpenRun
    name: str
    data: TaskData
    method: str

    @property
    def max_new(self) -> int:
        return int(self.run.spec.max_new[self.name])

    def done(self, sample: Any) -> bool:
        return self.run.run_dir.has("generation", self.name, sample.id, self.method)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run. Carries the run directory so the CLI can say how to resume."""

    def __init__(self, run_dir: Path, command: str) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir
        self.command = command


def run(spec: RunSpec, progress: Progress | None = None) -> tuple[Summary, Path]:
    """Run a probe or an evaluation; return its summary and run directory.

    Everything that can be checked cheaply (settings, output directory, data, a
    resume's settings) is checked before the models load, and the run directory is
    created only once the models have loaded, so bad input leaves nothing behind.

    Raises:
        InputError: bad settings, data, models or run directory (exit 2).
        RuntimeFault: a failure while decoding; finished samples stay on disk (exit 3).
        RunInterrupted: Ctrl-C; finished samples stay on disk (exit 130).
    """
    progress = progress or Quiet()
    check(spec)
    started = time.perf_counter()
    progress.phase("Loading probes and data")
    plan = prepare(spec)
    opened, load_seconds = open_run(plan, progress)
    run_dir = opened.run_dir
    try:
        if not (run_dir.path / MANIFEST).is_file():
            run_dir.write_manifest({n: _manifest_dict(t.manifest) for n, t in plan.tasks.items()})
        start_session(run_dir, load_seconds)
        record_config(opened, plan.tasks)
        for name, data in plan.tasks.items():
            used = decode_task(opened, name, data)
            if opened.spec.calibration:
                teacher_force(opened, name, used)
        summary = finish(opened, started)
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir.path, spec.command) from None
    except RuntimeFault as exc:
        keep = (
            f"Finished samples are kept in {run_dir.path}; continue with "
            f"`pairscope {spec.command} --resume {run_dir.path}`."
        )
        exc.hint = f"{exc.hint} {keep}" if exc.hint else keep
        raise
    finally:
        opened.pair.close()
        run_dir.close()
    return summary, run_dir.path


def open_run(plan: Plan, progress: Progress) -> tuple[OpenRun, float]:
    """Load the models and create the run directory (or reopen it, on resume, once its
    settings, data and models are checked to be the run's); with the seconds the models
    took to load. Nothing is left open if a check fails."""
    spec = plan.spec
    resumed = RunDir.resume(plan.out, spec) if spec.resume else None
    try:
        if resumed is not None and plan.old is not None:
            check_same_data(plan.out, plan.old, plan.tasks)
        progress.phase(f"Loading models: base {spec.base}, guide {spec.guide}")
        pair, load_seconds = load_models(spec)
    except BaseException:
        if resumed is not None:
            resumed.close()
        raise
    try:
        if resumed is not None and plan.old is not None:
            check_same_models(plan.out, plan.old, pair)
        run_dir = resumed or RunDir.create(plan.out, spec, force=spec.force)
    except BaseException:
        pair.close()
        if resumed is not None:
            resumed.close()
        raise
    return OpenRun(spec, run_dir, pair, progress), load_seconds


def finish(opened: OpenRun, started: float) -> Summary:
    """Write summary.json (from the records only, with the run's total time) and, unless
    the spec says not to, the figures and report.html."""
    from pairscope.summary import summarize

    opened.progress.phase("Summarising")
    summary = summarize(opened.run_dir.path)
    total = round(time.perf_counter() - started, 3)
    timing = summary.timing.model_copy(update={"total_seconds": total})
    summary = summary.model_copy(update={"timing": timing})
    opened.run_dir.write_summary(summary)
    if opened.spec.report:
        opened.progress.phase("Rendering figures and report.html")
        _render(opened.run_dir.path)
    return summary


def decode_task(opened: OpenRun, name: str, data: TaskData) -> list[Any]:
    """Decode one task with every method of the spec, not yet in records.jsonl; return the
    samples used (all of them, or the prefix decoded before the gate decided)."""
    runs = [opened.task(name, data, method) for method in opened.spec.methods]
    for task_run in runs:
        done = sum(task_run.done(s) for s in data.samples)
        opened.progress.start(name, task_run.method, len(data.samples), done)
    if opened.spec.sequential:
        return _generate_sequential(runs)
    for task_run in runs:
        generate(task_run, data.samples)
    return list(data.samples)


def teacher_force(opened: OpenRun, name: str, samples: Sequence[Any]) -> None:
    """Calibration records, the arbitration check and MC answers of one task's samples."""
    try:
        _teacher_force(opened, name, samples)
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


def record_config(opened: OpenRun, tasks: dict[str, TaskData]) -> None:
    """Complete config.json with what is known once models and data are loaded."""
    run_dir, pair = opened.run_dir, opened.pair
    config = run_dir.config()
    static = config.static_overlap or _static_overlap(pair)
    sizes = {
        name: {"n": len(t.samples), "dataset_size": t.dataset_size} for name, t in tasks.items()
    }
    run_dir.write_config(
        RunConfig.model_validate(
            {
                **dump(config),
                "settings": opened.spec,
                "pair": {"base": pair.base.identity(), "guide": pair.guide.identity()},
                "versions": versions(),
                "data": data_info(tasks),
                "tasks": sizes,
                "static_overlap": dump(static),
            }
        )
    )


def _static_overlap(pair: Any) -> StaticOverlap:
    from pairscope.metrics.overlap import static_vocab_overlap

    return StaticOverlap.model_validate(
        static_vocab_overlap(
            pair.base.tokenizer.convert_ids_to_tokens(list(range(len(pair.base.tokenizer)))),
            pair.guide.tokenizer.convert_ids_to_tokens(list(range(len(pair.guide.tokenizer)))),
        )
    )


def generate(task_run: TaskRun, samples: Sequence[Any]) -> None:
    """Decode every not-yet-recorded one of ``samples`` with the task run's method,
    appending records as they finish.

    A batch that runs out of memory is retried at half the batch size (records already
    written stay); at batch size 1 the run stops with a RuntimeFault, resumable.
    """
    task, method = task_run.name, task_run.method
    todo = [s for s in samples if not task_run.done(s)]
    batch_size = task_run.run.spec.batch_size
    while todo:
        try:
            _decode(task_run, todo, batch_size)
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
        todo = [s for s in todo if not task_run.done(s)]
        warnings.warn(
            f"Out of memory decoding {task} with {method} at batch size {old}; retrying the "
            f"{len(todo)} unfinished samples at batch size {batch_size}.",
            stacklevel=2,
        )


def _generate_sequential(runs: list[TaskRun]) -> list[Any]:
    """Decode a task's samples in their fixed order, one batch at a time, until the verdict
    is in (``runs``: the task with each method of the spec).

    After each batch the gate method's samples are fed, in order, to the anytime-valid
    test (:func:`pairscope.summary.sequential_test`, the same replay the summary
    does); decoding stops once it has declared PASS or FAIL, or once a decision
    within the budget has become unlikely (:meth:`SequentialTest.futile`: WARN), and
    at least ``--min-calibration-samples`` samples are decoded (with calibration on,
    for a task whose samples calibration can read: a reference answer or options). The
    samples decoded after the deciding one still count: they are the next in the
    fixed order, and the verdict, once declared, never changes. Returns the samples
    used, a prefix of the task's samples.
    """
    first = runs[0]
    spec, samples = first.run.spec, first.data.samples
    # Calibration reads only samples with a reference answer or options (not XSTest's).
    calibrated = spec.calibration and any(s.reference or s.options for s in samples)
    need = min(spec.min_calibration_samples, len(samples)) if calibrated else 0
    used = 0
    while used < len(samples):
        stop = _gate_stop(runs, used) if used >= need else None
        if stop is not None:
            used = stop
            break
        chunk = samples[used : max(used + spec.batch_size, need)]
        for task_run in runs:
            generate(task_run, chunk)
        used += len(chunk)
    for task_run in runs:
        generate(task_run, samples[:used])
    return list(samples[:used])


def _gate_stop(runs: list[TaskRun], used: int) -> int | None:
    """How many samples the task uses if it stops now (None: go on): ``used`` once the
    anytime-valid test on the gate method's first ``used`` samples has decided, or a
    decision within the budget has become unlikely (reported as a phase); all of them
    when there is no valid test at the task's threshold (the budget is spent)."""
    from pairscope.summary import gate_method, sequential_test, stop_phrase

    first = runs[0]
    spec, samples, name = first.run.spec, first.data.samples, first.name
    gate = replace(first, method=gate_method(list(spec.methods)))
    counts = _ir_counts(gate, samples[:used])
    threshold = float(spec.thresholds[name])
    test = sequential_test(counts, threshold, gate.max_new, strategy(spec, gate.method).ir_kind)
    if test is None:
        return len(samples)
    futile, chance = test.futile(len(samples) - used)
    if test.verdict is not None or futile:
        first.run.progress.phase(
            f"{name}: {stop_phrase(test, chance)}; {used} of {len(samples)} decoded"
        )
        return used
    return None


def _ir_counts(task_run: TaskRun, samples: Sequence[Any]) -> list[tuple[int, int]]:
    """The IR numerator and denominator of each of ``samples``, in their order."""
    wanted = {s.id for s in samples}
    found = {
        r.sample_id: (r.ir_numerator, r.ir_denominator)
        for r in task_run.run.run_dir.records()
        if isinstance(r, GenerationRecord)
        and r.task == task_run.name
        and r.method == task_run.method
        and r.sample_id in wanted
        and r.ir_numerator is not None
        and r.ir_denominator is not None
    }
    return [found[s.id] for s in samples if s.id in found]


def _decode(task_run: TaskRun, todo: Sequence[Any], batch_size: int) -> None:
    """Decode ``todo`` in batches of ``batch_size``, appending each record as it finishes."""
    from pairscope.decoding.engine import Engine, Request

    opened, probe = task_run.run, task_run.data.probe
    engine = Engine(opened.pair, decode_settings(opened.spec, task_run.method, batch_size))
    requests = [
        Request(
            s.base_prompt,
            s.guide_user,
            tuple(probe.stop),
            task_run.max_new,
            guide_system=s.guide_system,
            guide_prefix=s.guide_prefix,
        )
        for s in todo
    ]
    engine.run(requests, _Recorder(task_run, todo))


class _Recorder:
    """Scores each finished result and appends its record (and shows the progress)."""

    def __init__(self, task_run: TaskRun, todo: Sequence[Any]) -> None:
        self.task_run, self.todo = task_run, todo
        self.last = time.perf_counter()

    def __call__(self, index: int, result: Any) -> None:
        from pairscope.scoring import score

        task_run = self.task_run
        now = time.perf_counter()
        sample = self.todo[index]
        scored = score(task_run.data.probe.scorer, sample, result.text)
        task_run.run.run_dir.append(
            GenerationRecord(
                task=task_run.name,
                sample_id=sample.id,
                prompt=sample.guide_user,
                target=sample.target,
                correct=scored.correct,
                label=scored.label,
                extracted=scored.extracted,
                seconds=round(now - self.last, 4),
                **result.to_dict(),
            )
        )
        self.last = now
        task_run.run.progress.advance(
            task_run.name, task_run.method, result.positions, result.ir_counts
        )


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


def _teacher_force(opened: OpenRun, task: str, samples: Sequence[Any]) -> None:
    """Calibration records (both models), the arbitration check, and MC answer calibration.

    One teacher-forced pass per model and sample serves all three: the calibration
    records, the arbitration check (same reference) and the option letters (the
    prompt's next-token distribution is the pass's first row).
    """
    forcing = _Forcing(opened, task)
    relevant = [s for s in samples if s.reference or s.options]
    if not relevant:
        return
    todo = [s for s in relevant if forcing.missing(s)]
    opened.progress.start(task, "teacher forcing", len(relevant), len(relevant) - len(todo))
    if not todo:
        return
    forcing.encode(todo)
    for s in todo:
        need = set(forcing.missing(s))
        if s.reference:
            forcing.reference(s, need)
        forcing.answers(s, need)
        opened.progress.advance(task, "teacher forcing", 0, None)


class _Forcing:
    """One task's teacher forcing: what each sample still needs, and the passes that
    write it (a forcer per model shares the task's prompt prefix)."""

    def __init__(self, opened: OpenRun, task: str) -> None:
        self.opened, self.task, self.run_dir = opened, task, opened.run_dir
        pair = opened.pair
        self.models = (("base", pair.base), ("guide", pair.guide))
        self.kinds = [
            *(("calibration", m) for m in ("base", "guide")),
            ("arbitration", ARBITRATED),
        ]
        self.answer_kinds = [("answer", m) for m in ("base", "guide")]
        self.encoded: dict[str, tuple[list[int], list[int]]] = {}
        self.forcers: tuple[Any, Any] = (None, None)

    def missing(self, s: Any) -> list[tuple[str, str]]:
        wanted = (self.kinds if s.reference else []) + (self.answer_kinds if s.options else [])
        return [(k, m) for k, m in wanted if not self.run_dir.has(k, self.task, s.id, m)]

    def encode(self, todo: Sequence[Any]) -> None:
        """Each sample's prompt for each model, and the forcers over all of them."""
        pair = self.opened.pair
        self.encoded = {
            s.id: (
                pair.base.encode_completion_prompt(s.base_prompt),
                pair.guide.encode_chat_prompt(s.guide_user, s.guide_system, s.guide_prefix),
            )
            for s in todo
        }
        self.forcers = (
            pair.base.forcer([e[0] for e in self.encoded.values()]),
            pair.guide.forcer([e[1] for e in self.encoded.values()]),
        )

    def reference(self, s: Any, need: set[tuple[str, str]]) -> None:
        """Calibration records of both models and the arbitration check on the reference."""
        from pairscope.pipeline.teacher import arbitration, forced_tokens

        task, run_dir, spec, forcers = self.task, self.run_dir, self.opened.spec, self.forcers
        bprompt, gprompt = (
            _fit(lm, e, s.reference) for (_, lm), e in zip(self.models, self.encoded[s.id])
        )
        for (role, lm), prompt, forcer in zip(self.models, (bprompt, gprompt), forcers):
            if ("calibration", role) in need:
                forced = forced_tokens(lm, prompt, s.reference, forcer)
                run_dir.append(
                    CalibrationRecord(task=task, sample_id=s.id, method=role, **forced.to_dict())
                )
        if ("arbitration", ARBITRATED) in need:
            arb = arbitration(
                self.opened.pair, (bprompt, gprompt), s.reference, spec.tau,
                lam=spec.lam, top_k=spec.k, forcers=forcers,
            )  # fmt: skip
            run_dir.append(
                ArbitrationRecord(task=task, sample_id=s.id, method=ARBITRATED, **arb.to_dict())
            )

    def answers(self, s: Any, need: set[tuple[str, str]]) -> None:
        """Each model's distribution over a multiple-choice sample's option letters."""
        from pairscope.pipeline.teacher import option_probs

        for (role, lm), enc, forcer in zip(self.models, self.encoded[s.id], self.forcers):
            if ("answer", role) in need:
                probs = option_probs(lm, _fit(lm, enc), s.options, forcer)
                self.run_dir.append(
                    AnswerRecord(
                        task=self.task,
                        sample_id=s.id,
                        method=role,
                        letters=list(s.options),
                        probs=probs,
                        answer=s.answer_letter,
                    )
                )


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
