"""Record real vLLM answers into tests/fixtures/vllm/ for the parsing unit tests.

Run against a server that serves the embedded guide (SmolLM2-135M-Instruct) with
``--max-logprobs 100``, from the project's environment:

    .venv/bin/python scripts/record_vllm_fixtures.py http://127.0.0.1:8000/v1 TOKENIZER_DIR

Every file holds the request body and the server's answer (status and JSON) as sent
and received; ``strings_vocab.json`` holds the few tokenizer facts the string-keyed
test needs, so the unit tests need neither a server nor the model.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vllm"


def call(url: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url + path, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def save(name: str, request: dict[str, Any] | None, status: int, answer: Any, **extra: Any) -> None:
    record = {"request": request, "status": status, "response": answer, **extra}
    (OUT / name).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"{name}: HTTP {status}")


def main() -> None:
    from transformers import AutoTokenizer

    url, tok_dir = sys.argv[1].rstrip("/"), sys.argv[2]
    tok = AutoTokenizer.from_pretrained(tok_dir)
    OUT.mkdir(parents=True, exist_ok=True)

    def chat(q: str) -> list[int]:
        text = tok.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        return list(tok.encode(text, add_special_tokens=False))

    status, models = call(url, "/models")
    save("models.json", None, status, models)
    model = models["data"][0]["id"]
    # The second prompt's top-20 holds several byte pieces that all decode to U+FFFD.
    prompts = [chat("What is 2+2?"), chat("Translate to Chinese: good morning")]
    base: dict[str, Any] = {
        "model": model,
        "prompt": prompts,
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": 20,
        "echo": False,
        "skip_special_tokens": False,
    }
    ids_body = {**base, "return_tokens_as_token_ids": True}
    status, ids_answer = call(url, "/completions", ids_body)
    save("next_token_ids.json", ids_body, status, ids_answer)
    status, str_answer = call(url, "/completions", base)
    save("next_token_strings.json", base, status, str_answer)

    # What the string-keyed parser needs of the tokenizer: every id whose text is a key.
    keys = {k for c in str_answer["choices"] for t in c["logprobs"]["top_logprobs"] for k in t}
    keys |= {t for c in str_answer["choices"] for t in c["logprobs"]["tokens"]}
    texts = tok.batch_decode([[i] for i in range(len(tok))])
    pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
    vocab = {i: [pieces[i], texts[i]] for i in range(len(tok)) if texts[i] in keys}
    encode = {k: tok.encode(k, add_special_tokens=False) for k in keys}
    (OUT / "strings_vocab.json").write_text(
        json.dumps(
            {"size": len(tok), "vocab": vocab, "encode": encode}, indent=1, ensure_ascii=False
        )
        + "\n"
    )

    prompt = chat("What is 2+2?")
    reference = list(tok.encode("2 + 2 = 4.", add_special_tokens=False))
    echo_body = {
        **base,
        "prompt": [prompt + reference],
        "logprobs": 5,
        "echo": True,
        "return_tokens_as_token_ids": True,
    }
    status, answer = call(url, "/completions", echo_body)
    save("echo.json", echo_body, status, answer, prompt_len=len(prompt), reference=reference)

    cap_body = {**ids_body, "prompt": [prompts[0]], "logprobs": 101}
    status, answer = call(url, "/completions", cap_body)
    save("logprobs_cap_error.json", cap_body, status, answer)

    missing = {**ids_body, "model": "no-such-model", "prompt": [prompts[0]]}
    status, answer = call(url, "/completions", missing)
    save("unknown_model_error.json", missing, status, answer)


if __name__ == "__main__":
    main()
