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

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pairscope.check_items import FAIL, PASS, WARN, CheckReport, Item, Model, read_json
from pairscope.defaults import DEFAULT_TASKS
from pairscope.errors import InputError, PairscopeError

# Tokens a probe's question (and its answer options) may add to the prompt template.
QUESTION_ALLOWANCE = 256
# Below this share of the smaller vocabulary, the blend's two top-k lists rarely meet.
LOW_OVERLAP = 0.05
_WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
_SPACE_MARKERS = ("\u2581", "\u0120", " ")
_PROBE_WORDS = ("hello the", "x and", "a of")


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
        model = _read(role, spec, trust_remote_code, items, revision)
        if model is None:
            continue
        read[role] = model
        _guarded(model, "tokenizer", _tokenizer_items)
        _guarded(model, "chat template", _template_items)
        _guarded(model, "special tokens", _special_items)
        _guarded(model, "vocabulary size", _vocab_size_item)
        _guarded(model, "context window", lambda m: _window_items(m, probes))
        _guarded(model, "dtype on device", lambda m: _dtype_item(m, device, dtype))
        items += model.items
    if len(read) == 2:
        items.append(_overlap_item(read["base"], read["guide"]))
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


# -- reading a model -----------------------------------------------------------------------


def _read(
    role: str, spec: str, trust_remote_code: bool, items: list[Item], revision: str | None = None
) -> Model | None:
    """Tokenizer and config of one model, plus its source/weights item (FAIL: None)."""
    if spec.startswith("vllm:"):
        from pairscope.check_served import read_served

        return read_served(role, spec, trust_remote_code, items)
    from pairscope.models import _converted_dir, _load_hint, _resolve_source

    try:
        source, target, convert = _resolve_source(spec)
    except PairscopeError as exc:
        items.append(Item("model files", role, FAIL, exc.message, exc.hint))
        return None
    pinned = {"revision": revision} if revision else {}  # a local read ignores it
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, **pinned}
    if source.kind != "hub":
        kwargs["local_files_only"] = True
    folder = str(target)
    try:
        if convert:
            assert source.sha256 is not None
            cached = _converted_dir(source.sha256)
            if (cached / "pairscope-source.json").exists():
                folder = str(cached)
                weights = f"converted copy in the cache ({cached}); loads in seconds"
            else:
                gguf = _gguf_path(spec, target)
                folder = _header_copy(gguf, source.sha256, kwargs)
                weights = f"GGUF file {gguf}; converted into the cache on first load (15-45 s)"
        tokenizer, config, eos = _load_files(folder, kwargs)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for bad files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        hint = _load_hint(source)
        if "trust_remote_code" in str(exc) and not trust_remote_code:
            hint = "This model needs its own code: add --trust-remote-code if you trust it."
        items.append(Item("model files", role, FAIL, f"cannot read '{spec}': {first}", hint))
        return None
    if convert:
        status, fix = PASS, None
    elif source.kind == "local":
        found = [p.name for pattern in _WEIGHT_FILES for p in Path(folder).glob(pattern)]
        weights = "weights: " + ", ".join(sorted(found)[:3]) if found else "no weight files"
        status = PASS if found else FAIL
        fix = None if found else "Save the model with save_pretrained into this directory."
    else:
        weights, status, fix = "Hub id: weights are downloaded on first load", PASS, None
    items.append(Item("model files", role, status, f"{source.kind}: {weights}", fix))
    if config.get("auto_map") and not trust_remote_code and not _known(config):
        items.append(
            Item(
                "remote code",
                role,
                FAIL,
                f"'{spec}' needs its own model code: transformers does not know model_type "
                f"{config.get('model_type')!r} and config.json names code in auto_map",
                "Add --trust-remote-code if you trust this model's code.",
            )
        )
    window = config.get("max_position_embeddings")
    return Model(role, spec, tokenizer, config, eos, int(window) if window else None)


def _known(config: dict[str, Any]) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return config.get("model_type") in CONFIG_MAPPING_NAMES


def _gguf_path(spec: str, target: Any) -> Path:
    from pairscope.models import EMBEDDED

    if str(target):
        return Path(target)
    assemble = EMBEDDED[spec][1]
    return Path(assemble())


def _header_copy(gguf: Path, sha256: str, kwargs: dict[str, Any]) -> str:
    """A directory with the tokenizer and config read from a GGUF file's header.

    Reading them takes transformers a minute for a large vocabulary, so the first
    check keeps a copy in the cache (beside, not inside, the converted models) and
    later checks read that, as they read a converted model.
    """
    import json
    import shutil

    from pairscope.models import cache_dir

    target = cache_dir() / "check" / sha256[:32]
    if (target / "config.json").is_file():
        return str(target)
    from transformers import AutoConfig, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, **kwargs)
    config = AutoConfig.from_pretrained(folder, gguf_file=name, **kwargs).to_dict()
    config.pop("quantization_config", None)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return str(target)


def _load_files(folder: str, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any], Any]:
    """Tokenizer, model config (the text part) as a dict, and the generation end ids.

    A directory's config files are read as JSON: importing a model's configuration
    class pulls in its modelling code, which is most of the time this command needs.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    directory = Path(folder)
    if not (directory / "config.json").is_file():  # a Hub id
        from transformers import AutoConfig, GenerationConfig

        config = AutoConfig.from_pretrained(folder, **kwargs)
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        values = text.to_dict()
        try:
            eos = GenerationConfig.from_pretrained(folder, **kwargs).eos_token_id
        except Exception:  # noqa: BLE001 - no generation_config.json
            eos = None
        return tokenizer, values, values.get("eos_token_id") if eos is None else eos
    values = read_json(directory / "config.json")
    values = {**values, **(values.get("text_config") or {})}
    generation = directory / "generation_config.json"
    eos = read_json(generation).get("eos_token_id") if generation.is_file() else None
    return tokenizer, values, values.get("eos_token_id") if eos is None else eos


# -- tokenizer -----------------------------------------------------------------------------


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


def _tokenizer_items(model: Model) -> None:
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


def _template_items(model: Model) -> None:
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
    from pairscope.decoding.vocab import end_ids

    return end_ids(model.generation_eos, model.tokenizer)


def _names(tok: Any, ids: Iterable[int]) -> str:
    return ", ".join(f"{tok.convert_ids_to_tokens(int(i))} ({int(i)})" for i in sorted(ids))


def _special_items(model: Model) -> None:
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


def _vocab_size_item(model: Model) -> None:
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


def _prompt_need(model: Model, spec: Any) -> int:
    """Tokens one of this probe's prompts needs, with QUESTION_ALLOWANCE for the question."""
    from pairscope.probes import render_template

    class Blank(dict[str, Any]):
        def __missing__(self, key: str) -> str:
            return ""

    fewshot = ""
    if spec.prompts.fewshot_template is not None:
        fewshot = "".join(
            render_template(spec.prompts.fewshot_template, example)
            for example in spec.prompts.fewshot
        )
    values = Blank(fewshot=fewshot)
    tok = model.tokenizer
    if model.role == "base":
        text = render_template(spec.prompts.base, values)
        ids = tok.encode(text, add_special_tokens=True)
    else:
        user = render_template(spec.prompts.guide_user, values)
        if getattr(tok, "chat_template", None):
            try:
                text = str(
                    tok.apply_chat_template(
                        [{"role": "user", "content": user}],
                        tokenize=False,
                        add_generation_prompt=True,
                    )
                )
            except Exception:  # noqa: BLE001 - reported by the chat template item
                text = user
            ids = tok.encode(text, add_special_tokens=False)
        else:
            ids = tok.encode(user, add_special_tokens=True)
    return len(ids) + QUESTION_ALLOWANCE + int(spec.max_new_tokens)


def _window_items(model: Model, probes: Sequence[Any]) -> None:
    needs = {spec.name: _prompt_need(model, spec) for spec in probes}
    window = model.context_window
    biggest = max(needs, key=needs.__getitem__) if needs else None
    need_text = ", ".join(f"{name} ~{n}" for name, n in needs.items())
    if window is None:
        model.item(
            "context window",
            WARN,
            "unknown (no max_position_embeddings / max_model_len)",
            "pairscope cannot truncate over-long prompts for this model; keep prompts short.",
        )
    elif biggest is not None and needs[biggest] > window:
        model.item(
            "context window",
            WARN,
            f"{window} tokens; the probes need about {need_text} (prompt + "
            f"{QUESTION_ALLOWANCE} for the question + max_new_tokens)",
            "Prompts that do not fit are truncated from the left with a warning: use a model "
            "with a longer window, fewer few-shot examples, or a smaller --max-new-tokens.",
        )
    else:
        detail = f"; the probes need about {need_text}" if needs else ""
        model.item("context window", PASS, f"{window} tokens{detail}")
    config = model.config
    sliding = config.get("sliding_window")
    if not sliding:
        model.item("sliding window", PASS, "none: every layer attends to the whole context")
        return
    layers = list(config.get("layer_types") or [])
    share = (
        f" on {sum(t == 'sliding_attention' for t in layers)} of {len(layers)} layers"
        if layers
        else ""
    )
    longer = [name for name, n in needs.items() if n > int(sliding)]
    note = (
        f"; {', '.join(longer)} contexts can exceed it, where those layers see the last "
        f"{sliding} tokens, as the model was trained"
        if longer
        else ""
    )
    model.item("sliding window", PASS, f"{sliding} tokens{share}{note}")


def _dtype_item(model: Model, device: str, dtype: str) -> None:
    if model.served:
        model.item("dtype on device", PASS, "set by the server (--device and --dtype do not apply)")
        return
    from pairscope.models import resolve_device, resolve_dtype

    try:
        dev = resolve_device(device)
        chosen = resolve_dtype(dtype, dev)
    except InputError as exc:
        model.item("dtype on device", FAIL, exc.message, exc.hint or "Choose another --device.")
        return
    name = str(chosen).removeprefix("torch.")
    config = model.config
    kind = str(config.get("model_type") or "")
    trained = str(config.get("dtype") or config.get("torch_dtype") or "").removeprefix("torch.")
    found = f"{name} on {dev}" + (f" (the config says {trained})" if trained else "")
    if name == "float16" and kind.startswith("gemma"):
        model.item(
            "dtype on device",
            WARN,
            f"{found}: Gemma's activations overflow float16 (inf or NaN logits)",
            "Use --dtype bfloat16 (CUDA) or float32.",
        )
    elif name == "float16" and trained == "bfloat16":
        model.item(
            "dtype on device",
            WARN,
            f"{found}: a bfloat16 model can overflow float16",
            "Use --dtype bfloat16 on CUDA, or float32.",
        )
    elif dev == "cpu" and name != "float32":
        model.item(
            "dtype on device",
            WARN,
            f"{found}: half precision on CPU is slow, and the parity tests measure float32",
            "Use --dtype float32 on CPU (the default).",
        )
    elif dev == "cuda" and name == "bfloat16" and not _bf16_on_cuda():
        model.item(
            "dtype on device",
            WARN,
            f"{found}: this GPU has no native bfloat16",
            "Use --dtype float16 (not for Gemma) or float32.",
        )
    else:
        model.item("dtype on device", PASS, found)


def _bf16_on_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported())


def _vocabulary(tok: Any) -> list[str]:
    return [str(t) for t in tok.convert_ids_to_tokens(list(range(len(tok))))]


def _overlap_item(base: Model, guide: Model) -> Item:
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


__all__ = ["CheckReport", "Item", "check_pair", "single_token_text", "tokenizer_family"]
