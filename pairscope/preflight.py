"""What a probe or evaluate run checks before it writes anything: the manifests it is
given, and on ``--resume`` that the data and the models are those the run was made with.

Settings are compared by :meth:`pairscope.runs.RunDir.resume`; the data's checksums
(after the probes load, before the models do) and the models' identities (once they
have loaded, before any record is written) are compared here. A difference is refused
with its name: a resumed run must be the run it continues.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pairscope.config import RunOptions, options_from_run, settings_of
from pairscope.errors import DataError, RunDirError
from pairscope.runs import RunDir
from pairscope.schema import ModelIdentity, RunConfig, dump

# Identity fields that may differ on resume: where the model runs, in what precision,
# and where its converted files sit on this machine.
MAY_CHANGE = frozenset({"device", "dtype", "path"})


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
    from pairscope.runs import read_json

    try:
        data = read_json(file)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise DataError(f"Manifest {file} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise DataError(f"Manifest {file} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"Manifest {file} must be a JSON object.")
    return data


def data_info(tasks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """config.json's ``data``: each task's file and checksum or Hub path, and the
    fingerprint of the samples it read (``tasks`` as the pipeline loads them)."""
    return {
        name: {
            "file": spec.source.local.file if spec.source.local else None,
            "sha256": spec.source.local.sha256 if spec.source.local else None,
            "hub": spec.source.hub.path if spec.source.hub else None,
            "probe_version": spec.version,
            "data_fingerprint": man.data_sha256,
            "scorer": spec.scorer,
        }
        for name, (spec, _, man, _) in tasks.items()
    }


def check_same_data(run_dir: Path, old: RunConfig, tasks: dict[str, Any]) -> None:
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


def load_tasks(opts: RunOptions, manifests_in: dict[str, Any]) -> dict[str, Any]:
    """(spec, samples in decoding order, manifest, dataset size) for each task."""
    from pairscope.probes import (
        build_samples,
        choose,
        load_dataset_records,
        load_probe,
        manifest_from_dict,
    )

    out = {}
    for task in opts.tasks:
        spec = load_probe(task)
        every = build_samples(spec, load_dataset_records(spec, opts.data_dir))
        manifest = None
        if spec.name in manifests_in:
            manifest = manifest_from_dict(manifests_in[spec.name], f"entry '{spec.name}'")
        chosen, made = choose(spec, every, opts.n, opts.seed, manifest)
        out[spec.name] = (spec, chosen, made, len(every))
    return out


def prepare(
    opts: RunOptions, out: Path
) -> tuple[RunOptions, RunConfig | None, dict[str, Any], dict[str, Any]]:
    """The options (on resume, completed from the run), the run's config (on resume), the
    tasks and the settings to record; checks the output directory and the manifests.

    Raises:
        InputError: a bad output directory, manifest, probe or data file.
    """
    from pairscope.runs import MANIFEST, is_run_dir, read_config

    old = None
    manifests_in: dict[str, Any] = {}
    if opts.resume:
        if not is_run_dir(out):
            raise RunDirError(
                f"--resume {out}: not a pairscope run directory (no pairscope config.json).",
                hint="Give the --out directory of an earlier probe or evaluate run.",
            )
        old = read_config(out)
        opts = options_from_run(opts, dump(old.settings))
        # A run killed before its manifest was written re-selects by its seed.
        if (out / MANIFEST).is_file():
            manifests_in = read_run_manifest(out / MANIFEST)
    else:
        RunDir.check_new(out, force=opts.force)
        manifests_in = read_manifest_option(opts.manifest)
    tasks = load_tasks(opts, manifests_in)
    thresholds = {
        name: float(
            opts.thresholds.get(
                name, opts.threshold if opts.threshold is not None else spec.threshold
            )
        )
        for name, (spec, *_) in tasks.items()
    }
    max_new = {
        name: int(opts.max_new_tokens or spec.max_new_tokens) for name, (spec, *_) in tasks.items()
    }
    settings = settings_of(opts, thresholds, max_new)
    settings["tasks"] = list(tasks)
    return opts, old, tasks, settings


def load_models(opts: RunOptions) -> tuple[Any, float]:
    from pairscope.models import load_pair

    t0 = time.perf_counter()
    pair = load_pair(
        opts.base,
        opts.guide,
        device=opts.device,
        dtype=opts.dtype,
        trust_remote_code=opts.trust_remote_code,
        base_revision=opts.base_revision,
        guide_revision=opts.guide_revision,
    )
    return pair, time.perf_counter() - t0
