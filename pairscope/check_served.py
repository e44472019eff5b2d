"""``pairscope check`` on a served model: its ``/v1/models`` entry and one tiny request.

The served backend's own helpers answer each question, so the check reads a server
exactly as a probe would; the items join the rest of the pair's check report.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from pairscope.check_items import FAIL, PASS, WARN, Item, Model, read_json
from pairscope.errors import PairscopeError


def read_served(role: str, spec: str, trust_remote_code: bool, items: list[Item]) -> Model | None:
    """``/v1/models`` and one tiny request, through the served backend's own helpers."""
    from pairscope.backends import served

    try:
        parsed = served.parse_spec(spec)
    except PairscopeError as exc:
        items.append(Item("server", role, FAIL, exc.message, exc.hint))
        return None
    client = served.Client(parsed.url, timeout=15.0, api_key=os.environ.get("VLLM_API_KEY"))
    try:
        return _ask_server(role, spec, trust_remote_code, items, served, parsed, client)
    finally:
        client.close()


def _ask_server(
    role: str,
    spec: str,
    trust_remote_code: bool,
    items: list[Item],
    served: Any,
    parsed: Any,
    client: Any,
) -> Model | None:
    def fail(check: str, message: str, hint: str | None) -> None:
        items.append(Item(check, role, FAIL, message, hint))

    start_hint = (
        "Start it first, e.g. `vllm serve MODEL --max-logprobs 100 --port 8000`, and check "
        "host, port and the /v1 path."
    )
    try:
        cards = served.parse_models(client.get("/models", retries=1, timeout=10.0))
        card = served._choose_card(spec, parsed, cards)
    except served.Unreachable as exc:
        fail("server", f"cannot reach the vLLM server at {parsed.url}: {exc}", start_hint)
        return None
    except served.ServerError as exc:
        fail("server", f"{parsed.url}/models answered {exc}", start_hint)
        return None
    except ValueError as exc:
        fail("server", f"{parsed.url} is not an OpenAI-compatible server: {exc}", None)
        return None
    except PairscopeError as exc:
        fail("server", exc.message, exc.hint)
        return None
    version = served._server_version(parsed.url, client.headers)
    items.append(
        Item("server", role, PASS, f"{parsed.url} serves '{card.id}' (vLLM {version or '?'})")
    )
    try:
        tokenizer, tok_source = served._load_tokenizer(card, trust_remote_code)
        vocab, eos = served._model_facts(tok_source, tokenizer)
        k = int(served.env_number(served.ENV_LOGPROBS, served.DEFAULT_LOGPROBS, 1))
    except PairscopeError as exc:
        fail("model files", exc.message, exc.hint)
        return None
    items.append(Item("model files", role, PASS, f"tokenizer read locally from {tok_source}"))
    if k < served.DEFAULT_LOGPROBS:
        items.append(
            Item(
                "top logprobs",
                role,
                WARN,
                f"{served.ENV_LOGPROBS}={k}: pairscope asks for the top {k}, not "
                f"{served.DEFAULT_LOGPROBS} (BlendIn's top-k; overlap@50 needs 50)",
                f"Unset {served.ENV_LOGPROBS} once the server allows --max-logprobs 100.",
            )
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            token_ids = served._check_server(parsed, card, client, tokenizer, vocab, k)
        except PairscopeError as exc:
            fail("top logprobs", exc.message, exc.hint)
            token_ids = None
    if token_ids is not None:
        keys = "keyed by token id" if token_ids else "keyed by decoded strings"
        items.append(
            Item("top logprobs", role, PASS, f"the server returns the top {k} logprobs, {keys}")
        )
    for message in caught:
        items.append(Item("server answers", role, WARN, str(message.message), "See docs/vllm.md."))
    config = _served_config(tok_source)
    return Model(role, spec, tokenizer, config, sorted(eos), card.max_model_len, served=True)


def _served_config(source: str) -> dict[str, Any]:
    config = Path(source) / "config.json"
    if config.is_file():
        values = read_json(config)
        return {**values, **(values.get("text_config") or {})}
    try:
        from transformers import AutoConfig

        loaded = AutoConfig.from_pretrained(source)
    except Exception:  # noqa: BLE001 - a tokenizer-only source has no model config
        return {}
    text = loaded.get_text_config() if hasattr(loaded, "get_text_config") else loaded
    return dict(text.to_dict())
