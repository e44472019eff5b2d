"""A probe's dataset as records keyed by canonical field names, from a local file or the Hub.

Local data is checked against the probe's sha256 and never touches the network;
both sources go through ``datasets.load_dataset`` (imported lazily), and every
value comes back as a string (or a list of strings for ``list_fields``), since
loaders differ in how they type ids and empty cells.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pairscope.errors import DataError
from pairscope.pipeline.runs import sha256_file
from pairscope.probes.schema import ProbeSpec, is_builtin

__all__ = ["DATA_DIR_ENV", "load_dataset_records", "resolve_data_dir"]

DATA_DIR_ENV = "PAIRSCOPE_DATA_DIR"


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
    if spec.origin is not None and not is_builtin(spec):
        candidates.append(spec.origin.parent / file)
    if data_dir is not None:
        candidates.append(data_dir / file)
    return candidates


def load_dataset_records(
    spec: ProbeSpec,
    data_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Load a probe's dataset as records keyed by the canonical field names.

    Local data (``data_dir``, else ``PAIRSCOPE_DATA_DIR``, else a user probe's own
    folder) is checked against the probe's sha256 and never touches the network.
    Without local data the Hub id is used. Both go through ``datasets.load_dataset``.

    Args:
        spec: The probe.
        data_dir: Directory holding the local benchmark copies.

    Raises:
        DataError: missing or altered file, Hub failure, missing column, empty dataset.
    """
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
