"""The run specification: every setting of a probe or evaluate run, declared once.

:class:`RunSpec` is the one declaration. Each field carries an :class:`Opt` that says how
the setting travels: its command-line parameter, its key in ``config.json``'s
``settings`` (and whether it is recorded at all), whether a resume must match it,
whether a resume takes it from the run when it is not given again, and whether a
config file (``pairscope.toml``) or an environment variable may set it. The other shapes
are views of it: the command-line mapping (:data:`CLI_FIELDS`), what a resume takes from
the run (:data:`FROM_RUN`) and compares (:data:`RESUME_KEYS`), the config-file keys
(:data:`FILE_KEYS`), and the recorded form (:data:`Settings`, a run spec as written in
``config.json`` and ``summary.json``).

This module declares; :mod:`pairscope.pipeline.config` builds a spec (command line, config file,
environment, a run to resume) and validates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PrivateAttr,
    model_serializer,
    model_validator,
)

import pairscope.methods as registry
from pairscope.defaults import BATCH_SIZE, DEFAULT_PROTOCOL, DEFAULT_TASKS, LAMBDA, TAU, TOP_K

_REQUIRED = object()


@dataclass(frozen=True)
class Opt:
    """How one setting travels (see the module docstring).

    ``key``: its key in config.json's settings ("" = the field's name, None = not recorded).
    ``param``: the command-line parameter that sets it, where its name differs.
    ``compared``: a resume that gives it another value is refused.
    ``from_run``: a resume takes it from the run unless it is given again.
    ``old``: the value a config.json written before the key existed stands for.
    ``flag``: its config-file key (the long flag without dashes); None: not in a file.
    ``env``: an environment variable that sets it (it outranks the config file).
    """

    key: str | None = ""
    param: str | None = None
    compared: bool = True
    from_run: bool = True
    old: Any = _REQUIRED
    flag: str | None = None
    env: str | None = None


@dataclass(frozen=True)
class Profile:
    """What differs between the commands, as data: whether a task may stop as soon as
    the anytime-valid test decides, and whether both models are teacher-forced for
    calibration."""

    stops_early: bool
    calibrates: bool


COMMANDS = {"probe": Profile(stops_early=True, calibrates=True), "evaluate": Profile(False, False)}


class RunSpec(BaseModel):
    """Every setting of a probe or evaluate run (validated by :func:`config.check`).

    The per-task values (``task_names``, ``thresholds``, ``max_new``) are filled in once
    the probes are read (:func:`pairscope.pipeline.preflight.prepare`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Recorded and compared on resume (in the order a refused resume names them).
    command: Annotated[Literal["probe", "evaluate"], Opt(from_run=False)] = "probe"
    # The probes' names the tasks resolved to, and the tasks as given (names or files).
    task_names: Annotated[tuple[str, ...], Opt(key="tasks", from_run=False)] = ()
    tasks: Annotated[tuple[str, ...], Opt(key="task_args", flag="tasks")] = DEFAULT_TASKS
    methods: Annotated[tuple[str, ...], Opt(param="method")] = registry.gated()[:1]
    tau: Annotated[float, Opt(flag="tau")] = TAU
    k: Annotated[int, Opt(flag="k")] = TOP_K
    lam: Annotated[float, Opt(key="lambda", flag="lambda")] = LAMBDA
    alpha: Annotated[float | None, Opt(flag="alpha")] = None
    n: Annotated[int | Literal["all"] | None, Opt(flag="limit")] = None
    seed: Annotated[int | None, Opt(flag="seed")] = None  # None: each probe's own seed
    base: Annotated[str, Opt(flag="base")] = "embedded:gemma-3-270m"
    guide: Annotated[str, Opt(flag="guide")] = "embedded:smollm2-135m-instruct"
    # The Hub revisions asked for (the commit loaded is the model's ``revision``).
    base_revision: Annotated[str | None, Opt(old=None, flag="base-revision")] = None
    guide_revision: Annotated[str | None, Opt(old=None, flag="guide-revision")] = None
    # Each task's cap on new tokens (--max-new-tokens or the probe's own) and threshold
    # (given by the API or a run; else --threshold or the probe's own).
    max_new: Annotated[dict[str, int], Opt(key="max_new_tokens", from_run=False)] = {}
    thresholds: Annotated[dict[str, float], Opt(from_run=False)] = {}
    tokenization: Annotated[str, Opt(flag="tokenization")] = "canonical"
    sequential: Annotated[bool, Opt(param="fixed")] = True
    calibration: Annotated[bool, Opt(param="no_calibration")] = True
    min_calibration_samples: Annotated[int, Opt(flag="min-calibration-samples")] = 30
    strict: Annotated[bool, Opt(flag="strict")] = False
    policy: Annotated[str, Opt()] = "any-fail"
    data_dir: Annotated[str | None, Opt(flag="data-dir", env="PAIRSCOPE_DATA_DIR")] = None
    # Recorded, free to change on resume.
    device: Annotated[str, Opt(compared=False, flag="device")] = "auto"
    dtype: Annotated[str, Opt(compared=False, flag="dtype")] = "auto"
    batch_size: Annotated[int, Opt(compared=False, flag="batch-size")] = BATCH_SIZE
    # NUDGING's protocol (decoding/strategies.PROTOCOLS); runs made before it was
    # recorded used the position protocol.
    protocol: Annotated[str, Opt(compared=False, old="position", flag="protocol")] = (
        DEFAULT_PROTOCOL
    )
    # Not recorded: how this process runs, and the two per-run values the per-task
    # ones are resolved from.
    threshold: Annotated[float | None, Opt(key=None, from_run=False, flag="threshold")] = None
    max_new_tokens: Annotated[int | None, Opt(key=None, from_run=False, flag="max-new-tokens")] = (
        None
    )
    out: Annotated[str | None, Opt(key=None, param="out_dir", from_run=False)] = None
    resume: Annotated[str | None, Opt(key=None, from_run=False)] = None
    force: Annotated[bool, Opt(key=None, from_run=False)] = False
    manifest: Annotated[str | None, Opt(key=None, from_run=False)] = None
    trust_remote_code: Annotated[bool, Opt(key=None, from_run=False, flag="trust-remote-code")] = (
        False
    )
    report: Annotated[bool, Opt(key=None, from_run=False)] = True
    # The fields set on the command line; on --resume the others come from the run.
    # None (the API default) means every field was set deliberately.
    given: Annotated[frozenset[str] | None, Opt(key=None, from_run=False)] = None
    # The recorded keys an older config.json lacked (their fields hold Opt.old).
    _absent: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="before")
    @classmethod
    def _command(cls, data: Any) -> Any:
        """A command that cannot stop early or calibrate does neither, whatever is asked
        (an evaluation compares methods on all its samples)."""
        profile = COMMANDS.get(data.get("command", "probe")) if isinstance(data, dict) else None
        if profile is None:
            return data
        return {
            **data,
            "sequential": data.get("sequential", True) and profile.stops_early,
            "calibration": data.get("calibration", True) and profile.calibrates,
        }

    @property
    def profile(self) -> Profile:
        return COMMANDS[self.command]

    @model_serializer(mode="plain")
    def _record(self, info: Any) -> dict[str, Any]:
        """The recorded form (config.json's settings): recorded fields under their keys.
        With ``exclude_unset``, a key the record read lacked (older files) stays out."""
        out = {}
        for name, opt in OPTS.items():
            if opt.key is None:
                continue
            if info.exclude_unset and name in self._absent:
                continue
            value = getattr(self, name)
            out[opt.key or name] = list(value) if isinstance(value, tuple) else value
        return out

    def record(self) -> dict[str, Any]:
        """The settings as config.json records them (JSON-ready)."""
        return self.model_dump(mode="json")

    def differences(self, old: RunSpec) -> list[str]:
        """The recorded keys a resume compares whose values differ between ``old`` and self."""
        mine, was = self.record(), old.record()
        return [key for key in RESUME_KEYS if key in mine and was.get(key) != mine[key]]


def _opts() -> dict[str, Opt]:
    found = {}
    for name, info in RunSpec.model_fields.items():
        opts = [m for m in info.metadata if isinstance(m, Opt)]
        found[name] = opts[0] if opts else Opt()
    return found


OPTS: dict[str, Opt] = _opts()
# Command-line parameters whose RunSpec field has another name.
CLI_FIELDS = {o.param: name for name, o in OPTS.items() if o.param}
# RunSpec field -> its key in config.json's settings, for what a resume takes from the run.
FROM_RUN = {name: o.key or name for name, o in OPTS.items() if o.key is not None and o.from_run}
# Settings that must match for a resume to be valid: everything that changes results.
RESUME_KEYS = tuple(o.key or name for name, o in OPTS.items() if o.key is not None and o.compared)
# Config-file key -> RunSpec field.
FILE_KEYS = {o.flag: name for name, o in OPTS.items() if o.flag}
# RunSpec field -> the environment variable that sets it.
ENV = {name: o.env for name, o in OPTS.items() if o.env}


def from_record(value: Any) -> Any:
    """A RunSpec from config.json's settings (the recorded keys); anything else as given.

    Raises:
        ValueError: a key the record must hold is missing, or a key is unknown.
    """
    if not isinstance(value, dict):
        return value
    keys = {opt.key or name: name for name, opt in OPTS.items() if opt.key is not None}
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise ValueError(f"{unknown[0]}: Extra inputs are not permitted")
    fields: dict[str, Any] = {}
    absent = []
    for key, name in keys.items():
        if key in value:
            fields[name] = value[key]
        elif OPTS[name].old is _REQUIRED:
            raise ValueError(f"{key}: Field required")
        else:
            fields[name] = OPTS[name].old
            absent.append(name)
    spec = RunSpec.model_validate(fields)
    spec._absent = frozenset(absent)
    return spec


# A run spec as config.json and summary.json record it (read with :func:`from_record`).
Settings = Annotated[RunSpec, BeforeValidator(from_record)]
