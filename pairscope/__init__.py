"""pairscope: will this guide model steer this base model well, and how sure are we?

The package imports nothing heavy at import time; torch and transformers load
inside the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "generate", "load_pair"]

if TYPE_CHECKING:
    from pairscope.decoding.engine import generate
    from pairscope.models import load_pair


def __getattr__(name: str) -> Any:
    if name == "load_pair":
        from pairscope.models import load_pair

        return load_pair
    if name == "generate":
        from pairscope.decoding.engine import generate

        return generate
    raise AttributeError(name)
