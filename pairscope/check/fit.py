"""Pre-flight items on where one model runs: its context and sliding windows against
the probes' prompts, and the dtype on the chosen device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pairscope.check.items import FAIL, PASS, WARN, Model
from pairscope.errors import InputError

# Tokens a probe's question (and its answer options) may add to the prompt template.
QUESTION_ALLOWANCE = 256


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


def window_items(model: Model, probes: Sequence[Any]) -> None:
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


def dtype_item(model: Model, device: str, dtype: str) -> None:
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
