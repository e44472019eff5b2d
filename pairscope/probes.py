"""Probes: strict YAML definitions, dataset loading, samples and seeded manifests.

A probe is data (``probes/*.yaml``): where its benchmark lives (Hub id or a
local file pinned by sha256), how dataset columns map to canonical field
names, the prompt templates, stop strings, scorer and gate threshold. This
module turns a probe and its dataset into :class:`Sample` objects, with the
derived values of the probe's task (:data:`pairscope.tasks.TASKS`), and picks a
seeded, stratified subset whose ids go into a :class:`Manifest`, so different
model pairs are compared on identical samples.

Templates substitute ``{name}`` placeholders with one regular-expression pass
(never ``str.format``, never ``eval``): a value that itself contains
``{question}`` stays literal, and a ``{`` that is not a placeholder is kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pairscope.errors import DataError, InputError, unknown
from pairscope.runs import sha256_file
from pairscope.tasks import TASKS
from pairscope.tasks.base import Sample, derived_seed

__all__ = [
    "DATA_DIR_ENV",
    "BUILTIN_PROBES_DIR",
    "Manifest",
    "ProbeSpec",
    "Sample",
    "SampleSizeWarning",
    "build_samples",
    "dataset_fingerprint",
    "list_probes",
    "load_dataset_records",
    "load_manifest",
    "load_probe",
    "make_manifest",
    "manifest_json",
    "choose",
    "prepare_samples",
    "probe_info",
    "render_template",
    "resolve_data_dir",
    "sample_id",
    "save_manifest",
    "select",
    "select_by_manifest",
]

DATA_DIR_ENV = "PAIRSCOPE_DATA_DIR"
# The YAML files live at the repo root (their canonical place); an editable
# install resolves them from the package's parent directory.
BUILTIN_PROBES_DIR = Path(__file__).resolve().parent.parent / "probes"
MANIFEST_VERSION = 1
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SampleSizeWarning(UserWarning):
    """The requested sample size was larger than the dataset and was clamped."""


# --------------------------------------------------------------------------- schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSource(_Strict):
    """Where the benchmark lives on the Hugging Face Hub."""

    path: str = Field(min_length=1)
    config: str | None = None
    split: str = Field(min_length=1)
    # Column names on the Hub when they differ from the local file's.
    fields: dict[str, str] | None = None


class LocalSource(_Strict):
    """A local copy of the benchmark, relative to the data directory (or the probe file)."""

    file: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    format: Literal["jsonl", "csv"]


class Source(_Strict):
    """At least one of a Hub id and a local file."""

    hub: HubSource | None = None
    local: LocalSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Source:
        if self.hub is None and self.local is None:
            raise ValueError("give at least one of 'hub' and 'local'")
        return self


class Prompts(_Strict):
    """Prompt templates; ``{fewshot}`` expands to the rendered few-shot examples."""

    base: str = Field(min_length=1)
    guide_user: str = Field(min_length=1)
    # The guide's system message (None: the chat template's own default) and the start
    # of its answer, written into the open assistant turn before the response.
    guide_system: str | None = None
    guide_prefix: str = ""
    fewshot_template: str | None = None
    fewshot: list[dict[str, str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fewshot_needs_template(self) -> Prompts:
        if self.fewshot and self.fewshot_template is None:
            raise ValueError("'fewshot' examples need a 'fewshot_template'")
        return self


class ProbeSpec(_Strict):
    """A validated probe definition (one YAML file).

    Fields are validated in the order declared here, so the cross-field checks below
    can see the fields declared before them (``info.data``) and report the field at
    fault by name.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(ge=1)
    description: str
    source: Source
    fields: dict[str, str] = Field(min_length=1)
    list_fields: dict[str, str] = Field(default_factory=dict)
    stratify: str | list[str] | None = None
    n: int = Field(default=100, gt=0)
    seed: int = 0
    scorer: str
    prompts: Prompts
    stop: list[str] = Field(default_factory=list)
    max_new_tokens: int = Field(gt=0)
    reference: str | None = None
    target: str = Field(min_length=1)
    threshold: float = Field(default=0.20, ge=0.0, le=1.0)

    _origin: Path | None = PrivateAttr(default=None)

    @property
    def origin(self) -> Path | None:
        """The YAML file this probe was read from, if any."""
        return self._origin

    @property
    def stratify_fields(self) -> tuple[str, ...]:
        """The stratification fields as a tuple (empty when not stratified)."""
        if self.stratify is None:
            return ()
        return (self.stratify,) if isinstance(self.stratify, str) else tuple(self.stratify)

    @field_validator("fields")
    @classmethod
    def _hub_columns_cover_fields(cls, value: dict[str, str], info: ValidationInfo) -> dict:
        source = info.data.get("source")
        if source is not None and source.hub is not None and source.hub.fields is not None:
            if set(source.hub.fields) != set(value):
                raise ValueError("source.hub.fields must map exactly the keys of 'fields'")
        return value

    @field_validator("list_fields")
    @classmethod
    def _list_fields_known(cls, value: dict[str, str], info: ValidationInfo) -> dict:
        _check_known("list_fields", value, info.data.get("fields"))
        return value

    @field_validator("stratify")
    @classmethod
    def _stratify_known(cls, value: str | list[str] | None, info: ValidationInfo) -> Any:
        names = [value] if isinstance(value, str) else value or []
        _check_known("stratify", names, info.data.get("fields"))
        return value

    @field_validator("scorer")
    @classmethod
    def _scorer_known(cls, value: str, info: ValidationInfo) -> str:
        task = TASKS.get(value)
        if task is None:
            raise ValueError(f"unknown scorer '{value}'; choose one of {sorted(TASKS)}")
        fields = info.data.get("fields")
        missing = [f for f in task.required if fields is not None and f not in fields]
        if missing:
            raise ValueError(f"scorer '{value}' needs fields {missing} in 'fields'")
        return value

    @field_validator("prompts")
    @classmethod
    def _prompt_placeholders(cls, value: Prompts, info: ValidationInfo) -> Prompts:
        names = _template_names(info)
        if names is not None:
            _check_placeholders("prompts.base", value.base, names | {"fewshot"})
            _check_placeholders("prompts.guide_user", value.guide_user, names | {"fewshot"})
        if value.fewshot_template is not None:
            for i, example in enumerate(value.fewshot):
                _check_placeholders(f"prompts.fewshot.{i}", value.fewshot_template, set(example))
        return value

    @field_validator("reference", "target")
    @classmethod
    def _field_placeholders(cls, value: str | None, info: ValidationInfo) -> str | None:
        names = _template_names(info)
        if value is not None and names is not None:
            _check_placeholders(str(info.field_name), value, names)
        return value


def _template_names(info: ValidationInfo) -> set[str] | None:
    """Placeholders a template may use, or None when fields or scorer failed validation."""
    fields, scorer = info.data.get("fields"), info.data.get("scorer")
    if fields is None or scorer is None:
        return None
    return set(fields) | set(TASKS[scorer].derived)


def _check_known(where: str, names: Iterable[str], fields: Mapping[str, str] | None) -> None:
    unknown_names = [n for n in names if fields is not None and n not in fields]
    if unknown_names:
        raise ValueError(f"{where}: {unknown_names} not a key of 'fields'")


def _check_placeholders(where: str, template: str, known: set[str]) -> None:
    bad = sorted(set(_PLACEHOLDER.findall(template)) - known)
    if bad:
        raise ValueError(
            f"{where}: unknown placeholder(s) {', '.join('{' + b + '}' for b in bad)}; "
            f"known: {', '.join(sorted(known))}"
        )


def render_template(template: str, values: Mapping[str, Any]) -> str:
    """Substitute ``{name}`` placeholders in one pass; list values are joined with '; '.

    Raises:
        KeyError: a placeholder has no value (probe validation rules this out).
    """

    def repl(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        return "; ".join(value) if isinstance(value, list) else str(value)

    return _PLACEHOLDER.sub(repl, template)


# ---------------------------------------------------------------- loading probes


def list_probes() -> list[str]:
    """Names of the built-in probes."""
    return sorted(p.stem for p in BUILTIN_PROBES_DIR.glob("*.yaml"))


def load_probe(name_or_path: str | Path) -> ProbeSpec:
    """Load a built-in probe by name, or a user probe from a YAML file path.

    Raises:
        InputError: an unknown built-in name (with a close-name suggestion).
        DataError: the file is missing or does not match the schema; the message
            names the file, the field and the reason.
    """
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text
    if is_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise DataError(f"Probe file not found: {path}")
    else:
        path = BUILTIN_PROBES_DIR / f"{text}.yaml"
        if not path.is_file():
            raise unknown("probe", text, list_probes())
    spec = _parse_probe_file(path)
    if not is_path and spec.name != text:
        raise DataError(f"Probe file {path}: name '{spec.name}' does not match the file name.")
    return spec


def _parse_probe_file(path: Path) -> ProbeSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"Probe file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(f"Probe file {path}: expected a mapping at the top level.")
    try:
        spec = ProbeSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(top level)'}': {err['msg']}"
            for err in exc.errors()
        )
        raise DataError(
            f"Probe file {path} is invalid: {problems}",
            hint="See probes/gsm8k.yaml for a complete, commented example.",
        ) from None
    spec._origin = path.resolve()
    return spec


def _is_builtin(spec: ProbeSpec) -> bool:
    return spec.origin is not None and spec.origin.parent == BUILTIN_PROBES_DIR


# ---------------------------------------------------------------- loading data


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The local data directory: the argument wins over ``PAIRSCOPE_DATA_DIR``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else None


def _supply_hint(spec: ProbeSpec) -> str:
    ways = []
    if spec.source.local is not None:
        ways.append(
            f"pass --data-dir DIR or set {DATA_DIR_ENV}=DIR where DIR contains "
            f"{spec.source.local.file}"
        )
    if spec.source.hub is not None:
        hub = spec.source.hub
        config = f", config '{hub.config}'" if hub.config else ""
        ways.append(
            f"run with network access to load '{hub.path}'{config}, split '{hub.split}' "
            "from the Hugging Face Hub"
        )
    return "To supply the data: " + "; or ".join(ways) + "."


def _local_candidates(spec: ProbeSpec, data_dir: Path | None) -> list[Path]:
    assert spec.source.local is not None
    file = Path(spec.source.local.file).expanduser()
    if file.is_absolute():
        return [file]
    candidates = []
    # A user probe ships its data beside the YAML; built-in probes never do.
    if spec.origin is not None and not _is_builtin(spec):
        candidates.append(spec.origin.parent / file)
    if data_dir is not None:
        candidates.append(data_dir / file)
    return candidates


def load_dataset_records(
    spec: ProbeSpec,
    data_dir: str | Path | None = None,
    via_hub_path: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Load a probe's dataset as records keyed by the canonical field names.

    Local data (``data_dir``, else ``PAIRSCOPE_DATA_DIR``, else a user probe's own
    folder) is checked against the probe's sha256 and never touches the network.
    Without local data the Hub id is used. Both go through ``datasets.load_dataset``.

    Args:
        spec: The probe.
        data_dir: Directory holding the local benchmark copies.
        via_hub_path: Run the Hub code path with this path (e.g. a local directory laid
            out like the Hub dataset) in place of the Hub id; used by tests.

    Raises:
        DataError: missing or altered file, Hub failure, missing column, empty dataset.
    """
    if via_hub_path is not None:
        if spec.source.hub is None:
            raise DataError(f"Probe '{spec.name}' has no Hub source.")
        rows = _load_hub(spec, str(via_hub_path))
        return _to_records(spec, rows, spec.source.hub.fields, f"{via_hub_path}")
    resolved = resolve_data_dir(data_dir)
    if spec.source.local is not None:
        candidates = _local_candidates(spec, resolved)
        found = next((p for p in candidates if p.is_file()), None)
        if found is not None:
            rows = _load_local(spec, found)
            return _to_records(spec, rows, None, str(found))
        if resolved is not None or spec.source.hub is None:
            expected = candidates[-1] if candidates else Path(spec.source.local.file)
            checksum = spec.source.local.sha256 or "(not pinned)"
            raise DataError(
                f"Data file for probe '{spec.name}' not found: expected {expected} "
                f"(sha256 {checksum}).",
                hint=_supply_hint(spec),
            )
    assert spec.source.hub is not None
    rows = _load_hub(spec, spec.source.hub.path)
    return _to_records(spec, rows, spec.source.hub.fields, spec.source.hub.path)


@contextmanager
def _quiet_datasets() -> Iterator[Any]:
    """Import ``datasets`` lazily and silence its progress bars (core code never prints)."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _load_local(spec: ProbeSpec, path: Path) -> list[dict[str, Any]]:
    local = spec.source.local
    assert local is not None
    if local.sha256 is not None:
        actual = sha256_file(path)
        if actual != local.sha256:
            raise DataError(
                f"Data file {path} has sha256 {actual}, expected {local.sha256} "
                f"(probe '{spec.name}'): the file is altered or a different version.",
                hint=_supply_hint(spec),
            )
    if not path.read_bytes().strip():
        raise DataError(f"Dataset {path} for probe '{spec.name}' is empty.")
    builder = "json" if local.format == "jsonl" else "csv"
    # keep_default_na=False: an empty CSV cell is an empty string, not NaN.
    extra: dict[str, Any] = {"keep_default_na": False} if builder == "csv" else {}
    # The arrow copy datasets prepares goes to a temporary directory, removed at once:
    # a local file is read into memory and nothing is written to the datasets cache.
    try:
        with _quiet_datasets() as ds, tempfile.TemporaryDirectory(prefix="pairscope-") as tmp:
            dataset = ds.load_dataset(
                builder,
                data_files=str(path),
                split="train",
                cache_dir=tmp,
                keep_in_memory=True,
                **extra,
            )
            return list(dataset.to_list())
    except Exception as exc:  # the loaders raise many types; all mean "unreadable file"
        reason = str(exc).strip() or type(exc).__name__
        raise DataError(f"Could not read data file {path} as {local.format}: {reason}") from exc


def _load_hub(spec: ProbeSpec, path: str) -> list[dict[str, Any]]:
    hub = spec.source.hub
    assert hub is not None
    try:
        with _quiet_datasets() as ds:
            dataset = ds.load_dataset(path, hub.config, split=hub.split)
    except Exception as exc:  # network, auth, missing config/split: all a data problem
        raise DataError(
            f"Could not load '{path}' (config {hub.config}, split {hub.split}) for probe "
            f"'{spec.name}': {exc}",
            hint=_supply_hint(spec),
        ) from exc
    return list(dataset.to_list())


def _normalise(value: Any) -> Any:
    """Strings everywhere: loaders differ in how they type ids and empty cells."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return str(value)


def _to_records(
    spec: ProbeSpec,
    rows: list[dict[str, Any]],
    columns: Mapping[str, str] | None,
    where: str,
) -> list[dict[str, Any]]:
    if not rows:
        raise DataError(f"Dataset {where} for probe '{spec.name}' is empty.")
    mapping = columns or spec.fields
    available = set(rows[0])
    missing = sorted(col for col in mapping.values() if col not in available)
    if missing:
        raise DataError(
            f"Dataset {where} for probe '{spec.name}' lacks column(s) {missing}; "
            f"it has {sorted(available)}."
        )
    records = []
    for row in rows:
        record = {name: _normalise(row[col]) for name, col in mapping.items()}
        for name, sep in spec.list_fields.items():
            value = record[name]
            if isinstance(value, str):
                value = value.split(sep)
            record[name] = [v.strip() for v in value if v.strip()]
        records.append(record)
    return records


# ---------------------------------------------------------------- samples


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


# ---------------------------------------------------------------- selection


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


# ---------------------------------------------------------------- manifests


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
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"Manifest {src} is not readable JSON: {exc}") from None
    keys = {"task", "probe_version", "seed", "n", "ids", "data_sha256", "format_version"}
    if not isinstance(data, dict) or set(data) != keys:
        raise DataError(f"Manifest {src} must have exactly the keys {sorted(keys)}.")
    ids = data["ids"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DataError(f"Manifest {src}: field 'ids' must be a list of strings.")
    if data["format_version"] != MANIFEST_VERSION:
        raise DataError(
            f"Manifest {src} has format_version {data['format_version']}; "
            f"this pairscope reads {MANIFEST_VERSION}."
        )
    if len(ids) != data["n"] or len(set(ids)) != len(ids):
        raise DataError(f"Manifest {src}: 'n' must equal the number of distinct ids.")
    return Manifest(
        task=str(data["task"]),
        probe_version=int(data["probe_version"]),
        seed=int(data["seed"]),
        n=int(data["n"]),
        ids=tuple(ids),
        data_sha256=str(data["data_sha256"]),
    )


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


# ---------------------------------------------------------------- one-call helpers


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


def prepare_samples(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    n: int | Literal["all"] | None = None,
    seed: int | None = None,
    manifest: Manifest | str | Path | None = None,
) -> tuple[ProbeSpec, list[Sample], Manifest]:
    """Load a probe and its data, and :func:`choose` its samples."""
    spec = load_probe(name_or_path)
    samples = build_samples(spec, load_dataset_records(spec, data_dir))
    chosen, made = choose(spec, samples, n, seed, manifest)
    return spec, chosen, made


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
