"""Pre-flight items read from one model's tokenizer (its family, single-token spaces,
chat template, special ids, vocabulary size) and the pair's static vocabulary overlap."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pairscope.check.items import FAIL, PASS, WARN, Item, Model

# Below this share of the smaller vocabulary, the blend's two top-k lists rarely meet.
LOW_OVERLAP = 0.05
_SPACE_MARKERS = ("\u2581", "\u0120", " ")
_PROBE_WORDS = ("hello the", "x and", "a of")


def _component(backend: Any, name: str) -> dict[str, Any]:
    """A ``tokenizers`` pipeline component as its JSON dict ({} when absent)."""
    import json

    part = getattr(backend, name, None)
    if part is None:
        return {}
    try:
        return dict(json.loads(part.__getstate__()))
    except Exception:  # noqa: BLE001 - an unserialisable custom component
        return {"type": type(part).__name__}


def _flatten(part: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The steps of a component, with ``Sequence`` components expanded."""
    if part.get("type") == "Sequence":
        return [step for inner in part.get(key, []) for step in _flatten(inner, key)]
    return [part] if part else []


def tokenizer_family(tokenizer: Any) -> str:
    """A short name for the tokenizer's family, read from its ``tokenizers`` pipeline."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return f"Python tokenizer {type(tokenizer).__name__} (no fast tokenizer to inspect)"
    model = type(backend.model).__name__
    normalizer = _flatten(_component(backend, "normalizer"), "normalizers")
    pre = _flatten(_component(backend, "pre_tokenizer"), "pretokenizers")
    decoder = _flatten(_component(backend, "decoder"), "decoders")
    kinds = {step.get("type") for step in normalizer + pre + decoder}
    fallback = ", byte fallback" if getattr(backend.model, "byte_fallback", False) else ""
    if "ByteLevel" in kinds:
        return f"byte-level {model} (GPT-2 style)"
    if "Metaspace" in kinds:
        scheme = next(
            (s.get("prepend_scheme") for s in pre + decoder if s.get("type") == "Metaspace"), None
        )
        return f"Metaspace {model} (SentencePiece-style, prepend_scheme={scheme}){fallback}"
    replaces_space = any(
        s.get("type") == "Replace" and s.get("content") == "\u2581" for s in normalizer
    )
    if replaces_space and "Prepend" in kinds:
        return (
            f"SentencePiece {model}, legacy (dummy-prefix '▁'; Llama-2 / Mistral style){fallback}"
        )
    if replaces_space:
        return f"SentencePiece {model} without a dummy prefix (Gemma style){fallback}"
    return f"{model} ({', '.join(sorted(k for k in kinds if k)) or 'no pre-tokenizer'})"


def single_token_text(tokenizer: Any) -> tuple[str, str, str] | None:
    """A token that carries a leading space: ``(raw token, decoded alone, added in sequence)``.

    What it adds in sequence is ``decode(prefix + [t])`` minus ``decode(prefix)``; a
    decoder that strips a leading space (SentencePiece ``Strip``, Metaspace with
    ``prepend_scheme="first"``) decodes it alone without the space. None when no probe
    word yields such a token.
    """
    for text in _PROBE_WORDS:
        ids = [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]
        raws = tokenizer.convert_ids_to_tokens(ids)
        for at in range(len(ids) - 1, 0, -1):
            raw = str(raws[at])
            if not raw.startswith(_SPACE_MARKERS) or len(raw) < 2:
                continue
            before = tokenizer.decode(ids[:at], clean_up_tokenization_spaces=False)
            whole = tokenizer.decode(ids[: at + 1], clean_up_tokenization_spaces=False)
            if not whole.startswith(before):
                continue
            alone = tokenizer.decode([ids[at]], clean_up_tokenization_spaces=False)
            return raw, str(alone), str(whole[len(before) :])
    return None


def tokenizer_items(model: Model) -> None:
    tok = model.tokenizer
    model.item("tokenizer family", PASS, tokenizer_family(tok))
    found = single_token_text(tok)
    if found is None:
        model.item("single-token spaces", PASS, "no probe word gives a token with a leading space")
        return
    raw, alone, added = found
    if alone == added:
        model.item(
            "single-token spaces",
            PASS,
            f"decode([id({raw!r})]) == {alone!r}: a token decoded alone keeps its space",
        )
        return
    model.item(
        "single-token spaces",
        WARN,
        f"decode([id({raw!r})]) == {alone!r}, but the token adds {added!r} to a sequence: "
        "this decoder strips a leading space when a token is decoded alone (SentencePiece "
        "'legacy' / Metaspace prepend-first decoders, as in Llama-2 and Mistral), so "
        f"{raw!r} and the same word without a space look alike one token at a time",
        "pairscope takes a token's text from what it adds after a fixed anchor token, so "
        "decoding and the blend keep the space; code of your own that decodes one token "
        "at a time (token strings for the blend, NUDGING's agreement test) must do the same.",
    )


def template_items(model: Model) -> None:
    from pairscope.models import FALLBACK_CHAT_TEMPLATE

    tok = model.tokenizer
    if model.role == "base":
        model.item(
            "chat template",
            PASS,
            "not used: the base reads a plain completion prompt (few-shot where the probe says so)",
        )
        return
    if not getattr(tok, "chat_template", None):
        model.item(
            "chat template",
            WARN,
            f"none: the guide gets the plain template {FALLBACK_CHAT_TEMPLATE!r}",
            "Use the instruct model's own tokenizer files (with its chat template); an "
            "instruct model prompted without its template answers worse.",
        )
        return
    user = [{"role": "user", "content": "Q"}]
    try:
        opened = str(tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True))
        closed = str(tok.apply_chat_template(user, tokenize=False, add_generation_prompt=False))
    except Exception as exc:  # noqa: BLE001 - a template can raise anything
        model.item(
            "chat template",
            FAIL,
            f"the template fails on a user turn: {exc}",
            "Fix or replace the tokenizer's chat_template.",
        )
        return
    if opened == closed:
        model.item(
            "chat template",
            WARN,
            "the template ignores add_generation_prompt: the assistant turn is not opened",
            "Use a template that opens the assistant turn, or the guide may write the user's.",
        )
        return
    turn = opened[len(closed) :] if opened.startswith(closed) else opened[-40:]
    try:
        tok.apply_chat_template(
            [{"role": "system", "content": "S"}, *user], tokenize=False, add_generation_prompt=True
        )
        system = "accepts a system message"
    except Exception:  # noqa: BLE001 - e.g. "System role not supported"
        model.item(
            "chat template",
            WARN,
            f"present (assistant turn opens with {turn!r}) but rejects a system message",
            "Probes with a system prompt cannot run with this guide; leave system prompts out.",
        )
        return
    model.item("chat template", PASS, f"present; assistant turn opens with {turn!r}; {system}")


def _end_ids(model: Model) -> frozenset[int]:
    from pairscope.runtime.vocab import end_ids

    return end_ids(model.generation_eos, model.tokenizer)


def _names(tok: Any, ids: Iterable[int]) -> str:
    return ", ".join(f"{tok.convert_ids_to_tokens(int(i))} ({int(i)})" for i in sorted(ids))


def special_items(model: Model) -> None:
    tok = model.tokenizer
    ends = _end_ids(model)
    size = len(tok)
    if not ends:
        model.item(
            "end of sequence",
            WARN,
            "no end-of-sequence id in the generation config, tokenizer or chat template",
            "Responses then stop only at stop strings or max_new_tokens; set eos_token_id in "
            "generation_config.json.",
        )
    elif any(i >= size for i in ends):
        model.item(
            "end of sequence",
            FAIL,
            f"end ids {sorted(ends)} lie outside the tokenizer's {size} ids",
            "The generation config belongs to another tokenizer: use matching files.",
        )
    else:
        model.item("end of sequence", PASS, f"responses end at {_names(tok, ends)}")
    named = []
    for label in ("bos", "pad", "unk"):
        value = getattr(tok, f"{label}_token_id", None)
        named.append(f"{label} {'none' if value is None else _names(tok, [value])}")
    added = tok.encode("x", add_special_tokens=True)[:1]
    bos = getattr(tok, "bos_token_id", None)
    prefix = (
        "adds BOS to a completion prompt"
        if bos is not None and added == [bos]
        else ("adds no BOS to a completion prompt")
    )
    pad_note = "" if getattr(tok, "pad_token_id", None) is not None else " (batches pad with 0)"
    model.item("special tokens", PASS, "; ".join(named) + f"; {prefix}{pad_note}")


def vocab_size_item(model: Model) -> None:
    size = len(model.tokenizer)
    rows = model.config.get("vocab_size")
    if rows is None:
        model.item("vocabulary size", PASS, f"{size} token ids (no model config to compare)")
    elif size > int(rows):
        model.item(
            "vocabulary size",
            FAIL,
            f"the tokenizer has {size} ids but the model only {rows} embedding rows",
            "The tokenizer does not belong to this model: use the model's own tokenizer files.",
        )
    else:
        model.item("vocabulary size", PASS, f"{size} token ids, {rows} embedding rows")


def _vocabulary(tok: Any) -> list[str]:
    return [str(t) for t in tok.convert_ids_to_tokens(list(range(len(tok))))]


def overlap_item(base: Model, guide: Model) -> Item:
    from pairscope.metrics.overlap import static_vocab_overlap

    stats = static_vocab_overlap(_vocabulary(base.tokenizer), _vocabulary(guide.tokenizer))
    smaller = min(stats["base_size"], stats["guide_size"]) or 1
    jaccard = stats["jaccard"] or 0.0
    found = (
        f"Jaccard {jaccard:.3f}: {stats['intersection']} token strings shared of "
        f"{stats['base_size']} (base) and {stats['guide_size']} (guide), space markers "
        "normalised"
    )
    if stats["intersection"] < LOW_OVERLAP * smaller:
        return Item(
            "vocabulary overlap",
            "pair",
            WARN,
            found + "; the blend's two top-k lists will rarely share a string",
            "Overlap does not predict success (docs/methods.md §3), but BlendIn then mostly "
            "picks one model's token; NUDGING, which matches words, is less affected.",
        )
    return Item("vocabulary overlap", "pair", PASS, found)
