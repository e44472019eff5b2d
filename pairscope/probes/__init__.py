"""Probes: strict YAML definitions, dataset loading, samples and seeded manifests.

Three parts, one module each: :mod:`~pairscope.probes.schema` (the YAML schema,
templates, loading a probe), :mod:`~pairscope.probes.data` (its dataset, local or
from the Hub) and :mod:`~pairscope.probes.selection` (samples, the seeded
stratified choice and its manifest). The public names are re-exported here, so
``from pairscope.probes import X`` is the one import to use. What differs by task
lives in :mod:`pairscope.tasks`.
"""

from __future__ import annotations

from pairscope.probes.data import DATA_DIR_ENV, load_dataset_records, resolve_data_dir
from pairscope.probes.schema import (
    BUILTIN_PROBES_DIR,
    HubSource,
    LocalSource,
    ProbeSpec,
    Prompts,
    Source,
    list_probes,
    load_probe,
    render_template,
)
from pairscope.probes.selection import (
    MANIFEST_VERSION,
    Manifest,
    SampleSizeWarning,
    build_samples,
    choose,
    dataset_fingerprint,
    interleave,
    load_manifest,
    make_manifest,
    manifest_from_dict,
    manifest_json,
    probe_info,
    sample_id,
    save_manifest,
    select,
    select_by_manifest,
)
from pairscope.tasks.base import Sample

__all__ = [
    "BUILTIN_PROBES_DIR",
    "DATA_DIR_ENV",
    "MANIFEST_VERSION",
    "HubSource",
    "LocalSource",
    "Manifest",
    "ProbeSpec",
    "Prompts",
    "Sample",
    "SampleSizeWarning",
    "Source",
    "build_samples",
    "choose",
    "dataset_fingerprint",
    "interleave",
    "list_probes",
    "load_dataset_records",
    "load_manifest",
    "manifest_from_dict",
    "load_probe",
    "make_manifest",
    "manifest_json",
    "probe_info",
    "render_template",
    "resolve_data_dir",
    "sample_id",
    "save_manifest",
    "select",
    "select_by_manifest",
]
