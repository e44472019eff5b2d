"""What a probe or evaluate run checks before it writes anything: the manifests it is
given, and on ``--resume`` that the data and the models are those the run was made with.

Settings are compared by :meth:`pairscope.pipeline.runs.RunDir.resume`; the data's checksums
(after the probes load, before the models do) and the models' identities (once they
have loaded, before any record is written) are compared here. A difference is refused
with its name: a resumed run must be the run it continues.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pairscope.errors import DataError, RunDirError
from pairscope.pipeline.config import options_from_run
from pairscope.pipeline.runs import RunDir
from pairscope.pipeline.spec import RunSpec
from pairscope.schema import ModelIdentity, RunConfig, dump

# Identity fields that may differ on resume: where the model runs, in what precision,
# and where its converted files sit on this machine.
MAY_CHANGE = frozenset({"device", "dtype", "path"})


@dataclass(frozen=True)
class TaskData:
    """One task as a run reads it: its probe, its samples in decoding order, the
    manifest of that order, and the size of the dataset they were drawn from."""

    probe: Any
    samples: list[Any]
    manifest: Any
    dataset_size: int


@dataclass(frozen=True)
class Plan:
    """What a run knows before its models load: its spec (the per-task values resolved;
    on resume, completed from the run), its directory, the run's config (on resume) and
    its tasks."""

    spec: RunSpec
    out: Path
    old: RunConfig | None
    tasks: dict[str, TaskData]


def default_out(command: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("reports") / f"{command}-{stamp}"


def read_manifest_option(path: str | None) -> dict[str, Any]:
    """--manifest: a run's manifest.json (task -> manifest) or one task's manifest file.

    Raises:
        DataError: missing, unreadable or malformed (each task's entry is checked).
    """
    if path is None:
        return {}
    from pairscope.probes import load_manifest

    file = Path(path)
    if file.is_dir():
        file = file / "manifest.json"
    if not file.is_file():
        raise DataError(f"Manifest file not found: {file}")
    data = _read_json_object(file)
    if "ids" in data:
        m = load_manifest(file)
        return {m.task: {**asdict(m), "ids": list(m.ids)}}
    return run_manifests(file, data)


def read_run_manifest(file: Path) -> dict[str, Any]:
    """A run's own manifest.json (on resume), each task's entry checked."""
    return run_manifests(file, _read_json_object(file))


def run_manifests(file: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Check every task's entry of a run's manifest.json (task -> manifest)."""
    from pairscope.probes import manifest_from_dict

    for task, entry in data.items():
        manifest_from_dict(entry, f"{file} (task '{task}')")
    return data


def _read_json_object(file: Path) -> dict[str, Any]:
    from pairscope.pipeline.runs import read_json

    try:
        data = read_json(file)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise DataError(f"Manifest {file} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise DataError(f"Manifest {file} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"Manifest {file} must be a JSON object.")
    return data


def data_info(tasks: dict[str, TaskData]) -> dict[str, dict[str, Any]]:
    """config.json's ``data``: each task's file and checksum or Hub path, and the
    fingerprint of the samples it read (``tasks`` as the pipeline loads them)."""
    return {
        name: {
            "file": t.probe.source.local.file if t.probe.source.local else None,
            "sha256": t.probe.source.local.sha256 if t.probe.source.local else None,
            "hub": t.probe.source.hub.path if t.probe.source.hub else None,
            "probe_version": t.probe.version,
            "data_fingerprint": t.manifest.data_sha256,
            "scorer": t.probe.scorer,
        }
        for name, t in tasks.items()
    }


def check_same_data(run_dir: Path, old: RunConfig, tasks: dict[str, TaskData]) -> None:
    """On resume: refuse data that differs from what the run read (file, checksum, Hub
    path, probe version, the samples' fingerprint)."""
    new = data_info(tasks)
    differing = [
        f"{task} {key}: run has {was!r}, now {new[task].get(key)!r}"
        for task, info in old.data.items()
        if task in new
        for key, was in dump(info).items()
        if new[task].get(key) != was
    ]
    if differing:
        raise RunDirError(
            f"Cannot resume {run_dir} with different data ({'; '.join(differing)}).",
            hint="Resume with the data the run read (the same --data-dir and files), "
            "or start a new run with --out.",
        )


def check_same_models(run_dir: Path, old: RunConfig, pair: Any) -> None:
    """On resume: refuse models that are not the run's (name, files' hash, revision,
    architecture, vocabulary, chat template, server facts); only the device, dtype and
    local path may change."""
    if old.pair is None:  # killed before the models were recorded
        return
    differing = []
    for role, lm in (("base", pair.base), ("guide", pair.guide)):
        was = dump(getattr(old.pair, role))
        now = dump(ModelIdentity.model_validate(lm.identity()))
        for key in sorted((set(was) | set(now)) - MAY_CHANGE):
            if was.get(key) != now.get(key):
                differing.append(f"{role} {key}: run has {was.get(key)!r}, now {now.get(key)!r}")
    if differing:
        raise RunDirError(
            f"Cannot resume {run_dir} with different models ({'; '.join(differing)}).",
            hint="Resume with the models the run used, or start a new run with --out.",
        )


def load_tasks(spec: RunSpec, manifests_in: dict[str, Any]) -> dict[str, TaskData]:
    """Each task's probe, its samples in decoding order, their manifest and the dataset size."""
    from pairscope.probes import (
        build_samples,
        choose,
        load_dataset_records,
        load_probe,
        manifest_from_dict,
    )

    out = {}
    for task in spec.tasks:
        probe = load_probe(task)
        every = build_samples(probe, load_dataset_records(probe, spec.data_dir))
        manifest = None
        if probe.name in manifests_in:
            manifest = manifest_from_dict(manifests_in[probe.name], f"entry '{probe.name}'")
        chosen, made = choose(probe, every, spec.n, spec.seed, manifest)
        out[probe.name] = TaskData(probe, list(chosen), made, len(every))
    return out


def prepare(spec: RunSpec) -> Plan:
    """The run's plan: its directory checked, the manifests and probes read, and the
    spec completed (on resume, from the run) and resolved per task.

    Raises:
        InputError: a bad output directory, manifest, probe or data file.
    """
    from pairscope.pipeline.runs import MANIFEST, is_run_dir, read_config

    out = Path(spec.resume or spec.out or default_out(spec.command))
    old = None
    manifests_in: dict[str, Any] = {}
    if spec.resume:
        if not is_run_dir(out):
            raise RunDirError(
                f"--resume {out}: not a pairscope run directory (no pairscope config.json).",
                hint="Give the --out directory of an earlier probe or evaluate run.",
            )
        old = read_config(out)
        spec = options_from_run(spec, old.settings)
        # A run killed before its manifest was written re-selects by its seed.
        if (out / MANIFEST).is_file():
            manifests_in = read_run_manifest(out / MANIFEST)
    else:
        RunDir.check_new(out, force=spec.force)
        manifests_in = read_manifest_option(spec.manifest)
    tasks = load_tasks(spec, manifests_in)
    return Plan(resolve(spec, tasks), out, old, tasks)


def resolve(spec: RunSpec, tasks: dict[str, TaskData]) -> RunSpec:
    """``spec`` with each task's name, threshold and cap on new tokens: the spec's own
    where it gives one, else the probe's."""
    default = spec.threshold
    return spec.model_copy(
        update={
            "task_names": tuple(tasks),
            "thresholds": {
                name: float(
                    spec.thresholds.get(name, default if default is not None else t.probe.threshold)
                )
                for name, t in tasks.items()
            },
            "max_new": {
                name: int(spec.max_new_tokens or t.probe.max_new_tokens)
                for name, t in tasks.items()
            },
        }
    )


def load_models(spec: RunSpec) -> tuple[Any, float]:
    """The pair, and the seconds it took to load."""
    from pairscope.models import load_pair

    t0 = time.perf_counter()
    pair = load_pair(
        spec.base,
        spec.guide,
        device=spec.device,
        dtype=spec.dtype,
        trust_remote_code=spec.trust_remote_code,
        base_revision=spec.base_revision,
        guide_revision=spec.guide_revision,
    )
    return pair, time.perf_counter() - t0
