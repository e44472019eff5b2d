"""Reading one model for the pre-flight check without its weights: a converted
embedded model from its cache directory, an unconverted one from its GGUF header (kept
in the cache for the next check), a local directory from its ``config.json`` and
tokenizer files, a Hub id from those files alone, a served model through
:mod:`.served`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pairscope.check.items import FAIL, PASS, Item, Model, read_json
from pairscope.errors import PairscopeError

_WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")


def read_model(
    role: str, spec: str, trust_remote_code: bool, items: list[Item], revision: str | None = None
) -> Model | None:
    """Tokenizer and config of one model, plus its source/weights item (FAIL: None)."""
    if spec.startswith("vllm:"):
        from pairscope.check.served import read_served

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
        items.append(_remote_code_item(role, spec, config))
    window = config.get("max_position_embeddings")
    return Model(role, spec, tokenizer, config, eos, int(window) if window else None)


def _remote_code_item(role: str, spec: str, config: dict[str, Any]) -> Item:
    """FAIL: the model needs code of its own that transformers does not have."""
    return Item(
        "remote code",
        role,
        FAIL,
        f"'{spec}' needs its own model code: transformers does not know model_type "
        f"{config.get('model_type')!r} and config.json names code in auto_map",
        "Add --trust-remote-code if you trust this model's code.",
    )


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
