"""Pure metric functions on numpy arrays: intervals, intervention rate, overlap, calibration.

Imports only numpy (scipy loads inside the few functions that need it).
"""

from __future__ import annotations

from pairscope.metrics.calibration import (
    CalibrationSummary,
    ReliabilityBin,
    calibration_summary,
    ece,
    ece_equal_mass,
    mce,
    reliability_bins,
)
from pairscope.metrics.intervention import (
    Distribution,
    Verdict,
    distribution_summary,
    gate_passes,
    intervention_rate,
    overall_verdict,
    per_sample_rates,
    verdict,
)
from pairscope.metrics.overlap import (
    normalize_token_string,
    overlap_at_k,
    overlap_summary,
    static_vocab_overlap,
    top1_in_topk,
)
from pairscope.metrics.stats import (
    Estimate,
    McNemar,
    bootstrap_mean,
    bootstrap_ratio,
    mcnemar_exact,
    min_detectable_difference,
    paired_bootstrap_diff,
    pearson,
    pearson_interval,
    proportion,
    wilson,
)

__all__ = [
    "CalibrationSummary",
    "Distribution",
    "Estimate",
    "McNemar",
    "ReliabilityBin",
    "Verdict",
    "bootstrap_mean",
    "bootstrap_ratio",
    "calibration_summary",
    "distribution_summary",
    "ece",
    "ece_equal_mass",
    "gate_passes",
    "intervention_rate",
    "mce",
    "mcnemar_exact",
    "min_detectable_difference",
    "normalize_token_string",
    "overall_verdict",
    "overlap_at_k",
    "overlap_summary",
    "paired_bootstrap_diff",
    "pearson",
    "pearson_interval",
    "per_sample_rates",
    "proportion",
    "reliability_bins",
    "static_vocab_overlap",
    "top1_in_topk",
    "verdict",
    "wilson",
]
