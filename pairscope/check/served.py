"""``pairscope check`` on a served model: its ``/v1/models`` entry and one tiny request.

The served backend's own helpers answer each question, so the check reads a server
exactly as a probe would; the items join the rest of the pair's check report.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairscope.check.items import FAIL, PASS, WARN, Item, Model, read_json
from pairscope.errors import PairscopeError
from pairscope.metrics.intervention import Verdict


def read_served(role: str, spec: str, trust_remote_code: bool, items: list[Item]) -> Model | None:
    """``/v1/models`` and one tiny request, through the served backend's own helpers."""
    from pairscope.backends.vllm_http import Client, parse_spec

    try:
        parsed = parse_spec(spec)
    except PairscopeError as exc:
        items.append(Item("server", role, FAIL, exc.message, exc.hint))
        return None
    client = Client(parsed.url, timeout=15.0, api_key=os.environ.get("VLLM_API_KEY"))
    try:
        return _ask_server(_Asking(role, spec, items, parsed, client), trust_remote_code)
    finally:
        client.close()


@dataclass(frozen=True)
class _Asking:
    """One model's server being checked: the items found so far, and how to reach it."""

    role: str
    spec: str
    items: list[Item]
    parsed: Any  # ServedSpec
    client: Any  # Client

    def add(self, check: str, status: Verdict, found: str, fix: str | None = None) -> None:
        self.items.append(Item(check, self.role, status, found, fix))


def _ask_server(asking: _Asking, trust_remote_code: bool) -> Model | None:
    from pairscope.backends import vllm_connect as connect
    from pairscope.backends.vllm_http import env_number

    card = _card(asking)
    if card is None:
        return None
    try:
        tokenizer, tok_source = connect.load_tokenizer(card, trust_remote_code)
        vocab, eos = connect.model_facts(tok_source, tokenizer)
        k = int(env_number(connect.ENV_LOGPROBS, connect.DEFAULT_LOGPROBS, 1))
    except PairscopeError as exc:
        asking.add("model files", FAIL, exc.message, exc.hint)
        return None
    asking.add("model files", PASS, f"tokenizer read locally from {tok_source}")
    _logprobs_items(asking, card, tokenizer, vocab, k)
    config = _served_config(tok_source)
    return Model(
        asking.role, asking.spec, tokenizer, config, sorted(eos), card.max_model_len, served=True
    )


def _card(asking: _Asking) -> Any:
    """The served model's card from ``/v1/models``, with a PASS item naming the server
    (None, after a FAIL item, when the server cannot be read)."""
    from pairscope.backends import vllm_connect as connect
    from pairscope.backends.vllm_answers import parse_models
    from pairscope.backends.vllm_http import ServerError, Unreachable

    url, client = asking.parsed.url, asking.client
    start_hint = (
        "Start it first, e.g. `vllm serve MODEL --max-logprobs 100 --port 8000`, and check "
        "host, port and the /v1 path."
    )
    try:
        cards = parse_models(client.get("/models", retries=1, timeout=10.0))
        card = connect.choose_card(asking.spec, asking.parsed, cards)
    except Unreachable as exc:
        asking.add("server", FAIL, f"cannot reach the vLLM server at {url}: {exc}", start_hint)
        return None
    except ServerError as exc:
        asking.add("server", FAIL, f"{url}/models answered {exc}", start_hint)
        return None
    except ValueError as exc:
        asking.add("server", FAIL, f"{url} is not an OpenAI-compatible server: {exc}")
        return None
    except PairscopeError as exc:
        asking.add("server", FAIL, exc.message, exc.hint)
        return None
    version = connect.server_version(url, client.headers)
    asking.add("server", PASS, f"{url} serves '{card.id}' (vLLM {version or '?'})")
    return card


def _logprobs_items(asking: _Asking, card: Any, tokenizer: Any, vocab: int, k: int) -> None:
    """The top-logprobs items: how many pairscope asks for, and what one request returns
    (and any warning the request raised, as a WARN item)."""
    from pairscope.backends import vllm_connect as connect

    if k < connect.DEFAULT_LOGPROBS:
        asking.add(
            "top logprobs",
            WARN,
            f"{connect.ENV_LOGPROBS}={k}: pairscope asks for the top {k}, not "
            f"{connect.DEFAULT_LOGPROBS} (BlendIn's top-k; overlap@50 needs 50)",
            f"Unset {connect.ENV_LOGPROBS} once the server allows --max-logprobs 100.",
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            token_ids = connect.check_server(
                asking.parsed, card, asking.client, tokenizer, vocab, k
            )
        except PairscopeError as exc:
            asking.add("top logprobs", FAIL, exc.message, exc.hint)
            token_ids = None
    if token_ids is not None:
        keys = "keyed by token id" if token_ids else "keyed by decoded strings"
        asking.add("top logprobs", PASS, f"the server returns the top {k} logprobs, {keys}")
    for message in caught:
        asking.add("server answers", WARN, str(message.message), "See docs/vllm.md.")


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
