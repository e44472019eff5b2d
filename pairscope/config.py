"""Run configuration in one place: every setting of a probe or evaluate run, its
default and its validation, built from the command line in one call
(:meth:`RunOptions.from_cli`) or by the API, and what a run records and resumes.

Defaults of the methods' hyperparameters come from ``defaults.py``. A probe file's
own ``seed`` and ``n`` apply unless ``--seed`` / ``--n`` are given (``seed`` and ``n``
are None by default here, and ``probes.choose`` then takes the file's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import pairscope.methods as registry
from pairscope.defaults import BATCH_SIZE, DEFAULT_PROTOCOL, DEFAULT_TASKS, LAMBDA, TAU, TOP_K
from pairscope.errors import InputError, unknown

PROBE_METHODS = registry.gated()
# Command-line parameters whose RunOptions field has another name.
CLI_FIELDS = {
    "method": "methods",
    "no_calibration": "calibration",
    "out_dir": "out",
    "fixed": "sequential",
}


def parse_csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def parse_n(text: str | None) -> int | Literal["all"] | None:
    if text is None or text == "":
        return None
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise InputError(
            f"-n/--limit must be a positive integer or 'all' (got '{text}')."
        ) from None


def parse_alpha(text: str | None) -> float | None:
    if text is None or text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--alpha must be 'auto' or a number in [0, 1] (got '{text}').") from None


def check_number(
    option: str, value: float, low: float, high: float = math.inf, *, what: str | None = None
) -> None:
    """Raise InputError unless ``value`` is a finite number in [low, high].

    Every numeric option goes through here, so NaN and infinities are refused the same
    way everywhere (``nan < 0`` is false: a range check alone lets NaN through).
    """
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{option} must be a finite number (got {value}).")
    if not low <= value <= high:
        wanted = what or (f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]")
        raise InputError(f"{option} must be {wanted} (got {value}).")


def check_decoding(
    tau: float, k: int, lam: float, alpha: float | None, max_new_tokens: int | None, batch_size: int
) -> None:
    """The numeric decoding options shared by probe, evaluate and generate."""
    check_number("--tau", tau, 0)
    check_number("--k", k, 1)
    check_number("--lambda", lam, 0)
    if alpha is not None:
        check_number("--alpha", alpha, 0, 1, what="'auto' or a number in [0, 1]")
    if max_new_tokens is not None:
        check_number("--max-new-tokens", max_new_tokens, 1)
    check_number("--batch-size", batch_size, 1)


# Options a resume would ignore (the run already has its directory and samples); given
# with --resume they are refused rather than silently dropped.
NOT_WITH_RESUME = {"force": "--force", "manifest": "--manifest"}


@dataclass(frozen=True)
class RunOptions:
    """Every setting of a probe or evaluate run (validated by :meth:`validate`)."""

    command: Literal["probe", "evaluate"] = "probe"
    base: str = "embedded:gemma-3-270m"
    guide: str = "embedded:smollm2-135m-instruct"
    base_revision: str | None = None  # a Hub branch, tag or commit
    guide_revision: str | None = None
    tasks: tuple[str, ...] = DEFAULT_TASKS
    methods: tuple[str, ...] = PROBE_METHODS[:1]
    n: int | Literal["all"] | None = None
    seed: int | None = None  # None: each probe's own seed
    tau: float = TAU
    k: int = TOP_K
    lam: float = LAMBDA
    alpha: float | None = None
    threshold: float | None = None
    strict: bool = False
    policy: str = "any-fail"
    data_dir: str | None = None
    out: str | None = None
    resume: str | None = None
    force: bool = False
    manifest: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = BATCH_SIZE
    tokenization: str = "canonical"
    protocol: str = DEFAULT_PROTOCOL  # for a method with protocols (methods.PROTOCOLS)
    trust_remote_code: bool = False
    max_new_tokens: int | None = None
    calibration: bool = True
    sequential: bool = True
    min_calibration_samples: int = 30
    report: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)
    # The fields set on the command line; on --resume the others come from the run.
    # None (the API default) means every field was set deliberately.
    given: frozenset[str] | None = None

    @classmethod
    def from_cli(
        cls, command: Literal["probe", "evaluate"], params: Mapping[str, Any], given: frozenset[str]
    ) -> RunOptions:
        """Options from a command's parsed parameters (``typer.Context.params``); names
        that are not run settings (output files) are left out. ``given``: the fields set
        on the command line (:data:`CLI_FIELDS` names them)."""
        values = dict(params)
        if command == "probe":
            method = str(values.pop("method"))
            registry.check_gated(method)
            values["methods"] = (method,)
            values["calibration"] = not values.pop("no_calibration", False)
        else:
            values["methods"] = parse_csv(values.pop("methods"))
            values["alpha"] = parse_alpha(values.pop("alpha", None))
            values["calibration"] = False
        values["sequential"] = not values.pop("fixed", False)
        values["out"] = values.pop("out_dir", None)
        values["tasks"] = parse_csv(values["tasks"])
        values["n"] = parse_n(values.get("n"))
        names = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in names}
        return cls(command=command, **kept, given=given)

    def strategy(self, method: str) -> Any:
        """The decoding strategy of ``method`` under these options (InputError if bad)."""
        knobs = registry.Knobs(self.tau, self.lam, self.k, self.alpha, self.protocol)
        return registry.build(method, knobs)

    def validate(self) -> None:
        """Raise InputError for any setting out of range or unknown name."""
        from pairscope.decoding.contexts import check_policy
        from pairscope.metrics.intervention import POLICIES, check_threshold
        from pairscope.probes import list_probes

        check_policy(self.tokenization)
        if self.resume is not None:
            for name, option in NOT_WITH_RESUME.items():
                if getattr(self, name):
                    raise InputError(
                        f"{option} cannot be used with --resume: a resumed run keeps its own "
                        "directory and samples.",
                        hint=f"Drop {option}, or start a new run with --out instead of --resume.",
                    )
            if self.out is not None and Path(self.out) != Path(self.resume):
                raise InputError(
                    f"--out {self.out} and --resume {self.resume} name two directories; a "
                    "resumed run writes into its own.",
                    hint="Drop --out, or start a new run with --out instead of --resume.",
                )
        check_decoding(self.tau, self.k, self.lam, self.alpha, self.max_new_tokens, self.batch_size)
        if isinstance(self.n, int) and self.n < 1:
            raise InputError(f"-n/--limit must be >= 1 or 'all' (got {self.n}).")
        check_number("--min-calibration-samples", self.min_calibration_samples, 0)
        if self.seed is not None:
            check_number("--seed", self.seed, 0)
        if self.threshold is not None:
            check_threshold(self.threshold)
        for value in self.thresholds.values():
            check_threshold(value)
        if self.policy not in POLICIES:
            raise unknown("gate policy", self.policy, POLICIES)
        if not self.tasks:
            raise InputError("No task given.", hint=f"Use --tasks {','.join(DEFAULT_TASKS)}.")
        known = list_probes()
        for task in self.tasks:
            if task not in known and not task.endswith((".yaml", ".yml")):
                raise unknown("task", task, known)
        if not self.methods:
            raise InputError(
                "No method given.", hint=f"Use --method {','.join(registry.defaults())}."
            )
        for method in self.methods:
            self.strategy(method)
        if len(set(self.methods)) != len(self.methods):
            raise InputError(f"A method is listed twice in {','.join(self.methods)}.")


def settings_of(
    opts: RunOptions, thresholds: dict[str, float], max_new: dict[str, int]
) -> dict[str, Any]:
    """The settings recorded in config.json (and compared on resume)."""
    return {
        "command": opts.command,
        "base": opts.base,
        "guide": opts.guide,
        "base_revision": opts.base_revision,
        "guide_revision": opts.guide_revision,
        "tasks": list(opts.tasks),
        "task_args": list(opts.tasks),
        "data_dir": opts.data_dir,
        "methods": list(opts.methods),
        "n": opts.n,
        "seed": opts.seed,
        "tau": opts.tau,
        "k": opts.k,
        "lambda": opts.lam,
        "alpha": opts.alpha,
        "thresholds": thresholds,
        "max_new_tokens": max_new,
        "strict": opts.strict,
        "policy": opts.policy,
        "calibration": opts.calibration,
        # Only a probe stops early: an evaluation compares methods on all its samples.
        "sequential": opts.sequential and opts.command == "probe",
        "min_calibration_samples": opts.min_calibration_samples,
        "device": opts.device,
        "dtype": opts.dtype,
        "batch_size": opts.batch_size,
        "tokenization": opts.tokenization,
        "protocol": opts.protocol,
    }


# RunOptions field -> its key in config.json's settings, for --resume.
FROM_RUN = {
    "base": "base",
    "guide": "guide",
    "base_revision": "base_revision",
    "guide_revision": "guide_revision",
    "methods": "methods",
    "n": "n",
    "seed": "seed",
    "tau": "tau",
    "k": "k",
    "lam": "lambda",
    "alpha": "alpha",
    "strict": "strict",
    "policy": "policy",
    "calibration": "calibration",
    "sequential": "sequential",
    "min_calibration_samples": "min_calibration_samples",
    "device": "device",
    "dtype": "dtype",
    "batch_size": "batch_size",
    "tokenization": "tokenization",
    "protocol": "protocol",
    "data_dir": "data_dir",
}


def options_from_run(opts: RunOptions, old: dict[str, Any]) -> RunOptions:
    """On --resume, every setting not given on the command line is taken from the run.

    Settings that are given and differ from the run's are refused later, by
    :meth:`RunDir.resume`, with the differing names in the message.
    """
    if opts.given is None:
        return opts
    changes: dict[str, Any] = {
        name: (tuple(old[key]) if isinstance(old[key], list) else old[key])
        for name, key in FROM_RUN.items()
        if name not in opts.given and key in old
    }
    if "tasks" not in opts.given and ("task_args" in old or "tasks" in old):
        changes["tasks"] = tuple(old["task_args"] if "task_args" in old else old["tasks"])
    if "threshold" not in opts.given and isinstance(old.get("thresholds"), dict):
        changes["threshold"] = None
        changes["thresholds"] = {str(k): float(v) for k, v in old["thresholds"].items()}
    if "max_new_tokens" not in opts.given and isinstance(old.get("max_new_tokens"), dict):
        # One value for every task was a --max-new-tokens; several were the probes' own.
        values = set(old["max_new_tokens"].values())
        changes["max_new_tokens"] = int(values.pop()) if len(values) == 1 else None
    return replace(opts, **changes)
