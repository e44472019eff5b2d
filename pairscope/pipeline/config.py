"""Building and checking a run specification (:class:`pairscope.pipeline.spec.RunSpec`).

A spec is built once, from the command line (:func:`from_cli`), a config file
(``pairscope.toml``, or ``[tool.pairscope]`` in ``pyproject.toml``, in the working
directory) and the environment: a flag given on the command line wins, then an
environment variable, then the config file, then the default. It is checked once
(:func:`check`); on ``--resume`` the settings not given are the run's own
(:func:`options_from_run`). Defaults of the methods' hyperparameters come from
``defaults.py``. A probe file's own ``seed`` and ``n`` apply unless ``--seed`` / ``--n``
are given (``seed`` and ``n`` are None by default, and ``probes.choose`` then takes the
file's).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

import pairscope.methods as registry
from pairscope.defaults import DEFAULT_TASKS
from pairscope.errors import InputError, unknown
from pairscope.pipeline.spec import CLI_FIELDS, ENV, FILE_KEYS, FROM_RUN, RunSpec

__all__ = [
    "CLI_FIELDS",
    "PROBE_METHODS",
    "RunOptions",
    "RunSpec",
    "check",
    "check_decoding",
    "check_number",
    "decode_settings",
    "from_cli",
    "options_from_run",
    "parse_csv",
    "parse_n",
    "read_config_file",
    "strategy",
]

PROBE_METHODS = registry.gated()
RunOptions = RunSpec  # the name the API had before the spec was one model
CONFIG_FILE = "pairscope.toml"
PYPROJECT = "pyproject.toml"


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


# ---------------------------------------------------------------- building a spec


def from_cli(
    command: Literal["probe", "evaluate"],
    params: Mapping[str, Any],
    given: frozenset[str],
    cwd: Path | None = None,
) -> RunSpec:
    """The spec of a command's parsed parameters (``typer.Context.params``), the config
    file of ``cwd`` (the working directory) and the environment; names that are not run
    settings (output files) are left out. ``given``: the fields set on the command line
    (:data:`pairscope.pipeline.spec.CLI_FIELDS` names them). A resumed run reads no config file:
    the settings not given are the run's own."""
    values = dict(params)
    if "method" in values:  # a command that gates on one method
        method = str(values.pop("method"))
        registry.check_gated(method)
        values["methods"] = (method,)
    else:
        values["methods"] = parse_csv(values.pop("methods"))
    if "alpha" in values:
        values["alpha"] = parse_alpha(values.pop("alpha"))
    values["calibration"] = not values.pop("no_calibration", False)
    values["sequential"] = not values.pop("fixed", False)
    values["out"] = values.pop("out_dir", None)
    values["tasks"] = parse_csv(values["tasks"])
    values["n"] = parse_n(values.get("n"))
    kept = {k: v for k, v in values.items() if k in RunSpec.model_fields}
    if not values.get("resume"):
        kept.update(_from_file(read_config_file(cwd or Path.cwd()), given, set(kept)))
    return RunSpec(command=command, **kept, given=given)


def _from_file(
    file: tuple[Path, dict[str, Any]] | None, given: frozenset[str], known: set[str]
) -> dict[str, Any]:
    """The config file's values for the fields neither a flag nor the environment sets
    (only those the command takes)."""
    if file is None:
        return {}
    path, table = file
    out = {}
    for key, value in table.items():
        name = FILE_KEYS[key]
        env = ENV.get(name)
        if name in given or name not in known or (env and os.environ.get(env)):
            continue
        out[name] = _file_value(path, key, name, value)
    return out


def _file_value(path: Path, key: str, name: str, value: Any) -> Any:
    """A config-file value as the spec field holds it (lists or comma-separated text for
    tasks; 'all' or a number for limit)."""
    if name == "tasks" and isinstance(value, str):
        value = parse_csv(value)
    if name == "n" and isinstance(value, str):
        value = parse_n(value)
    try:
        kind: Any = RunSpec.model_fields[name].annotation
        return TypeAdapter(kind).validate_python(value, strict=not isinstance(value, list))
    except ValidationError as exc:
        why = exc.errors()[0]["msg"]
        raise InputError(f"{path}: {key} = {value!r} is not valid ({why}).") from None


def read_config_file(cwd: Path) -> tuple[Path, dict[str, Any]] | None:
    """``pairscope.toml`` in ``cwd``, else ``[tool.pairscope]`` of ``pyproject.toml`` there:
    (its path, its settings by config-file key); None when neither is there.

    Raises:
        InputError: unreadable TOML, or a key that is not a setting (named with its file).
    """
    for name, table in ((CONFIG_FILE, ()), (PYPROJECT, ("tool", "pairscope"))):
        path = cwd / name
        if not path.is_file():
            continue
        data: Any = _read_toml(path)
        for part in table:
            data = data.get(part)
            if not isinstance(data, dict):
                break
        if not isinstance(data, dict):
            continue
        where = f"{path} [{'.'.join(table)}]" if table else str(path)
        for key in data:
            if key not in FILE_KEYS:
                raise InputError(
                    f"{where}: unknown setting '{key}'.",
                    hint=f"Known settings: {', '.join(sorted(FILE_KEYS))}.",
                )
        return path, dict(data)
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not readable TOML: {exc}") from None


def options_from_run(spec: RunSpec, old: RunSpec) -> RunSpec:
    """On --resume, every setting not given on the command line is taken from the run.

    Settings that are given and differ from the run's are refused later, by
    :meth:`RunDir.resume`, with the differing names in the message.
    """
    if spec.given is None:
        return spec
    changes: dict[str, Any] = {
        name: getattr(old, name) for name in FROM_RUN if name not in spec.given
    }
    if "threshold" not in spec.given:
        changes["threshold"] = None
        changes["thresholds"] = dict(old.thresholds)
    if "max_new_tokens" not in spec.given and old.max_new:
        # One value for every task was a --max-new-tokens; several were the probes' own.
        values = set(old.max_new.values())
        changes["max_new_tokens"] = int(values.pop()) if len(values) == 1 else None
    return spec.model_copy(update=changes)


# ---------------------------------------------------------------- checking a spec


def strategy(spec: RunSpec, method: str) -> Any:
    """The decoding strategy of ``method`` under ``spec`` (InputError if bad); the engine
    builds the same from :func:`decode_settings`."""
    knobs = registry.Knobs(spec.tau, spec.lam, spec.k, spec.alpha, spec.protocol)
    return registry.build(method, knobs)


def decode_settings(spec: RunSpec, method: str, batch_size: int | None = None) -> Any:
    """The engine's settings for decoding ``method`` under ``spec``."""
    from pairscope.decoding.engine import DecodeSettings

    return DecodeSettings(
        method=method,
        tau=spec.tau,
        top_k=spec.k,
        lam=spec.lam,
        alpha=spec.alpha,
        batch_size=spec.batch_size if batch_size is None else batch_size,
        tokenization=spec.tokenization,
        protocol=spec.protocol,
    )


def check(spec: RunSpec) -> None:
    """Raise InputError for any setting out of range or unknown name."""
    from pairscope.decoding.contexts import check_policy

    check_policy(spec.tokenization)
    if spec.resume is not None:
        _check_resume(spec)
    check_decoding(spec.tau, spec.k, spec.lam, spec.alpha, spec.max_new_tokens, spec.batch_size)
    if isinstance(spec.n, int) and spec.n < 1:
        raise InputError(f"-n/--limit must be >= 1 or 'all' (got {spec.n}).")
    check_number("--min-calibration-samples", spec.min_calibration_samples, 0)
    if spec.seed is not None:
        check_number("--seed", spec.seed, 0)
    _check_gate(spec)
    _check_names(spec)


def _check_resume(spec: RunSpec) -> None:
    for name, option in NOT_WITH_RESUME.items():
        if getattr(spec, name):
            raise InputError(
                f"{option} cannot be used with --resume: a resumed run keeps its own "
                "directory and samples.",
                hint=f"Drop {option}, or start a new run with --out instead of --resume.",
            )
    if spec.out is not None and Path(spec.out) != Path(str(spec.resume)):
        raise InputError(
            f"--out {spec.out} and --resume {spec.resume} name two directories; a "
            "resumed run writes into its own.",
            hint="Drop --out, or start a new run with --out instead of --resume.",
        )


def _check_gate(spec: RunSpec) -> None:
    from pairscope.metrics.intervention import POLICIES, check_threshold

    if spec.threshold is not None:
        check_threshold(spec.threshold)
    for value in spec.thresholds.values():
        check_threshold(value)
    if spec.policy not in POLICIES:
        raise unknown("gate policy", spec.policy, POLICIES)


def _check_names(spec: RunSpec) -> None:
    from pairscope.probes import list_probes

    if not spec.tasks:
        raise InputError("No task given.", hint=f"Use --tasks {','.join(DEFAULT_TASKS)}.")
    known = list_probes()
    for task in spec.tasks:
        if task not in known and not task.endswith((".yaml", ".yml")):
            raise unknown("task", task, known)
    if not spec.methods:
        raise InputError("No method given.", hint=f"Use --method {','.join(registry.defaults())}.")
    for method in spec.methods:
        strategy(spec, method)
    if len(set(spec.methods)) != len(spec.methods):
        raise InputError(f"A method is listed twice in {','.join(spec.methods)}.")
