"""The methods' default hyperparameters (docs/methods.md §2) and the default probes, defined once.

Every command-line option, API default and dataclass field takes its value from
here, so changing a default is a one-line change.
"""

from __future__ import annotations

# A base position is uncertain when its top-1 probability is below TAU.
TAU = 0.4
# BlendIn's top-k union and the guide's top-k for overlap@k.
TOP_K = 100
# BlendIn's adaptive-alpha smoothing λ.
LAMBDA = 0.1
# The built-in probes a run uses when no --tasks are given.
DEFAULT_TASKS = ("gsm8k", "truthfulqa", "xstest")
# Samples (or requests) decoded together, the same in every command.
BATCH_SIZE = 16
# NUDGING's protocol for the CLI and a run (decoding/strategies.PROTOCOLS): the gate's
# threshold (~20 %) was stated in the reference protocol's intervention rate.
DEFAULT_PROTOCOL = "reference"
