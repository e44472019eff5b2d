"""Samples and their seeded selection: rendering records, stratified subsets, manifests.

:func:`build_samples` turns a probe's records into :class:`Sample` objects,
with the task's derived values (:data:`pairscope.tasks.TASKS`) filled into the
templates. :func:`select` picks a seeded, stratified subset, :func:`interleave`
puts it in the order a run decodes it, and a :class:`Manifest` records the ids,
so different model pairs are compared on identical samples.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pairscope.errors import DataError, InputError
from pairscope.probes.data import load_dataset_records
from pairscope.probes.schema import ProbeSpec, render_template
from pairscope.tasks import TASKS
from pairscope.tasks.base import Sample, derived_seed

__all__ = [
    "MANIFEST_VERSION",
    "Manifest",
    "SampleSizeWarning",
    "build_samples",
    "choose",
    "dataset_fingerprint",
    "interleave",
    "load_manifest",
    "make_manifest",
    "manifest_json",
    "probe_info",
    "sample_id",
    "save_manifest",
    "select",
    "select_by_manifest",
]

MANIFEST_VERSION = 1


class SampleSizeWarning(UserWarning):
    """The requested sample size was larger than the dataset and was clamped."""


def sample_id(fields: Mapping[str, Any]) -> str:
    """Content hash of the canonical fields (sorted keys, compact, UTF-8)."""
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def build_samples(spec: ProbeSpec, records: Sequence[Mapping[str, Any]]) -> list[Sample]:
    """Render every record into a :class:`Sample`, in dataset order.

    Records with identical content have the same id; later copies are dropped with a
    warning, since they would be the same sample twice.
    """
    task = TASKS[spec.scorer]
    fewshot = ""
    if spec.prompts.fewshot_template is not None:
        fewshot = "".join(
            render_template(spec.prompts.fewshot_template, example)
            for example in spec.prompts.fewshot
        )
    samples: list[Sample] = []
    seen: set[str] = set()
    for record in records:
        fields = dict(record)
        sid = sample_id(fields)
        if sid in seen:
            warnings.warn(f"Probe '{spec.name}': duplicate record {sid} dropped.", stacklevel=2)
            continue
        seen.add(sid)
        derived = task.derive(spec, sid, fields)
        values = {**fields, **derived.values, "fewshot": fewshot}
        stratum = "|".join(str(fields[f]) for f in spec.stratify_fields) or "all"
        samples.append(
            Sample(
                id=sid,
                task=spec.name,
                stratum=stratum,
                fields=fields,
                base_prompt=render_template(spec.prompts.base, values),
                guide_user=render_template(spec.prompts.guide_user, values),
                reference=(
                    render_template(spec.reference, values) if spec.reference is not None else None
                ),
                target=render_template(spec.target, values),
                options=derived.options,
                option_texts=derived.option_texts,
                answer_letter=derived.answer_letter,
                guide_system=spec.prompts.guide_system,
                guide_prefix=spec.prompts.guide_prefix,
            )
        )
    if not samples:
        raise DataError(f"Probe '{spec.name}' has no samples.")
    return samples


def _allocate(n: int, sizes: Mapping[str, int]) -> dict[str, int]:
    """Proportional allocation with largest-remainder rounding (exact integer arithmetic).

    Ties in the remainder go to the larger stratum, then to the name in sorted order,
    so the allocation depends only on the stratum sizes, never on the seed.
    """
    total = sum(sizes.values())
    alloc = {s: n * size // total for s, size in sizes.items()}
    left = n - sum(alloc.values())
    order = sorted(sizes, key=lambda s: (-(n * sizes[s] % total), -sizes[s], s))
    for s in order[:left]:
        alloc[s] += 1
    return alloc


def select(
    samples: Sequence[Sample],
    n: int | Literal["all"],
    seed: int,
    stratify: bool = True,
) -> list[Sample]:
    """Pick a seeded, stratified subset; the result keeps dataset order.

    Each stratum gets its proportional share (largest-remainder rounding), and its
    members are drawn by an RNG seeded from ``seed`` and the stratum name over the
    members sorted by id, so the choice does not depend on input order. An ``n``
    larger than the dataset is clamped to the whole dataset with a
    :class:`SampleSizeWarning` rather than an error: asking for "at most n" is the
    common intent (e.g. a small user probe run with the default n=100).

    Raises:
        InputError: ``n`` is not a positive integer or "all".
    """
    if n == "all":
        return list(samples)
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise InputError(f"Sample size must be a positive integer or 'all', got {n!r}.")
    if n >= len(samples):
        if n > len(samples):
            warnings.warn(
                f"Requested n={n} but the dataset has {len(samples)} samples; using all.",
                SampleSizeWarning,
                stacklevel=2,
            )
        return list(samples)
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.stratum if stratify else "all", []).append(sample)
    alloc = _allocate(n, {s: len(g) for s, g in groups.items()})
    chosen: set[str] = set()
    for stratum in sorted(groups):
        members = sorted(groups[stratum], key=lambda s: s.id)
        rng = random.Random(derived_seed(seed, stratum))
        chosen.update(s.id for s in rng.sample(members, alloc[stratum]))
    return [s for s in samples if s.id in chosen]


def interleave(samples: Sequence[Sample], seed: int, stratify: bool = True) -> list[Sample]:
    """The seeded, stratum-interleaved order in which a run decodes ``samples``.

    Each stratum is shuffled by an RNG seeded from ``seed`` and its name, and its
    ``j``-th member is placed at ``(j + u) / size`` with one random offset ``u`` per
    stratum, so every prefix holds each stratum in close to its share: a sequential
    probe that stops after any number of samples has used a stratified sample. The
    order depends only on the set of ids and the seed, not on the input order.
    """
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.stratum if stratify else "all", []).append(sample)
    keyed: list[tuple[float, str, Sample]] = []
    for stratum, members in groups.items():
        members = sorted(members, key=lambda s: s.id)
        rng = random.Random(derived_seed(seed, "order", stratum))
        rng.shuffle(members)
        offset = rng.random()
        keyed += [((j + offset) / len(members), s.id, s) for j, s in enumerate(members)]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [s for _, _, s in keyed]


@dataclass(frozen=True)
class Manifest:
    """The identity of a selection, so other pairs can be run on the same samples.

    Attributes:
        task: Probe name.
        probe_version: The probe's ``version``.
        seed: Selection seed.
        n: Number of selected samples.
        ids: Selected sample ids, in the order a run decodes them (:func:`interleave`).
        data_sha256: Fingerprint of the whole dataset's content: the sha256 of its
            sorted sample ids, one per line. Sample ids hash the mapped source fields,
            so this is the same for the local copy and the Hub when they agree, and
            changes when the data does (a file checksum could not do both).
        format_version: Manifest file format version.
    """

    task: str
    probe_version: int
    seed: int
    n: int
    ids: tuple[str, ...]
    data_sha256: str
    format_version: int = MANIFEST_VERSION


def dataset_fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 of the sorted sample ids, one per line."""
    text = "\n".join(sorted(s.id for s in samples)) + "\n"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_manifest(
    spec: ProbeSpec, all_samples: Sequence[Sample], selected: Sequence[Sample], seed: int
) -> Manifest:
    """Describe ``selected`` (drawn from ``all_samples`` with ``seed``)."""
    return Manifest(
        task=spec.name,
        probe_version=spec.version,
        seed=seed,
        n=len(selected),
        ids=tuple(s.id for s in selected),
        data_sha256=dataset_fingerprint(all_samples),
    )


def manifest_json(manifest: Manifest) -> str:
    """Canonical JSON text: sorted keys, fixed separators, trailing newline."""
    data = asdict(manifest)
    data["ids"] = list(manifest.ids)
    return json.dumps(data, sort_keys=True, indent=2, separators=(",", ": ")) + "\n"


def save_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write the manifest; the bytes are identical for identical manifests."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(manifest_json(manifest).encode("utf-8"))
    return out


def load_manifest(path: str | Path) -> Manifest:
    """Read a manifest written by :func:`save_manifest`.

    Raises:
        DataError: missing, unreadable or malformed file.
    """
    src = Path(path)
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"Manifest file not found: {src}") from None
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise DataError(f"Manifest {src} is not readable JSON: {exc}") from None
    return manifest_from_dict(data, str(src))


def manifest_from_dict(data: Any, where: str) -> Manifest:
    """A manifest from its JSON object (a manifest file, or one task's entry in a run's
    manifest.json); ``where`` names it in errors.

    Raises:
        DataError: missing or extra keys, or a field of the wrong type.
    """
    keys = {"task", "probe_version", "seed", "n", "ids", "data_sha256", "format_version"}
    if not isinstance(data, dict) or set(data) != keys:
        raise DataError(f"Manifest {where} must have exactly the keys {sorted(keys)}.")
    ids = data["ids"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DataError(f"Manifest {where}: field 'ids' must be a list of strings.")
    if data["format_version"] != MANIFEST_VERSION:
        raise DataError(
            f"Manifest {where} has format_version {data['format_version']}; "
            f"this pairscope reads {MANIFEST_VERSION}."
        )
    if len(ids) != data["n"] or len(set(ids)) != len(ids):
        raise DataError(f"Manifest {where}: 'n' must equal the number of distinct ids.")
    try:
        return Manifest(
            task=str(data["task"]),
            probe_version=int(data["probe_version"]),
            seed=int(data["seed"]),
            n=int(data["n"]),
            ids=tuple(ids),
            data_sha256=str(data["data_sha256"]),
        )
    except (TypeError, ValueError):
        raise DataError(
            f"Manifest {where}: 'probe_version', 'seed' and 'n' must be integers."
        ) from None


def select_by_manifest(
    samples: Sequence[Sample], manifest: Manifest, spec: ProbeSpec | None = None
) -> list[Sample]:
    """Exactly the manifest's samples, in the manifest's order.

    A different probe version or dataset fingerprint only warns: the ids (content
    hashes) still identify the same items, though prompts may have changed.

    Raises:
        DataError: the manifest is for another task, or names ids the dataset lacks.
    """
    if spec is not None:
        if manifest.task != spec.name:
            raise DataError(f"Manifest is for task '{manifest.task}', not '{spec.name}'.")
        if manifest.probe_version != spec.version:
            warnings.warn(
                f"Manifest was made with {spec.name} probe version {manifest.probe_version}; "
                f"this is version {spec.version}.",
                stacklevel=2,
            )
    if samples and manifest.data_sha256 != dataset_fingerprint(samples):
        warnings.warn("The dataset differs from the one the manifest was made from.", stacklevel=2)
    by_id = {s.id: s for s in samples}
    missing = [i for i in manifest.ids if i not in by_id]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise DataError(
            f"Manifest names {len(missing)} sample id(s) not in task '{manifest.task}': {shown}."
        )
    return [by_id[i] for i in manifest.ids]


def choose(
    spec: ProbeSpec,
    samples: Sequence[Sample],
    n: int | Literal["all"] | None = None,
    seed: int | None = None,
    manifest: Manifest | str | Path | None = None,
) -> tuple[list[Sample], Manifest]:
    """A run's samples in its decoding order (:func:`interleave`), and their manifest.

    By manifest, or by ``n`` and ``seed``, which default to the probe's own values;
    a manifest overrides both (its seed orders the samples).
    """
    if manifest is not None:
        loaded = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        chosen, use_seed = select_by_manifest(samples, loaded, spec), loaded.seed
    else:
        use_seed = spec.seed if seed is None else seed
        chosen = select(
            samples, spec.n if n is None else n, use_seed, stratify=spec.stratify is not None
        )
    chosen = interleave(chosen, use_seed, stratify=spec.stratify is not None)
    return chosen, make_manifest(spec, samples, chosen, use_seed)


def probe_info(
    spec: ProbeSpec,
    data_dir: str | Path | None = None,
    n: int | Literal["all"] | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Everything ``pairscope probes show NAME`` displays, as plain data."""
    samples = build_samples(spec, load_dataset_records(spec, data_dir))
    chosen, manifest = choose(spec, samples, n, seed)
    use_seed = manifest.seed
    return {
        "name": spec.name,
        "path": str(spec.origin) if spec.origin else None,
        "definition": spec.model_dump(mode="json"),
        "dataset_size": len(samples),
        "strata": dict(sorted(Counter(s.stratum for s in samples).items())),
        "selected": {
            "n": len(chosen),
            "seed": use_seed,
            "strata": dict(sorted(Counter(s.stratum for s in chosen).items())),
            "ids": [s.id for s in chosen],
        },
        "data_sha256": dataset_fingerprint(samples),
    }
