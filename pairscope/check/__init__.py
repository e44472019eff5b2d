"""Pre-flight check of a base/guide pair: tokenizers and configs only, in seconds.

``pairscope check`` reads what a probe would later trip over, before any weights
load: each model's tokenizer family and whether one token decoded alone keeps its
leading space, the guide's chat template (or the plain fallback), end-of-sequence
and other special ids, vocabulary size against the model config, context and
sliding windows against the probes' prompts, the dtype on the chosen device, for a
served model its ``/v1/models`` entry and one tiny request (the top-logprobs cap),
and the static vocabulary overlap of the two. Every item is PASS, WARN or FAIL with
what was found and, unless it passed, what to do. A FAIL is a hard incompatibility
(the probe would stop or measure nothing useful); the CLI then exits 2.

Weights are never read: a converted embedded model is read from its cache
directory; an unconverted one from its GGUF header (slow for a large vocabulary, so
the tokenizer and config are then kept in the cache for the next check); a local
directory from its ``config.json`` and tokenizer files; a Hub id downloads only
those files; a served model answers ``/v1/models`` and one tiny completion.
On the embedded pair, from the converted cache, the check takes a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pairscope.check.fit import dtype_item, window_items
from pairscope.check.items import FAIL, PASS, WARN, CheckReport, Item, Model
from pairscope.check.read import read_model
from pairscope.check.tokenizer import (
    overlap_item,
    single_token_text,
    special_items,
    template_items,
    tokenizer_family,
    tokenizer_items,
    vocab_size_item,
)
from pairscope.defaults import DEFAULT_TASKS
from pairscope.errors import PairscopeError

__all__ = [
    "FAIL",
    "PASS",
    "WARN",
    "CheckReport",
    "Item",
    "check_pair",
    "single_token_text",
    "tokenizer_family",
]


def check_pair(
    base: str,
    guide: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    tasks: Sequence[str] = DEFAULT_TASKS,
    revisions: Mapping[str, str | None] | None = None,
) -> CheckReport:
    """Check a pair without loading weights; see the module docstring for the items.

    Never raises for a problem with either model: each becomes a FAIL item. An
    unknown task name raises InputError (a usage error, as in ``probe``).
    ``revisions``: a Hub revision per role ("base", "guide") to read.
    """
    started = time.perf_counter()
    probes = _load_probes(tasks)
    items: list[Item] = []
    read: dict[str, Model] = {}
    for role, spec in (("base", base), ("guide", guide)):
        revision = (revisions or {}).get(role)
        model = read_model(role, spec, trust_remote_code, items, revision)
        if model is None:
            continue
        read[role] = model
        _guarded(model, "tokenizer", tokenizer_items)
        _guarded(model, "chat template", template_items)
        _guarded(model, "special tokens", special_items)
        _guarded(model, "vocabulary size", vocab_size_item)
        _guarded(model, "context window", lambda m: window_items(m, probes))
        _guarded(model, "dtype on device", lambda m: dtype_item(m, device, dtype))
        items += model.items
    if len(read) == 2:
        items.append(overlap_item(read["base"], read["guide"]))
    return CheckReport(base, guide, tuple(items), time.perf_counter() - started)


def _guarded(model: Model, name: str, step: Callable[[Model], None]) -> None:
    """Run one group of checks; an unexpected failure becomes a FAIL item, not a crash."""
    try:
        step(model)
    except PairscopeError as exc:
        model.item(name, FAIL, exc.message, exc.hint)
    except Exception as exc:  # noqa: BLE001 - a tokenizer or template can fail in many ways
        model.item(name, FAIL, f"{type(exc).__name__}: {exc}", "The probe would fail here too.")


def _load_probes(tasks: Sequence[str]) -> list[Any]:
    from pairscope.probes import load_probe

    return [load_probe(task) for task in tasks]
