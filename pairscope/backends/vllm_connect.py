"""Connecting to a vLLM server at load time (and for ``pairscope check``): the served
model's card, its tokenizer read locally, the logits width and end ids, the server's
version, and one tiny request that checks the top-logprobs cap and the token-id keys.
:mod:`pairscope.backends.served` builds its model from what this finds."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairscope.backends.vllm_answers import (
    TOKEN_ID_PREFIX,
    ServedCard,
    TokenKeys,
    choice_positions,
    completion_body,
    dense_logprobs,
    ordered_choices,
    parse_models,
)
from pairscope.backends.vllm_http import (
    SPEC_PREFIX,
    Client,
    ServedSpec,
    ServerError,
    Unreachable,
    is_logprobs_cap,
    logprobs_cap,
)
from pairscope.errors import ModelLoadError, did_you_mean
from pairscope.runtime.vocab import end_ids

DEFAULT_LOGPROBS = 100
ENV_LOGPROBS = "PAIRSCOPE_SERVED_LOGPROBS"
RESTART_HINT = (
    "Restart the server with `--max-logprobs 100` (vLLM's default is 20), or set "
    f"{ENV_LOGPROBS}=N to ask for fewer (the blend then sees only the top N and "
    "overlap@50 needs N >= 50)."
)


@dataclass(frozen=True)
class ServerFacts:
    """What loading learnt from a server: the served model's card, its tokenizer (read
    locally) and where from, the logits width, the end ids, the vLLM version (None when
    the server does not say) and whether logprobs come keyed by token id."""

    card: ServedCard
    tokenizer: Any
    tokenizer_source: str
    vocab_size: int
    eos_ids: frozenset[int]
    server_version: str | None
    token_ids: bool


def connect(
    spec: str, parsed: ServedSpec, client: Client, k: int, trust_remote_code: bool
) -> ServerFacts:
    """What loading ``spec`` learns from its server over ``client``, asking for the top
    ``k`` logprobs (warned about below :data:`DEFAULT_LOGPROBS`)."""
    start_hint = (
        "Start it first, e.g. `vllm serve MODEL --max-logprobs 100 --port 8000`, and check "
        "host, port and the /v1 path."
    )
    try:
        cards = parse_models(client.get("/models", retries=1, timeout=min(client.timeout, 15.0)))
    except Unreachable as exc:
        raise ModelLoadError(
            f"Cannot reach the vLLM server at {parsed.url}: {exc}", hint=start_hint
        ) from None
    except ServerError as exc:
        raise ModelLoadError(
            f"{parsed.url}/models answered {exc}.",
            hint=start_hint if exc.status == 404 else None,
        ) from None
    except ValueError as exc:
        raise ModelLoadError(f"{parsed.url} is not an OpenAI-compatible server: {exc}") from None
    card = choose_card(spec, parsed, cards)
    tokenizer, tok_source = load_tokenizer(card, trust_remote_code)
    vocab, eos = model_facts(tok_source, tokenizer)
    version = server_version(parsed.url, client.headers)
    token_ids = check_server(parsed, card, client, tokenizer, vocab, k)
    if k < DEFAULT_LOGPROBS:
        warnings.warn(
            f"{spec}: asking the server for the top {k} logprobs ({ENV_LOGPROBS}); "
            f"BlendIn's default top-k is {DEFAULT_LOGPROBS}.",
            stacklevel=2,
        )
    return ServerFacts(card, tokenizer, tok_source, vocab, eos, version, token_ids)


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and " " not in name


def load_tokenizer(card: ServedCard, trust_remote_code: bool) -> tuple[Any, str]:
    """The tokenizer from the served name, else from the served root (see module doc)."""
    from transformers import AutoTokenizer

    tried: list[str] = []
    for name in dict.fromkeys(n for n in (card.id, card.root) if n):
        local = Path(name).expanduser()
        if local.is_dir():
            target, only_local = str(local), True
        elif _looks_like_hub_id(name):
            target, only_local = name, False
        else:
            tried.append(f"'{name}' (not a local directory or a Hub id)")
            continue
        try:
            tok = AutoTokenizer.from_pretrained(
                target, trust_remote_code=trust_remote_code, local_files_only=only_local
            )
        except Exception as exc:  # transformers raises many types for a missing tokenizer
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            tried.append(f"'{name}' ({first})")
            continue
        return tok, target
    raise ModelLoadError(
        f"Could not load a local tokenizer for served model '{card.id}': tried "
        + "; ".join(tried)
        + ".",
        hint="pairscope reads the tokenizer locally, from the served model name: start vLLM "
        "with `--served-model-name` set to a Hub id or a directory on this machine that holds "
        "the same tokenizer.",
    )


def model_facts(source: str, tokenizer: Any) -> tuple[int, frozenset[int]]:
    """Vocabulary size (logits width) and end-of-sequence ids, from config files if present."""
    from transformers import AutoConfig, GenerationConfig

    vocab = len(tokenizer)
    local = Path(source).is_dir()
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local)
        text = getattr(config, "get_text_config", lambda: config)()
        vocab = max(vocab, int(getattr(text, "vocab_size", 0) or 0))
    except Exception:  # noqa: BLE001 - a tokenizer-only directory has no model config
        pass
    try:
        value = GenerationConfig.from_pretrained(source, local_files_only=local).eos_token_id
    except Exception:  # noqa: BLE001 - no generation_config.json: use the tokenizer's
        value = None
    return vocab, end_ids(value, tokenizer)


def choose_card(spec: str, parsed: ServedSpec, cards: list[ServedCard]) -> ServedCard:
    if not cards:
        raise ModelLoadError(f"The vLLM server at {parsed.url} serves no model.")
    names = [c.id for c in cards]
    if parsed.model is None:
        if len(cards) == 1:
            return cards[0]
        raise ModelLoadError(
            f"The server at {parsed.url} serves {len(cards)} models: {', '.join(names)}.",
            hint=f"Name one: {SPEC_PREFIX}{parsed.url}#{names[0]}",
        )
    for card in cards:
        if card.id == parsed.model:
            return card
    raise ModelLoadError(
        f"The server at {parsed.url} does not serve '{parsed.model}'."
        f"{did_you_mean(parsed.model, names)}",
        hint=f"It serves: {', '.join(names)}. Spec used: {spec}",
    )


def server_version(url: str, headers: dict[str, str]) -> str | None:
    """vLLM's ``/version`` (beside /v1); None for servers without it."""
    root = Client(url.removesuffix("/v1"), timeout=5.0, retries=0)
    root.headers = dict(headers)
    try:
        answer = root.get("/version")
    except (Unreachable, ServerError):
        return None
    finally:
        root.close()
    version = answer.get("version") if isinstance(answer, dict) else None
    return str(version) if version else None


def check_server(
    parsed: ServedSpec, card: ServedCard, client: Client, tokenizer: Any, vocab: int, k: int
) -> bool:
    """One tiny request: the logprobs cap, token-id keys, and that the tokenizers agree.

    Returns whether the server returns token ids (``return_tokens_as_token_ids``).
    """
    choice = _one_completion(parsed, card, client, tokenizer, k)
    logprobs = choice.get("logprobs") or {}
    tops = logprobs.get("top_logprobs") or [None]
    keys = list((tops[0] or {}).keys())
    token_ids = bool(keys) and all(key.startswith(TOKEN_ID_PREFIX) for key in keys)
    if not keys:
        raise ModelLoadError(f"The server at {parsed.url} returned no top logprobs.")
    if not token_ids:
        warnings.warn(
            f"The server at {parsed.url} ignores return_tokens_as_token_ids: logprobs come "
            "keyed by decoded strings, so ids that decode alike merge and are mapped back "
            "through the local tokenizer (see docs/vllm.md).",
            stacklevel=3,
        )
    if len(keys) < min(k, vocab):
        warnings.warn(
            f"The server at {parsed.url} returned {len(keys)} top logprobs, not {k}.",
            stacklevel=3,
        )
    _check_tokenizer(choice, card, tokenizer, vocab, token_ids)
    return token_ids


def _one_completion(
    parsed: ServedSpec, card: ServedCard, client: Client, tokenizer: Any, k: int
) -> dict[str, Any]:
    """The server's answer to one token-id completion request with ``k`` top logprobs; a
    cap below ``k``, a refusal or an unreadable answer is a ``ModelLoadError``."""
    probe = list(tokenizer.encode("The capital of France is", add_special_tokens=True))
    body = completion_body(card.id, [probe], logprobs=k)
    try:
        [choice] = ordered_choices(client.post("/completions", body, retries=1), 1)
    except ServerError as exc:
        if is_logprobs_cap(exc.message):
            cap = logprobs_cap(exc.message)
            limit = f"at {cap}" if cap is not None else "below the number asked for"
            raise ModelLoadError(
                f"The vLLM server at {parsed.url} caps top logprobs {limit}; pairscope asks "
                f"for {k} per position.",
                hint=RESTART_HINT,
            ) from None
        raise ModelLoadError(
            f"The vLLM server at {parsed.url} refused a token-id completion request: {exc}"
        ) from None
    except Unreachable as exc:
        raise ModelLoadError(f"The vLLM server at {parsed.url} stopped answering: {exc}") from None
    except ValueError as exc:
        raise ModelLoadError(f"Unexpected answer from {parsed.url}: {exc}") from None
    return choice


def _check_tokenizer(
    choice: dict[str, Any], card: ServedCard, tokenizer: Any, vocab: int, token_ids: bool
) -> None:
    """That the answer reads with the local tokenizer (``ModelLoadError`` otherwise), and a
    warning where the server decodes the sampled token differently."""
    keymap = TokenKeys(tokenizer)
    try:
        [entry] = choice_positions(choice, keymap)
        dense_logprobs([entry], vocab)
    except ValueError as exc:
        raise ModelLoadError(
            f"{card.id}: {exc}.",
            hint="Serve the model whose tokenizer pairscope loads (see docs/vllm.md).",
        ) from None
    sampled = keymap(str(((choice.get("logprobs") or {}).get("tokens") or [""])[0]))
    text = choice.get("text")
    if token_ids and sampled is not None and isinstance(text, str):
        local = tokenizer.decode([sampled])
        if local != text:
            warnings.warn(
                f"The server decodes token {sampled} as {text!r}, the local tokenizer "
                f"({card.id}) as {local!r}: they may differ.",
                stacklevel=4,
            )
